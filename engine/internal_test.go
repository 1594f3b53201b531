package engine

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/testutil"
)

// TestEngine_ForgetsSignalWaitersOfEndedExecutions: the engine keeps no
// signal waiter for an execution that has ended.
func TestEngine_ForgetsSignalWaitersOfEndedExecutions(t *testing.T) {
	t.Parallel()
	s := testutil.NewSQLiteStorage(t)
	e := New(s, Config{NodeID: "waiters", HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	require.NoError(t, e.Register(Dynamic(models.WorkflowDefinition{ID: "wait", Version: "v1"}, func(ctx *Context, _ json.RawMessage) (any, error) {
		return AwaitSignal[int](ctx, "go", 0)
	})))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	const n = 30
	ids := make([]string, n)
	for i := range ids {
		id, err := e.Start(t.Context(), "wait", "v1", i)
		require.NoError(t, err)
		ids[i] = id
	}
	for i, id := range ids {
		require.NoError(t, e.Signal(t.Context(), id, "go", i))
	}
	awaitCtx, stop := context.WithTimeout(t.Context(), time.Minute)
	defer stop()
	for _, id := range ids {
		exec, err := e.Await(awaitCtx, id)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
	}
	require.Eventually(t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.running) == 0
	}, time.Minute, 5*time.Millisecond)
	e.mu.Lock()
	defer e.mu.Unlock()
	require.Empty(t, e.signals)
	require.Empty(t, e.finished)
	require.Empty(t, e.carried)
}
