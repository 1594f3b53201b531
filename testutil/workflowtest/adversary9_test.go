package workflowtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/testutil/workflowtest"
)

// TestAdversary9_FakeClockWaitsDoNotPark: under the fake clock, a day's
// Sleep, a signal wait and a long retry backoff wait in place (the database
// knows nothing of the fake time): the execution stays owned while it
// waits, and Advance and Signal end the waits.
func TestAdversary9_FakeClockWaitsDoNotPark(t *testing.T) {
	calls := 0
	wf := engine.Define("adv9-fake", "v1", func(ctx *engine.Context, _ int) (string, error) {
		if err := engine.Sleep(ctx, "nap", 24*time.Hour); err != nil {
			return "", err
		}
		got, err := engine.AwaitSignal[string](ctx, "go", time.Hour)
		if err != nil {
			return "", err
		}
		return engine.Step(ctx, "flaky", func(context.Context) (string, error) {
			calls++
			if calls == 1 {
				return "", context.DeadlineExceeded
			}
			return got, nil
		}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Hour}))
	})
	tt := workflowtest.New(t, wf)
	h := workflowtest.Start(tt, wf, 0)
	owned := func() {
		t.Helper()
		exec, err := h.Execution(t.Context())
		require.NoError(t, err)
		require.NotNil(t, exec.NodeID, "parked under a fake clock")
	}
	require.NoError(t, tt.Clock().BlockUntil(bound(t), 1))
	owned()
	tt.Advance(24 * time.Hour)
	require.NoError(t, tt.Clock().BlockUntil(bound(t), 1)) // the signal's deadline
	owned()
	tt.Signal(h.ID(), "go", "yes")
	// The signal's deadline timer is pending until the signal is received:
	// wait for the flaky step's first attempt, so the one timer is the
	// backoff's.
	require.Eventually(t, func() bool {
		steps, err := tt.Storage().GetStepExecutionHistory(t.Context(), h.ID())
		require.NoError(t, err)
		for _, st := range steps {
			if st.StepID == "flaky" && st.Status == models.StepRetrying {
				return true
			}
		}
		return false
	}, time.Minute, 5*time.Millisecond)
	require.NoError(t, tt.Clock().BlockUntil(bound(t), 1)) // the backoff
	owned()
	tt.Advance(time.Hour)
	out, err := workflowtest.Result(tt, h)
	require.NoError(t, err)
	require.Equal(t, "yes", out)
}

// bound is a context that ends after a minute.
func bound(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
