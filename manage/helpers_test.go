package manage_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

func forEachDialect(t *testing.T, fn func(t *testing.T, s *repository.Storage)) {
	t.Helper()
	t.Parallel()
	testutil.ForEachDialect(t, fn)
}

// fast keeps tests quick: a node is presumed dead after half a second.
func fast(node string) engine.Config {
	return engine.Config{NodeID: node, HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 500 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, DrainTimeout: 100 * time.Millisecond}
}

// run runs e until the test ends.
func run(t *testing.T, e *engine.Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Error("Run did not return within a minute")
		}
	})
}

// await waits at most a minute for the execution to end.
func await(t *testing.T, e *engine.Engine, id string) *models.WorkflowExecution {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exec, err := e.Await(ctx, id)
	require.NoError(t, err)
	return exec
}

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatal("nothing received within a minute")
	}
	var zero T
	return zero
}

// journal is the execution's history as "step#STATUS", in start order.
func journal(t *testing.T, s *repository.Storage, id string) []string {
	t.Helper()
	h, err := s.GetStepExecutionHistory(context.Background(), id)
	require.NoError(t, err)
	out := make([]string, len(h))
	for i, step := range h {
		out[i] = step.StepID + "#" + string(step.Status)
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
