package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
)

func TestShow(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		out := c.ok("show", f.failed)
		for _, want := range []string{
			`(?m)^execution\s+order-declined$`,
			`(?m)^definition\s+order@v1$`,
			`(?m)^status\s+FAILED$`,
			`(?m)^labels\s+region=us$`,
			`(?m)^input\s+\{"id": ?"order-declined", ?"decline": ?true\}$`,
			`(?m)^error\s+.*card declined`,
			`(?m)^journal \(2 step attempts\)$`,
		} {
			require.Regexp(t, want, out)
		}
		require.Regexp(t, `version\s+\d+\n`, out)
		require.Regexp(t, `STEP\s+ATTEMPT\s+STATUS\s+NODE\s+STARTED\s+DURATION\s+ERROR\n`, out)
		require.Regexp(t, `reserve\s+1\s+COMPLETED\s+`, out)
		require.Regexp(t, `charge\s+1\s+FAILED\s+.*card declined`, out)

		out = c.ok("show", f.completed)
		require.Regexp(t, `(?m)^output\s+"shipped order-ok"$`, out)
		require.NotRegexp(t, `(?m)^error`, out)

		out = c.ok("show", f.waiting)
		require.Regexp(t, `(?m)^waits for\s+signal approval$`, out)

		var d manage.Detail
		require.NoError(t, json.Unmarshal([]byte(c.ok("show", f.failed, "-o", "json")), &d))
		require.Equal(t, f.failed, d.Execution.ExecutionID)
		require.Equal(t, models.ExecutionFailed, d.Execution.Status)
		require.Equal(t, map[string]string{"region": "us"}, d.Execution.Labels)
		require.Len(t, d.Steps, 2)
		require.Equal(t, "charge", d.Steps[1].StepID)
		require.Equal(t, models.StepFailed, d.Steps[1].Status)
		require.NotNil(t, d.PendingSignals)
		var raw map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(c.ok("show", f.failed, "-o", "json")), &raw))
		require.JSONEq(t, `[]`, string(raw["pending_signals"]))

		c.fails(exitError, "workflowctl: execution 0192-missing not found\n", "show", "0192-missing")
		c.fails(exitError, "workflowctl: execution 0192-missing not found\n", "show", "0192-missing", "-o", "json")
	})
}

func TestShow_BadUsage(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	c.fails(exitUsage, "workflowctl show: missing ID", "show")
	c.fails(exitUsage, `unexpected argument "b"`, "show", "a", "b")
	c.fails(exitUsage, "empty ID", "show", " ")
}

// TestShow_AbandonedAttempt: an attempt whose node died never completed;
// once the execution has ended, it shows no running duration.
func TestShow_AbandonedAttempt(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	later := started.Add(1500 * time.Millisecond)
	c := newCLI(t, nil)
	c.manager = &fakeManager{detail: &manage.Detail{
		Execution: models.WorkflowExecution{ExecutionID: "x", DefinitionID: "order", DefinitionVersion: "v1",
			Status: models.ExecutionCompleted, StartedAt: &started, CompletedAt: &later},
		Steps: []models.StepExecution{
			{StepID: "charge", Attempt: 1, Status: models.StepRunning, StartedAt: &started},
			{StepID: "charge", Attempt: 2, Status: models.StepCompleted, StartedAt: &started, CompletedAt: &later},
		},
	}}
	out := c.ok("show", "x")
	require.Regexp(t, `(?m)^charge\s+1\s+RUNNING\s+-\s+2026-01-02 03:04:05\s+-\s+-$`, out)
	require.Regexp(t, `(?m)^charge\s+2\s+COMPLETED\s+-\s+2026-01-02 03:04:05\s+1.5s\s+-$`, out)
	require.Regexp(t, `(?m)^duration\s+1.5s$`, out)
}
