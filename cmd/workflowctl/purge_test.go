package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/testutil"
)

func TestPurge(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		// Nothing ended an hour ago.
		require.Equal(t, "would purge 0 executions, 0 steps, 0 signals, 0 labels (ended more than 1h0m0s ago)\n",
			c.ok("purge", "--older-than", "1h", "--dry-run"))
		require.Equal(t, "purged 0 executions, 0 steps, 0 signals, 0 labels (ended more than 30d ago)\n",
			c.ok("purge", "--older-than", "30d"))

		// Both ended ones, once they are a millisecond old.
		var dry struct {
			DryRun     bool   `json:"dry_run"`
			OlderThan  string `json:"older_than"`
			Executions int64  `json:"executions"`
			Steps      int64  `json:"steps"`
			Signals    int64  `json:"signals"`
			Labels     int64  `json:"labels"`
		}
		require.Eventually(t, func() bool {
			require.NoError(t, json.Unmarshal([]byte(c.ok("purge", "--older-than", "1ms", "--dry-run", "-o", "json")), &dry))
			return dry.Executions == 2
		}, 10e9, 10e6)
		require.True(t, dry.DryRun)
		require.Equal(t, "1ms", dry.OlderThan)
		require.EqualValues(t, 4, dry.Steps) // reserve and charge, twice
		require.EqualValues(t, 2, dry.Labels)
		require.Equal(t, models.ExecutionCompleted, f.status(t, f.completed), "a dry run deletes nothing")

		out := c.ok("purge", "--older-than", "1ms")
		require.Equal(t, "purged 2 executions, 4 steps, 0 signals, 2 labels (ended more than 1ms ago)\n", out)
		c.fails(exitError, "execution order-ok not found", "show", f.completed)
		c.fails(exitError, "execution order-declined not found", "show", f.failed)
		require.Equal(t, models.ExecutionRunning, f.status(t, f.waiting), "a live execution stays")
	})
}

// TestPurge_ProgressBar: on a terminal, a purge of more than one batch draws
// a bar on stderr; off a terminal, or in one batch, it does not.
func TestPurge_ProgressBar(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		c.ok("cancel", f.waiting) // three ended executions
		require.Eventually(t, func() bool {
			return strings.HasPrefix(c.ok("purge", "--older-than", "1ms", "--dry-run"), "would purge 3 executions")
		}, 10e9, 10e6)

		c.terminal = true
		r := c.run("purge", "--older-than", "1ms", "--dry-run", "--batch-size", "1")
		require.Equal(t, exitOK, r.code)
		require.Empty(t, r.stderr, "a dry run draws no bar")
		r = c.run("purge", "--older-than", "1ms", "--batch-size", "3")
		require.Equal(t, exitOK, r.code)
		require.Empty(t, r.stderr, "one batch draws no bar")
		require.Contains(t, r.stdout, "purged 3 executions")

		f2 := newFixture(t, testutil.NewStorage(t, f.store.Dialect()))
		c2 := newCLI(t, f2.store)
		c2.ok("cancel", f2.waiting)
		// Until the cancelled execution has ended, a purge would take the
		// other two alone.
		require.Eventually(t, func() bool {
			return strings.HasPrefix(c2.ok("purge", "--older-than", "1ms", "--dry-run"), "would purge 3 executions")
		}, 10e9, 10e6)
		c2.terminal = true
		r2 := c2.run("purge", "--older-than", "1ms", "--batch-size", "1")
		require.Equal(t, exitOK, r2.code)
		require.Contains(t, r2.stdout, "purged 3 executions")
		require.Contains(t, r2.stderr, "purging")
		require.Regexp(t, `\([123]/3, `, r2.stderr)
	})
}

func TestPurge_BadUsage(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	c.fails(exitUsage, "purge needs --older-than", "purge")
	c.fails(exitUsage, "purge needs --older-than", "purge", "--dry-run")
	c.fails(exitUsage, `invalid argument "soon" for "--older-than" flag`, "purge", "--older-than", "soon")
	c.fails(exitUsage, `invalid argument "0" for "--older-than" flag`, "purge", "--older-than", "0")
	c.fails(exitUsage, "--batch-size 0: want 1 to 5000", "purge", "--older-than", "1h", "--batch-size", "0")
	c.fails(exitUsage, "--batch-size 5001: want 1 to 5000", "purge", "--older-than", "1h", "--batch-size", "5001")
}
