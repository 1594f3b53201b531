package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

var (
	napper = engine.Define("park-nap", "v1", func(ctx *engine.Context, d time.Duration) (string, error) {
		if err := engine.Sleep(ctx, "nap", d); err != nil {
			return "", err
		}
		return engine.Step(ctx, "after", func(context.Context) (string, error) { return "rested", nil })
	})
	waiter = engine.Define("park-wait", "v1", func(ctx *engine.Context, timeout time.Duration) (string, error) {
		got, err := engine.AwaitSignal[string](ctx, "go", timeout)
		if errors.Is(err, engine.ErrSignalTimeout) {
			return "timed out", nil
		}
		return got, err
	})
	quick = engine.Define("park-quick", "v1", func(ctx *engine.Context, _ int) (string, error) {
		return engine.Step(ctx, "one", func(context.Context) (string, error) { return "done", nil })
	})
)

// TestPark_WaitsGiveBackTheirSlots: with MaxConcurrent 2, two workflows
// sleeping an hour and one waiting for a signal do not keep a one-step
// workflow from running.
func TestPark_WaitsGiveBackTheirSlots(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		cfg := fast("n1")
		cfg.MaxConcurrent = 2
		e := engine.New(s, cfg)
		require.NoError(t, e.Register(napper, waiter, quick))
		run(t, e)
		var parked []string
		for range 2 {
			h, err := napper.Start(t.Context(), e, time.Hour)
			require.NoError(t, err)
			parked = append(parked, h.ID())
		}
		h, err := waiter.Start(t.Context(), e, 0)
		require.NoError(t, err)
		parked = append(parked, h.ID())
		for _, id := range parked {
			exec := waitParked(t, s, id)
			require.NotNil(t, exec.LastHeartbeat)
		}
		require.Equal(t, "go", *waitParked(t, s, h.ID()).WaitSignal)

		q, err := quick.Start(t.Context(), e, 0)
		require.NoError(t, err)
		out, err := q.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "done", out)
	})
}

// TestPark_SleepResumesWhenDue: a parked sleep is resumed by replay once due;
// the journaled wake-up time is kept and no step runs twice.
func TestPark_SleepResumesWhenDue(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(napper))
		run(t, e)
		h, err := napper.Start(t.Context(), e, 300*time.Millisecond)
		require.NoError(t, err)
		parked := waitParked(t, s, h.ID())
		require.Nil(t, parked.WaitSignal)
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "rested", out)
		require.Equal(t, []string{"nap:COMPLETED", "after:COMPLETED"}, statuses(history(t, s, h.ID())))
		exec, err := h.Execution(t.Context())
		require.NoError(t, err)
		require.Nil(t, exec.WaitSignal)
	})
}

// TestPark_SignalFromAnotherNodeWakesIt: the signal is stored by a node that
// does not run the workflow; the sweep of the node that does finds it.
func TestPark_SignalFromAnotherNodeWakesIt(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		worker := engine.New(s, fast("worker"))
		require.NoError(t, worker.Register(waiter))
		run(t, worker)
		h, err := waiter.Start(t.Context(), worker, 0)
		require.NoError(t, err)
		waitParked(t, s, h.ID())
		client := engine.New(s, fast("client"))
		require.NoError(t, client.Signal(t.Context(), h.ID(), "go", "from the client"))
		out, err := waiter.Handle(client, h.ID()).Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "from the client", out)
	})
}

// TestPark_SignalBeforeParkingIsNotLost: a signal stored while the workflow
// is about to park (it found none, then parks) still wakes it.
func TestPark_SignalBeforeParkingIsNotLost(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		worker := engine.New(s, fast("worker"))
		require.NoError(t, worker.Register(waiter))
		run(t, worker)
		client := engine.New(s, fast("client"))
		for i := range 20 {
			h, err := waiter.Start(t.Context(), worker, 0)
			require.NoError(t, err)
			require.NoError(t, client.Signal(t.Context(), h.ID(), "go", fmt.Sprint(i)))
			out, err := h.Result(t.Context())
			require.NoError(t, err)
			require.Equal(t, fmt.Sprint(i), out)
		}
	})
}

// TestPark_TimeoutsOfParkedWaits: a parked signal wait times out at its
// deadline, and a parked workflow past its WithTimeout ends TIMED_OUT.
func TestPark_TimeoutsOfParkedWaits(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		bounded := engine.Define("park-bounded", "v1", func(ctx *engine.Context, _ int) (string, error) {
			return "", engine.Sleep(ctx, "nap", time.Hour)
		}, engine.WithTimeout(300*time.Millisecond))
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(waiter, bounded))
		run(t, e)

		w, err := waiter.Start(t.Context(), e, 300*time.Millisecond)
		require.NoError(t, err)
		require.Equal(t, "go", *waitParked(t, s, w.ID()).WaitSignal)
		out, err := w.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "timed out", out)

		b, err := bounded.Start(t.Context(), e, 0)
		require.NoError(t, err)
		_, err = b.Result(t.Context())
		require.ErrorIs(t, err, engine.ErrTimedOut)
	})
}

// TestPark_LongRetryBackoff: a backoff longer than PollInterval parks the
// workflow; the next attempt runs when it is due.
func TestPark_LongRetryBackoff(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var runs atomic.Int32
		flaky := engine.Define("park-flaky", "v1", func(ctx *engine.Context, _ int) (int32, error) {
			return engine.Step(ctx, "call", func(context.Context) (int32, error) {
				if n := runs.Add(1); n < 2 {
					return 0, errors.New("try later")
				}
				return runs.Load(), nil
			}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 3, InitialBackoff: 300 * time.Millisecond}))
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(flaky))
		run(t, e)
		h, err := flaky.Start(t.Context(), e, 0)
		require.NoError(t, err)
		waitParked(t, s, h.ID())
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.EqualValues(t, 2, out)
		require.Equal(t, []string{"call:RETRYING", "call:COMPLETED"}, statuses(history(t, s, h.ID())))
	})
}

// TestPark_ManyWaitersHoldNothing: a tenth of the scale, in a
// process of its own so that its goroutines can be counted. One node with
// MaxConcurrent 8 parks 1,000 executions waiting for a signal and 1,000
// sleeping; while they wait the process holds under 200 goroutines; every
// sleeper ends, and after 1,000 signals every waiter does.
func TestPark_ManyWaitersHoldNothing(t *testing.T) {
	if raceDetector {
		t.Skip("a scale test: make test runs it without -race")
	}
	t.Parallel()
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			dsn := "sqlite://" + t.TempDir() + "/park.db"
			if dialect == testutil.Postgres {
				dsn = testutil.PostgresSchemaDSN(t)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperParkScale$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "WORKFLOW_PARK_SCALE_DSN="+dsn)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			require.Contains(t, string(out), "--- PASS: TestHelperParkScale")
			t.Logf("%s", out)
		})
	}
}

// TestHelperParkScale is TestPark_ManyWaitersHoldNothing's process.
func TestHelperParkScale(t *testing.T) {
	dsn := os.Getenv("WORKFLOW_PARK_SCALE_DSN")
	if dsn == "" {
		t.Skip("run by TestPark_ManyWaitersHoldNothing")
	}
	s, err := repository.Open(t.Context(), dsn)
	require.NoError(t, err)
	defer s.Close()
	const n = 1000
	cfg := fast("n1")
	cfg.MaxConcurrent = 8
	e := engine.New(s, cfg)
	require.NoError(t, e.Register(napper, waiter))
	run(t, e)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	waiting := make([]*engine.Handle[string], n)
	for i := range waiting {
		waiting[i], err = waiter.Start(ctx, e, 0)
		require.NoError(t, err)
	}
	sleeping := make([]*engine.Handle[string], n)
	for i := range sleeping {
		sleeping[i], err = napper.Start(ctx, e, 3*time.Second)
		require.NoError(t, err)
	}
	// Every signal waiter parked (the sleepers may be parked or done).
	deadline := time.Now().Add(5 * time.Minute)
	var parked int64
	for {
		require.NoError(t, s.DB().Model(&models.WorkflowExecution{}).
			Where("node_id IS NULL AND status = ? AND wait_signal IS NOT NULL", models.ExecutionRunning).Count(&parked).Error)
		if parked == n {
			break
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d signal waiters parked", parked, n)
		time.Sleep(20 * time.Millisecond)
	}
	goroutines := runtime.NumGoroutine()
	t.Logf("%d signal waiters parked, %d goroutines", parked, goroutines)
	require.Less(t, goroutines, 200, "parked executions hold no goroutine")

	for _, h := range sleeping {
		out, err := h.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, "rested", out)
	}
	for i, h := range waiting {
		require.NoError(t, e.Signal(ctx, h.ID(), "go", fmt.Sprint(i)))
	}
	for i, h := range waiting {
		out, err := h.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(i), out)
	}
}

// TestDrain_RunningStepFinishesAndIsHandedOver: when Run's context ends, a
// running step may finish (within DrainTimeout), its result is journaled, no
// new step starts, and the execution is handed back: another node resumes it
// at once, without running the finished step again.
func TestDrain_RunningStepFinishesAndIsHandedOver(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var first, second atomic.Int32
		entered := make(chan struct{}, 1)
		release := make(chan struct{})
		twoSteps := engine.Define("drain", "v1", func(ctx *engine.Context, _ int) (string, error) {
			if _, err := engine.Step(ctx, "first", func(c context.Context) (int32, error) {
				select {
				case entered <- struct{}{}:
				default:
				}
				<-release // finishes only after Run's context ended
				return first.Add(1), nil
			}); err != nil {
				return "", err
			}
			return engine.Step(ctx, "second", func(context.Context) (string, error) {
				second.Add(1)
				return "done", nil
			})
		})
		cfg := fast("old")
		cfg.DrainTimeout = time.Minute
		var logs strings.Builder
		var logMu sync.Mutex
		cfg.Logger = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(p) }), &slog.HandlerOptions{Level: slog.LevelDebug}))
		defer func() {
			if t.Failed() {
				logMu.Lock()
				t.Log(logs.String())
				logMu.Unlock()
			}
		}()
		old := engine.New(s, cfg)
		require.NoError(t, old.Register(twoSteps))
		runCtx, stop := context.WithCancel(t.Context())
		ran := make(chan error, 1)
		go func() { ran <- old.Run(runCtx) }()
		h, err := twoSteps.Start(t.Context(), old, 0)
		require.NoError(t, err)
		receive(t, entered)
		stop()         // Run's context has ended...
		close(release) // ...and only then does the step finish
		require.NoError(t, receive(t, ran))
		require.Equal(t, []string{"first:COMPLETED"}, statuses(history(t, s, h.ID())), "the step finished in the drain, the next did not start")
		exec, err := h.Execution(t.Context())
		require.NoError(t, err)
		require.Nil(t, exec.NodeID, "handed back, not owned by %s: %+v", deref(exec.NodeID), exec)

		cfg = engine.Config{NodeID: "new", HeartbeatInterval: time.Minute, StaleThreshold: time.Hour, PollInterval: 20 * time.Millisecond}
		next := engine.New(s, cfg)
		require.NoError(t, next.Register(twoSteps))
		run(t, next)
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "done", out)
		require.EqualValues(t, 1, first.Load(), "the drained step did not run again")
		require.EqualValues(t, 1, second.Load())
	})
}

// TestShare_ThreeNodesShareTheBacklog: 300 queued one-second workflows and
// three nodes: each runs between 20% and 47% of them.
func TestShare_ThreeNodesShareTheBacklog(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		work := engine.Define("share", "v1", func(ctx *engine.Context, _ int) (string, error) {
			return engine.Step(ctx, "work", func(c context.Context) (string, error) {
				select {
				case <-time.After(time.Second):
				case <-c.Done():
				}
				return ctx.NodeID(), c.Err()
			})
		})
		nodes := []string{"a", "b", "c"}
		for _, n := range nodes {
			cfg := fast(n)
			cfg.MaxConcurrent = 16 // several rounds of sweeps, not one
			// Sharing is measured here, not takeovers: a node whose beats
			// lag half a second on a loaded machine (fast's threshold) must
			// not lose its one-second steps to the others, which would count
			// them as crashed attempts.
			cfg.StaleThreshold = 5 * time.Second
			e := engine.New(s, cfg)
			require.NoError(t, e.Register(work))
			run(t, e)
		}
		// Every node has beaten before the work is queued.
		deadline := time.Now().Add(time.Minute)
		for {
			var alive int64
			require.NoError(t, s.DB().Table("workflow_nodes").Count(&alive).Error)
			if alive == int64(len(nodes)) {
				break
			}
			require.True(t, time.Now().Before(deadline), "nodes did not beat")
			time.Sleep(10 * time.Millisecond)
		}
		client := engine.New(s, fast("client"))
		handles := make([]*engine.Handle[string], 300)
		for i := range handles {
			var err error
			handles[i], err = work.Start(t.Context(), client, i)
			require.NoError(t, err)
		}
		ran := map[string]int{}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		for _, h := range handles {
			node, err := h.Result(ctx)
			require.NoError(t, err)
			ran[node]++
		}
		t.Logf("%s: %v", s.Dialect(), ran)
		for _, n := range nodes {
			require.GreaterOrEqual(t, ran[n], 60, "node %s ran %d of 300", n, ran[n])
			require.LessOrEqual(t, ran[n], 141, "node %s ran %d of 300", n, ran[n])
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
