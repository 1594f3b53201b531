package engine_test

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

// fast keeps tests quick: a node is presumed dead after half a second.
func fast(node string) engine.Config {
	return engine.Config{NodeID: node, HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond, DrainTimeout: 100 * time.Millisecond}
}

func forEachDialect(t *testing.T, fn func(t *testing.T, s *repository.Storage)) {
	t.Helper()
	t.Parallel()
	testutil.ForEachDialect(t, fn)
}

// run starts e.Run and returns a stop function that ends it and checks it
// returned nil.
func run(t *testing.T, e *engine.Engine) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Fatal("Run did not return within a minute of its context ending")
		}
	}
	t.Cleanup(stop)
	return stop
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

// receive waits at most a minute for a value on ch.
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

func def(id string) models.WorkflowDefinition {
	return models.WorkflowDefinition{ID: id, Version: "v1", Name: id}
}

func history(t *testing.T, s *repository.Storage, id string) []models.StepExecution {
	t.Helper()
	h, err := s.GetStepExecutionHistory(context.Background(), id)
	require.NoError(t, err)
	return h
}

func statuses(h []models.StepExecution) []string {
	out := make([]string, len(h))
	for i, s := range h {
		out[i] = s.StepID + ":" + string(s.Status)
	}
	return out
}

// startThenStop starts a workflow of definition defID on node, stops the node
// gracefully as soon as entered receives (the workflow is mid-step), and
// returns the execution's id.
func startThenStop(t *testing.T, s *repository.Storage, node, defID string, wf engine.WorkflowFunc, entered <-chan struct{}) string {
	t.Helper()
	e := engine.New(s, fast(node))
	require.NoError(t, e.Register(engine.Dynamic(def(defID), wf)))
	stop := run(t, e)
	id, err := e.Start(t.Context(), defID, "v1", nil)
	require.NoError(t, err)
	receive(t, entered)
	stop()
	return id
}

// runAgain runs defID's workflow on a new node and awaits the execution.
func runAgain(t *testing.T, s *repository.Storage, node, defID string, wf engine.WorkflowFunc, id string) *models.WorkflowExecution {
	t.Helper()
	e := engine.New(s, fast(node))
	require.NoError(t, e.Register(engine.Dynamic(def(defID), wf)))
	run(t, e)
	return await(t, e, id)
}

// waitParked waits at most a minute until the execution is parked: live and
// owned by no node.
func waitParked(t *testing.T, s *repository.Storage, id string) *models.WorkflowExecution {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		exec, err := s.GetExecution(t.Context(), id)
		require.NoError(t, err)
		if exec.NodeID == nil && exec.Status == models.ExecutionRunning {
			return exec
		}
		require.False(t, exec.Status.Terminal(), "execution %s ended %s instead of parking", id, exec.Status)
		require.True(t, time.Now().Before(deadline), "execution %s did not park within a minute", id)
		time.Sleep(5 * time.Millisecond)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
