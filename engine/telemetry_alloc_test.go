//go:build !race

package engine

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
)

// TestTelemetry_NoAllocationPerStepWithoutSDK: with the default (global,
// no-op) providers, what the telemetry adds to a step attempt, a wait and a
// run's end allocates nothing. (Without -race, which allocates on its own.)
func TestTelemetry_NoAllocationPerStepWithoutSDK(t *testing.T) {
	e := New(nil, Config{NodeID: "allocs"})
	exec := &models.WorkflowExecution{ExecutionID: "x", DefinitionID: "d", DefinitionVersion: "v1", Status: models.ExecutionPending, Version: 1}
	x := newExecution(e, context.Background(), context.Background(), exec, false)
	defer x.cancel(nil)
	c := newContext(x, nil)
	allocs := testing.AllocsPerRun(100, func() {
		sc, st := c.beginStep("a", 1, false)
		sc.endStep(st, models.StepCompleted, nil)
		wc, span := c.beginSleep("nap", 0)
		endWait(span, nil)
		_ = wc
		x.finishedRun(models.ExecutionCompleted, "", true)
	})
	require.Zero(t, allocs)
	// A run's start (its span, the running gauge) allocates a little, once
	// per run.
	perRun := testing.AllocsPerRun(100, func() {
		_, tel := e.tel.beginRun(context.Background(), exec, "allocs", false)
		y := &execution{engine: e, ctx: x.ctx, tel: tel}
		y.endRun(false)
	})
	t.Logf("allocations per run start and end: %v", perRun)
	require.LessOrEqual(t, perRun, 8.0)
}
