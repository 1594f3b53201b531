package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
)

func TestSignal(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		require.Equal(t, "sent signal approval to order-waits\n", c.ok("signal", f.waiting, "approval", `{"by":"ops@example.com"}`))
		require.JSONEq(t, `{"execution_id":"order-waits","action":"signal","signal":"nudge"}`,
			c.ok("signal", f.waiting, "nudge", "-o", "json"))

		var d manage.Detail
		require.NoError(t, json.Unmarshal([]byte(c.ok("show", f.waiting, "-o", "json")), &d))
		require.Len(t, d.PendingSignals, 2)
		require.Equal(t, "approval", d.PendingSignals[0].Name)
		require.JSONEq(t, `{"by":"ops@example.com"}`, string(d.PendingSignals[0].Payload))
		require.Equal(t, "nudge", d.PendingSignals[1].Name)
		require.Empty(t, d.PendingSignals[1].Payload)
		require.Regexp(t, `(?m)^approval\s+\S+ \S+\s+\{"by": ?"ops@example.com"\}$`, c.ok("show", f.waiting))

		c.fails(exitError, "workflowctl: execution nope not found\n", "signal", "nope", "approval")
		c.fails(exitError, "workflowctl: execution order-ok has ended and takes no signals\n", "signal", f.completed, "approval")
		c.fails(exitUsage, "signal payload is not JSON: {by:", "signal", f.waiting, "approval", "{by:")
		c.fails(exitUsage, "missing NAME", "signal", f.waiting)
		c.fails(exitUsage, "missing ID and NAME", "signal")
		c.fails(exitUsage, `unexpected argument "4"`, "signal", f.waiting, "approval", "{}", "4")
	})
}

func TestCancel(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		require.Equal(t, "cancelled order-waits\n", c.ok("cancel", f.waiting))
		require.Equal(t, models.ExecutionCancelled, f.status(t, f.waiting))
		require.Equal(t, "order-ok had already ended COMPLETED\n", c.ok("cancel", f.completed))
		require.Equal(t, models.ExecutionCompleted, f.status(t, f.completed))
		require.JSONEq(t, `{"execution_id":"order-waits","action":"cancel","status":"CANCELLED"}`, c.ok("cancel", f.waiting, "-o", "json"))

		c.fails(exitError, "workflowctl: execution nope not found\n", "cancel", "nope")
		c.fails(exitUsage, "missing ID", "cancel")
	})
}

func TestRetry(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		before, err := f.store.GetExecution(t.Context(), f.failed)
		require.NoError(t, err)
		out := c.ok("retry", f.failed)
		require.Regexp(t, `^order-declined is PENDING again \(version \d+\)\n$`, out)
		after, err := f.store.GetExecution(t.Context(), f.failed)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionPending, after.Status)
		require.Greater(t, after.Version, before.Version)

		c.fails(exitError, "workflowctl: execution order-ok is COMPLETED: only FAILED, CANCELLED and TIMED_OUT executions can be retried\n", "retry", f.completed)
		c.fails(exitError, "workflowctl: execution order-declined is PENDING: only", "retry", f.failed) // live again
		c.fails(exitError, "workflowctl: execution nope not found\n", "retry", "nope")
		c.fails(exitUsage, "missing ID", "retry")

		// -o json: the execution as it now is.
		c.ok("cancel", f.waiting)
		var x models.WorkflowExecution
		require.NoError(t, json.Unmarshal([]byte(c.ok("retry", f.waiting, "-o", "json")), &x))
		require.Equal(t, f.waiting, x.ExecutionID)
		require.Equal(t, models.ExecutionPending, x.Status)
	})
}
