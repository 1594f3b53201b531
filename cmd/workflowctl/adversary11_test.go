package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
)

// decodeStrict decodes one JSON document into v, refusing fields v lacks:
// -o json uses the models' json tags and nothing else.
func decodeStrict(t *testing.T, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), out)
	require.False(t, dec.More(), "one document: %s", out)
}

func TestAdversary11_CLI(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		// A page size the API refuses is bad usage, not an error.
		c.fails(exitUsage, "--limit 1001", "list", "--limit", "1001")
		c.ok("list", "--limit", "1000")

		var list struct {
			Executions []models.WorkflowExecution `json:"executions"`
			Next       string                     `json:"next,omitempty"`
		}
		decodeStrict(t, c.ok("list", "-o", "json"), &list)
		require.Len(t, list.Executions, 3)

		var detail manage.Detail
		decodeStrict(t, c.ok("show", f.failed, "-o", "json"), &detail)
		require.Equal(t, f.failed, detail.Execution.ExecutionID)
		require.Equal(t, models.ExecutionFailed, detail.Execution.Status)
		require.NotEmpty(t, detail.Steps)

		// Paging with every filter at once, one row a page: each matching
		// execution once, in order, then the end.
		seen := map[string]int{}
		after := ""
		for range 10 {
			args := []string{"list", "-o", "json", "--limit", "1", "--status", "COMPLETED,FAILED,PENDING,RUNNING",
				"--label", "region=eu", "--definition", "order@v1", "--since", "1h"}
			if after != "" {
				args = append(args, "--after", after)
			}
			var page struct {
				Executions []models.WorkflowExecution `json:"executions"`
				Next       string                     `json:"next,omitempty"`
			}
			decodeStrict(t, c.ok(args...), &page)
			for _, x := range page.Executions {
				seen[x.ExecutionID]++
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
		require.Equal(t, map[string]int{f.completed: 1, f.waiting: 1}, seen)

		// A payload no dialect can store: one clear line, no signal row.
		before := pendingSignals(t, c, f.waiting)
		for _, payload := range []string{`"a\u0000b"`, "\"\xff\"", `{"k":"\u0000"}`} {
			r := c.run("signal", f.waiting, "approval", payload)
			require.NotEqual(t, exitOK, r.code, "payload %q", payload)
			require.NotContains(t, r.stderr, "\x00")
		}
		require.Equal(t, before, pendingSignals(t, c, f.waiting), "no half-written signal")

		// Unknown ids: one line naming the id, exit 1, on every command.
		for _, args := range [][]string{{"show", "missing-42"}, {"cancel", "missing-42"}, {"retry", "missing-42"}, {"signal", "missing-42", "s"}} {
			c.fails(exitError, "execution missing-42 not found", args...)
		}
	})
}

func pendingSignals(t *testing.T, c *cli, id string) int {
	t.Helper()
	var d manage.Detail
	decodeStrict(t, c.ok("show", id, "-o", "json"), &d)
	return len(d.PendingSignals)
}

// The password of a DSN never shows, whatever the command prints.
func TestAdversary11_PasswordNeverPrinted(t *testing.T) {
	const secret = "pw-s3cr3t-9"
	for _, dsn := range []string{
		"postgres://u:" + secret + "@127.0.0.1:1/db",
		"postgres://u:" + secret + "@127.0.0.1:notaport/db",
		"postgres://u@127.0.0.1:1/db?password=" + secret,
		"postgresql://u:" + secret + "@127.0.0.1:1/db?sslmode=bogus",
		"mysql://u:" + secret + "@h/db",
	} {
		for _, args := range [][]string{{"migrate", "status"}, {"list"}, {"--help"}, {"purge", "--help"}, {"nodes", "-o", "json"}} {
			for _, viaFlag := range []bool{true, false} {
				c := &cli{t: t, env: map[string]string{}}
				argv := args
				if viaFlag {
					argv = append([]string{"--dsn", dsn}, args...)
				} else {
					c.env[envDSN] = dsn
				}
				var stdout, stderr bytes.Buffer
				err := c.app(&stdout, &stderr).execute(t.Context(), argv)
				out := stdout.String() + stderr.String() + fmt.Sprint(err)
				require.NotContains(t, out, secret, "workflowctl %v", argv)
			}
		}
	}
}
