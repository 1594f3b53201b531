package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Pushed wake-ups between two engines. Every engine here polls every 30 s,
// beats every 50 s and presumes a node dead after 150 s, so that only an
// event can make anything happen within wakeBound; each case runs on fresh
// engines, seconds before any first poll.
const wakeBound = 10 * time.Second

func wakeConfig(node string) engine.Config {
	return engine.Config{
		NodeID:            node,
		PollInterval:      30 * time.Second,
		HeartbeatInterval: 50 * time.Second,
		StaleThreshold:    150 * time.Second,
		DrainTimeout:      time.Second,
	}
}

// wakeStores returns the storages of engines A and B: on PostgreSQL two
// stores of their own (two pools, two listeners) on one schema, as two
// processes have; on SQLite one storage that both share, whose events reach
// both in memory.
func wakeStores(t *testing.T, dialect string) (sa, sb *repository.Storage) {
	t.Helper()
	if dialect == testutil.SQLite {
		s := testutil.NewSQLiteStorage(t)
		return s, s
	}
	dsn := testutil.PostgresSchemaDSN(t)
	open := func() *repository.Storage {
		s, err := repository.Open(context.Background(), dsn, repository.WithMaxOpenConns(4))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	return open(), open()
}

// wakeNodes are the storages of engines A and B of one dialect.
type wakeNodes struct{ sa, sb *repository.Storage }

// start runs engines A and B: A runs no workflow (it claims nothing), B runs
// wf.
func (n wakeNodes) start(t *testing.T, wf engine.Registrable) (a, b *engine.Engine) {
	t.Helper()
	a = engine.New(n.sa, wakeConfig("A"))
	b = engine.New(n.sb, wakeConfig("B"))
	require.NoError(t, b.Register(wf))
	run(t, a)
	run(t, b)
	return a, b
}

// forEachWakeDialect runs fn per dialect, in parallel with other tests.
func forEachWakeDialect(t *testing.T, fn func(t *testing.T, n wakeNodes)) {
	t.Helper()
	t.Parallel()
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			sa, sb := wakeStores(t, dialect)
			fn(t, wakeNodes{sa, sb})
		})
	}
}

// within waits at most wakeBound for a value on ch and returns it with the
// time it took since start.
func within[T any](t *testing.T, ch <-chan T, start time.Time, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		t.Logf("%s after %s", what, time.Since(start).Round(time.Microsecond))
		return v
	case <-time.After(wakeBound):
		t.Fatalf("%s: nothing within %s; without a pushed wake-up it waits for a poll (30 s)", what, wakeBound)
	}
	var zero T
	return zero
}

// TestWake_StartElsewhereRunsAtOnce: an execution started on a node that
// does not run it (A runs, without the workflow; a client engine never runs)
// is claimed by B at once.
func TestWake_StartElsewhereRunsAtOnce(t *testing.T) {
	forEachWakeDialect(t, func(t *testing.T, n wakeNodes) {
		ran := make(chan string, 2)
		wf := engine.Define("wake-start", "v1", func(ctx *engine.Context, _ int) (string, error) {
			return engine.Step(ctx, "run", func(context.Context) (string, error) {
				ran <- ctx.NodeID()
				return "ok", nil
			})
		})
		a, _ := n.start(t, wf)
		start := time.Now()
		_, err := wf.Start(t.Context(), a, 1)
		require.NoError(t, err)
		require.Equal(t, "B", within(t, ran, start, "started on A, running on B"))

		client := engine.New(n.sa, wakeConfig("client"))
		start = time.Now()
		_, err = wf.Start(t.Context(), client, 2)
		require.NoError(t, err)
		require.Equal(t, "B", within(t, ran, start, "started on an engine that does not run, running on B"))
	})
}

// TestWake_SignalReachesParkedWorkflow: a Signal sent on A resumes a
// workflow parked for it (its slot given back) on B.
func TestWake_SignalReachesParkedWorkflow(t *testing.T) {
	forEachWakeDialect(t, func(t *testing.T, n wakeNodes) {
		resumed := make(chan string, 1)
		wf := engine.Define("wake-parked", "v1", func(ctx *engine.Context, _ int) (string, error) {
			got, err := engine.AwaitSignal[string](ctx, "go", 0)
			if err != nil {
				return "", err
			}
			resumed <- ctx.NodeID()
			return got, nil
		})
		a, b := n.start(t, wf)
		h, err := wf.Start(t.Context(), b, 1)
		require.NoError(t, err)
		waitParked(t, n.sb, h.ID())
		start := time.Now()
		require.NoError(t, a.Signal(t.Context(), h.ID(), "go", "approved"))
		require.Equal(t, "B", within(t, resumed, start, "signal on A, parked workflow resumed on B"))
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "approved", out)
	})
}

// TestWake_SignalReachesWaiterInPlace: a wait shorter than PollInterval
// waits in place on B, polling every PollInterval; a Signal sent on A wakes
// it at once.
func TestWake_SignalReachesWaiterInPlace(t *testing.T) {
	forEachWakeDialect(t, func(t *testing.T, n wakeNodes) {
		waiting, resumed := make(chan struct{}, 1), make(chan struct{}, 1)
		wf := engine.Define("wake-in-place", "v1", func(ctx *engine.Context, _ int) (string, error) {
			if _, err := engine.Step(ctx, "before", func(context.Context) (bool, error) { return true, nil }); err != nil {
				return "", err
			}
			waiting <- struct{}{}
			got, err := engine.AwaitSignal[string](ctx, "go", 20*time.Second)
			if err != nil {
				return "", err
			}
			resumed <- struct{}{}
			return got, nil
		})
		a, b := n.start(t, wf)
		h, err := wf.Start(t.Context(), b, 1)
		require.NoError(t, err)
		receive(t, waiting)
		time.Sleep(50 * time.Millisecond) // into its wait, past its first look
		start := time.Now()
		require.NoError(t, a.Signal(t.Context(), h.ID(), "go", "approved"))
		within(t, resumed, start, "signal on A, waiter in place on B resumed")
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "approved", out)
	})
}

// TestWake_AwaitElsewhereReturnsAtEnd: Await on A returns as soon as the
// execution ends on B.
func TestWake_AwaitElsewhereReturnsAtEnd(t *testing.T) {
	forEachWakeDialect(t, func(t *testing.T, n wakeNodes) {
		entered, release := make(chan struct{}, 1), make(chan struct{})
		wf := engine.Define("wake-await", "v1", func(ctx *engine.Context, _ int) (string, error) {
			return engine.Step(ctx, "work", func(context.Context) (string, error) {
				entered <- struct{}{}
				<-release
				return "done", nil
			})
		})
		a, b := n.start(t, wf)
		h, err := wf.Start(t.Context(), b, 1)
		require.NoError(t, err)
		receive(t, entered)
		awaited := make(chan *models.WorkflowExecution, 1)
		go func() {
			exec, err := a.Await(t.Context(), h.ID())
			if err != nil {
				t.Errorf("await on A: %v", err)
			}
			awaited <- exec
		}()
		time.Sleep(100 * time.Millisecond) // Await on A has looked and waits
		start := time.Now()
		close(release)
		exec := within(t, awaited, start, "ended on B, Await on A returned")
		require.NotNil(t, exec)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
	})
}

// TestWake_CancelStopsRemoteStep: Cancel on A ends the context of the step
// running on B at once, not at B's next heartbeat.
func TestWake_CancelStopsRemoteStep(t *testing.T) {
	forEachWakeDialect(t, func(t *testing.T, n wakeNodes) {
		entered, stopped := make(chan struct{}, 1), make(chan error, 1)
		wf := engine.Define("wake-cancel", "v1", func(ctx *engine.Context, _ int) (string, error) {
			return engine.Step(ctx, "long", func(sctx context.Context) (string, error) {
				entered <- struct{}{}
				<-sctx.Done()
				stopped <- context.Cause(sctx)
				return "", sctx.Err()
			})
		})
		a, b := n.start(t, wf)
		h, err := wf.Start(t.Context(), b, 1)
		require.NoError(t, err)
		receive(t, entered)
		start := time.Now()
		require.NoError(t, a.Cancel(t.Context(), h.ID()))
		cause := within(t, stopped, start, "cancelled on A, step ctx done on B")
		require.ErrorIs(t, cause, engine.ErrCancelled)
		exec, err := n.sb.GetExecution(t.Context(), h.ID())
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCancelled, exec.Status)
	})
}

// TestWake_NoListenerStillPolls: an engine whose storage cannot listen (a
// fake) gets no events and works as before, by polling.
func TestWake_NoListenerStillPolls(t *testing.T) {
	t.Parallel()
	s := testutil.NewSQLiteStorage(t)
	wf := engine.Define("wake-fake", "v1", func(ctx *engine.Context, n int) (string, error) {
		return fmt.Sprint(n), nil
	})
	fake := struct{ repository.WorkflowStorage }{s} // hides Listen
	cfg := fast("fake")
	e := engine.New(fake, cfg)
	require.NoError(t, e.Register(wf))
	run(t, e)
	client := engine.New(fake, fast("client"))
	h, err := wf.Start(t.Context(), client, 7)
	require.NoError(t, err)
	out, err := h.Result(t.Context())
	require.NoError(t, err)
	require.Equal(t, "7", out)
}

// TestWake_PostgresListenerReconnects: B's listening connection is killed;
// B connects again, and work started on A afterwards still runs on B at once.
func TestWake_PostgresListenerReconnects(t *testing.T) {
	t.Parallel()
	ran := make(chan string, 1)
	wf := engine.Define("wake-reconnect", "v1", func(ctx *engine.Context, _ int) (string, error) {
		return engine.Step(ctx, "run", func(context.Context) (string, error) {
			ran <- ctx.NodeID()
			return "ok", nil
		})
	})
	dsn := testutil.PostgresSchemaDSN(t)
	app := fmt.Sprintf("wf_wake_%d", time.Now().UnixNano())
	open := func(dsn string) *repository.Storage {
		s, err := repository.Open(context.Background(), dsn, repository.WithMaxOpenConns(4))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	n := wakeNodes{sa: open(dsn), sb: open(dsn + "&application_name=" + app)}
	a, _ := n.start(t, wf)

	// listener returns the pid of B's listening connection, once there is one
	// other than old.
	listener := func(old int) int {
		t.Helper()
		var pid int
		require.Eventually(t, func() bool {
			var pids []int
			require.NoError(t, n.sa.DB().Raw(`SELECT pid FROM pg_stat_activity WHERE application_name = ? AND query LIKE 'LISTEN%'`, app).Scan(&pids).Error)
			if len(pids) == 1 && pids[0] != old {
				pid = pids[0]
				return true
			}
			return false
		}, wakeBound, 10*time.Millisecond, "B listens")
		return pid
	}
	pid := listener(0)
	var killed bool
	require.NoError(t, n.sa.DB().Raw(`SELECT pg_terminate_backend(?)`, pid).Scan(&killed).Error)
	require.True(t, killed)
	listener(pid)

	start := time.Now()
	_, err := wf.Start(t.Context(), a, 1)
	require.NoError(t, err)
	require.Equal(t, "B", within(t, ran, start, "after B's listener reconnected, started on A, running on B"))
}
