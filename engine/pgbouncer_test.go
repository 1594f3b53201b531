package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// TestPgBouncer_TransactionMode runs the engine through PgBouncer in
// transaction mode (WORKFLOW_TEST_PGBOUNCER_DSN; .ci/pgbouncer starts one and
// prints it): two nodes, steps, parked sleeps and signal waits, all complete,
// every step once. Each transaction may land on another server connection,
// so nothing may rely on a prepared statement or a LISTEN outliving it.
func TestPgBouncer_TransactionMode(t *testing.T) {
	dsn := testutil.PgBouncerDatabase(t, "plexwf_pgbouncer_test")
	stores := make([]*repository.Storage, 2)
	for i := range stores {
		s, err := repository.Open(t.Context(), dsn, repository.WithMaxOpenConns(8))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		stores[i] = s
	}
	var engines []*engine.Engine
	for i, s := range stores {
		e := engine.New(s, fast(fmt.Sprintf("bouncer-%d", i)))
		require.NoError(t, e.Register(napper, waiter, quick))
		run(t, e)
		engines = append(engines, e)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var quicks, naps, waits []string
	for i := range 10 {
		e := engines[i%2]
		h, err := quick.Start(ctx, e, i)
		require.NoError(t, err)
		quicks = append(quicks, h.ID())
		n, err := napper.Start(ctx, e, 200*time.Millisecond)
		require.NoError(t, err)
		naps = append(naps, n.ID())
		w, err := waiter.Start(ctx, e, time.Duration(0))
		require.NoError(t, err)
		waits = append(waits, w.ID())
	}
	for i, id := range waits {
		require.NoError(t, engines[(i+1)%2].Signal(ctx, id, "go", fmt.Sprint("hello ", i)))
	}
	for i, id := range quicks {
		out, err := quick.Handle(engines[i%2], id).Result(ctx)
		require.NoError(t, err)
		require.Equal(t, "done", out)
	}
	for i, id := range naps {
		out, err := napper.Handle(engines[(i+1)%2], id).Result(ctx)
		require.NoError(t, err)
		require.Equal(t, "rested", out)
		assertStepsOnce(t, stores[0], id)
	}
	for i, id := range waits {
		out, err := waiter.Handle(engines[i%2], id).Result(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint("hello ", i), out)
	}
}

// assertStepsOnce checks that every step of the execution completed once.
func assertStepsOnce(t *testing.T, s *repository.Storage, executionID string) {
	t.Helper()
	history, err := s.GetStepExecutionHistory(t.Context(), executionID)
	require.NoError(t, err)
	completed := map[string]int{}
	for _, h := range history {
		if h.Status == "COMPLETED" {
			completed[h.StepID]++
		}
	}
	for step, n := range completed {
		require.Equal(t, 1, n, "step %s of %s", step, executionID)
	}
}
