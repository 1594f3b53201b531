package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
)

// listIDs runs list with args and -o json and returns the ids and cursor.
func listIDs(t *testing.T, c *cli, args ...string) ([]string, string) {
	t.Helper()
	var page manage.Page
	require.NoError(t, json.Unmarshal([]byte(c.ok(append([]string{"list", "-o", "json"}, args...)...)), &page))
	ids := make([]string, len(page.Executions))
	for i, x := range page.Executions {
		ids[i] = x.ExecutionID
	}
	return ids, page.Next
}

func TestList(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		out := c.ok("list")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 4, out)
		require.Equal(t, []string{"ID", "DEFINITION", "STATUS", "STEP", "NODE", "STARTED", "DURATION"}, strings.Fields(lines[0]))
		require.Contains(t, out, f.failed+"  ")
		require.Regexp(t, `order-declined\s+order@v1\s+FAILED\s+charge\s+`, out)
		require.Regexp(t, `order-ok\s+order@v1\s+COMPLETED\s+`, out)
		require.Regexp(t, `order-waits\s+order@v1\s+RUNNING\s+signal:approval:1:deadline\s+-\s+`, out)

		all := []string{f.failed, f.completed, f.waiting} // by id
		ids, next := listIDs(t, c)
		require.Equal(t, all, ids)
		require.Empty(t, next)

		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"--status", "FAILED"}, []string{f.failed}},
			{[]string{"--status", "completed,failed"}, []string{f.failed, f.completed}},
			{[]string{"--status", "RUNNING", "--status", "FAILED"}, []string{f.failed, f.waiting}},
			{[]string{"--status", "pending"}, []string{}},
			{[]string{"--definition", "order"}, all},
			{[]string{"--definition", "order@v1"}, all},
			{[]string{"--definition", "order@v2"}, []string{}},
			{[]string{"--definition", "other"}, []string{}},
			{[]string{"--label", "region=eu"}, []string{f.completed, f.waiting}},
			{[]string{"--label", "region=eu", "--status", "COMPLETED"}, []string{f.completed}},
			{[]string{"--label", "region=mars"}, []string{}},
			{[]string{"--node", "nobody"}, []string{}},
			{[]string{"--since", "1h"}, all},
			{[]string{"--since", "7d"}, all},
			{[]string{"--after", f.failed}, []string{f.completed, f.waiting}},
		} {
			ids, _ := listIDs(t, c, tc.args...)
			require.Equal(t, tc.want, ids, "list %v", tc.args)
		}

		// Paging: --limit and the printed cursor.
		ids, next = listIDs(t, c, "--limit", "2")
		require.Equal(t, all[:2], ids)
		require.NotEmpty(t, next)
		ids, next = listIDs(t, c, "--limit", "2", "--after", next)
		require.Equal(t, all[2:], ids)
		require.Empty(t, next)
		out = c.ok("list", "--limit", "1")
		require.Contains(t, out, "next page: --after "+f.failed)

		require.Equal(t, "no executions\n", c.ok("list", "--status", "TIMED_OUT"))
		require.JSONEq(t, `{"executions": []}`, c.ok("list", "--status", "TIMED_OUT", "-o", "json"))

		// The models' json tags, all of them.
		var raw struct {
			Executions []map[string]any `json:"executions"`
		}
		require.NoError(t, json.Unmarshal([]byte(c.ok("list", "-o", "json", "--status", "FAILED")), &raw))
		require.Len(t, raw.Executions, 1)
		for _, key := range []string{"execution_id", "definition_id", "definition_version", "status", "current_step_id", "error", "version", "labels", "created_at", "started_at", "completed_at"} {
			require.Contains(t, raw.Executions[0], key)
		}
		require.Equal(t, string(models.ExecutionFailed), raw.Executions[0]["status"])
	})
}

func TestList_BadUsage(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil) // never opens a database
	for _, args := range [][]string{
		{"list", "--status", "DONE"},
		{"list", "--status", ""},
		{"list", "--definition", "@v1"},
		{"list", "--definition", "order@"},
		{"list", "--label", "region"},
		{"list", "--label", "=eu"},
		{"list", "--since", "yesterday"},
		{"list", "--since", "-1h"},
		{"list", "--since", "0s"},
		{"list", "--limit", "-1"},
		{"list", "--limit", "many"},
		{"list", "extra"},
		{"list", "--nope"},
		{"list", "-o", "yaml"},
	} {
		r := c.run(args...)
		require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "(see workflowctl list --help)", args)
	}
}
