package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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

// Adversary tests for issue 9: parked waits, pushed wake-ups, sharing and
// hand-over. Every engine here presumes a node dead only after a minute, so
// that no takeover hides a wake-up that never came: whatever must happen
// "at once" is awaited for adv9Bound, well under that threshold.

const (
	adv9Stale = time.Minute
	adv9Bound = 30 * time.Second
)

func adv9Config(node string) engine.Config {
	return engine.Config{
		NodeID:            node,
		HeartbeatInterval: 100 * time.Millisecond,
		StaleThreshold:    adv9Stale,
		PollInterval:      20 * time.Millisecond,
		DrainTimeout:      200 * time.Millisecond,
	}
}

// adv9Await waits for the end of an execution for at most adv9Bound.
func adv9Await(t *testing.T, e *engine.Engine, id string) *models.WorkflowExecution {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adv9Bound)
	defer cancel()
	exec, err := e.Await(ctx, id)
	require.NoError(t, err, "execution %s did not end within %s (stale threshold %s): a wake-up was lost", id, adv9Bound, adv9Stale)
	return exec
}

func adv9Output(t *testing.T, exec *models.WorkflowExecution) string {
	t.Helper()
	require.Equal(t, models.ExecutionCompleted, exec.Status, "error: %s", deref(exec.Error))
	return string(exec.Output)
}

func adv9Signals(t *testing.T, s *repository.Storage, id string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, s.DB().Table("signals").Where("execution_id = ?", id).Count(&n).Error)
	return n
}

func adv9Run(t *testing.T, s *repository.Storage, cfg engine.Config, wfs ...engine.Registrable) (*engine.Engine, func()) {
	t.Helper()
	e := engine.New(s, cfg)
	require.NoError(t, e.Register(wfs...))
	return e, run(t, e)
}

// TestAdversary9_LingeringParkedRunIsResumed: a workflow that, once its
// AwaitSignal parked, takes its time to return (it logs, cleans up, or just
// ignores the error for a while). Meanwhile the signal comes and a sweep of
// the same node claims the execution. The claim must not be lost because the
// old, parked run has not left yet: the workflow completes well before the
// stale threshold.
func TestAdversary9_LingeringParkedRunIsResumed(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var runs atomic.Int32
		lingering := make(chan struct{}, 1)
		wf := engine.Define("adv9-linger", "v1", func(ctx *engine.Context, _ int) (string, error) {
			runs.Add(1)
			got, err := engine.AwaitSignal[string](ctx, "go", 0)
			if err != nil {
				select {
				case lingering <- struct{}{}:
				default:
				}
				// (buffered: the test may not be receiving yet)
				time.Sleep(500 * time.Millisecond) // slow clean-up after the park
				return "", err
			}
			return got, nil
		})
		e, _ := adv9Run(t, s, adv9Config("n1"), wf)
		h, err := wf.Start(t.Context(), e, 0)
		require.NoError(t, err)
		receive(t, lingering)
		require.NoError(t, e.Signal(t.Context(), h.ID(), "go", "hello"))
		require.Equal(t, `"hello"`, adv9Output(t, adv9Await(t, e, h.ID())))
		require.EqualValues(t, 2, runs.Load())
	})
}

// TestAdversary9_SignalsWhileParking: one workflow receives 40 signals in a
// row, each wait parking; the signals come from another engine with random
// pauses, so many arrive while the workflow is between its look and its
// park. None is lost, each is received once and in order.
func TestAdversary9_SignalsWhileParking(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		const n = 40
		wf := engine.Define("adv9-many", "v1", func(ctx *engine.Context, _ int) ([]int, error) {
			var got []int
			for range n {
				v, err := engine.AwaitSignal[int](ctx, "tick", 0)
				if err != nil {
					return nil, err
				}
				got = append(got, v)
			}
			return got, nil
		})
		e, _ := adv9Run(t, s, adv9Config("worker"), wf)
		client := engine.New(s, adv9Config("client"))
		h, err := wf.Start(t.Context(), e, 0)
		require.NoError(t, err)
		for i := range n {
			time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
			require.NoError(t, client.Signal(t.Context(), h.ID(), "tick", i))
		}
		exec := adv9Await(t, e, h.ID())
		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		require.JSONEq(t, fmt.Sprint(jsonInts(want)), adv9Output(t, exec))
		require.Zero(t, adv9Signals(t, s, h.ID()))
		require.Len(t, history(t, s, h.ID()), n)
	})
}

func jsonInts(v []int) string {
	out := "["
	for i, x := range v {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprint(x)
	}
	return out + "]"
}

// TestAdversary9_TwoSignalsOneParkedWait: two signals stored for one parked
// wait: the first wakes it, the second goes to the next wait, and a signal
// of another name wakes nothing and stays stored.
func TestAdversary9_TwoSignalsOneParkedWait(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		wf := engine.Define("adv9-two", "v1", func(ctx *engine.Context, _ int) (string, error) {
			a, err := engine.AwaitSignal[string](ctx, "go", 0)
			if err != nil {
				return "", err
			}
			mid, err := engine.Step(ctx, "mid", func(context.Context) (string, error) { return "-", nil })
			if err != nil {
				return "", err
			}
			b, err := engine.AwaitSignal[string](ctx, "go", 0)
			if err != nil {
				return "", err
			}
			return a + mid + b, nil
		})
		e, _ := adv9Run(t, s, adv9Config("n1"), wf)
		h, err := wf.Start(t.Context(), e, 0)
		require.NoError(t, err)
		waitParked(t, s, h.ID())

		require.NoError(t, e.Signal(t.Context(), h.ID(), "other", "x"))
		time.Sleep(300 * time.Millisecond) // fifteen polls
		exec := waitParked(t, s, h.ID())
		require.Equal(t, "go", deref(exec.WaitSignal))
		require.EqualValues(t, 1, adv9Signals(t, s, h.ID()), "the other signal stays stored")
		require.Empty(t, history(t, s, h.ID()), "a signal of another name woke the workflow")

		require.NoError(t, e.Signal(t.Context(), h.ID(), "go", "a"))
		require.NoError(t, e.Signal(t.Context(), h.ID(), "go", "b"))
		require.Equal(t, `"a-b"`, adv9Output(t, adv9Await(t, e, h.ID())))
		require.EqualValues(t, 1, adv9Signals(t, s, h.ID()), "only the other signal is left")
	})
}

// TestAdversary9_CancelRacingPark: Cancel sent at random moments around the
// park of an AwaitSignal. Every execution ends CANCELLED, nothing after the
// wait ever runs, a later Signal is refused, and the engine keeps working.
func TestAdversary9_CancelRacingPark(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var after atomic.Int32
		wf := engine.Define("adv9-cancel", "v1", func(ctx *engine.Context, _ int) (string, error) {
			if _, err := engine.Step(ctx, "before", func(context.Context) (int, error) { return 1, nil }); err != nil {
				return "", err
			}
			got, err := engine.AwaitSignal[string](ctx, "go", 0)
			if err != nil {
				return "", err
			}
			return engine.Step(ctx, "after", func(context.Context) (string, error) {
				after.Add(1)
				return got, nil
			})
		})
		e, _ := adv9Run(t, s, adv9Config("n1"), wf, quick)
		client := engine.New(s, adv9Config("client"))
		for round := range 20 {
			h, err := wf.Start(t.Context(), e, 0)
			require.NoError(t, err)
			time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond)
			canceller := e
			if round%2 == 1 {
				canceller = client
			}
			require.NoError(t, canceller.Cancel(t.Context(), h.ID()))
			exec := adv9Await(t, e, h.ID())
			require.Equal(t, models.ExecutionCancelled, exec.Status, "round %d", round)
			err = client.Signal(t.Context(), h.ID(), "go", "late")
			require.ErrorIs(t, err, engine.ErrExecutionEnded, "round %d", round)
		}
		time.Sleep(200 * time.Millisecond) // ten polls: nothing cancelled is resumed
		require.Zero(t, after.Load())
		q, err := quick.Start(t.Context(), e, 0)
		require.NoError(t, err)
		require.Equal(t, `"done"`, adv9Output(t, adv9Await(t, e, q.ID())))
	})
}

// TestAdversary9_ParkedForeignDefinition: an execution parked by B, whose
// definition A does not run, is never claimed by A (which sweeps all the
// time for work of its own), and A's signal still wakes it on B.
func TestAdversary9_ParkedForeignDefinition(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var nodes sync.Map
		wf := engine.Define("adv9-foreign", "v1", func(ctx *engine.Context, _ int) (string, error) {
			nodes.Store(ctx.NodeID(), true)
			got, err := engine.AwaitSignal[string](ctx, "go", 0)
			if err != nil {
				return "", err
			}
			return engine.Step(ctx, "where", func(context.Context) (string, error) { return got + "@" + ctx.NodeID(), nil })
		})
		a, _ := adv9Run(t, s, adv9Config("A"), quick)
		b, _ := adv9Run(t, s, adv9Config("B"), wf)
		h, err := wf.Start(t.Context(), a, 0) // A does not run it: B claims it
		require.NoError(t, err)
		waitParked(t, s, h.ID())
		require.NoError(t, a.Signal(t.Context(), h.ID(), "go", "x"))
		require.Equal(t, `"x@B"`, adv9Output(t, adv9Await(t, a, h.ID())))
		_, onA := nodes.Load("A")
		require.False(t, onA)
		_ = b
	})
}

// TestAdversary9_TimeoutShorterThanParkedSleep: a workflow with a 1 s
// timeout sleeps an hour; it parks, and ends TIMED_OUT at its timeout, not
// at the end of its sleep nor after a stale threshold.
func TestAdversary9_TimeoutShorterThanParkedSleep(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var after atomic.Int32
		wf := engine.Define("adv9-bounded", "v1", func(ctx *engine.Context, _ int) (string, error) {
			if err := engine.Sleep(ctx, "nap", time.Hour); err != nil {
				return "", err
			}
			after.Add(1)
			return "woke", nil
		}, engine.WithTimeout(time.Second))
		sig := engine.Define("adv9-bounded-signal", "v1", func(ctx *engine.Context, _ int) (string, error) {
			return engine.AwaitSignal[string](ctx, "never", time.Hour)
		}, engine.WithTimeout(time.Second))
		e, _ := adv9Run(t, s, adv9Config("n1"), wf, sig)
		h, err := wf.Start(t.Context(), e, 0)
		require.NoError(t, err)
		g, err := sig.Start(t.Context(), e, 0)
		require.NoError(t, err)
		waitParked(t, s, h.ID())
		waitParked(t, s, g.ID())
		for _, id := range []string{h.ID(), g.ID()} {
			exec := adv9Await(t, e, id)
			require.Equal(t, models.ExecutionTimedOut, exec.Status)
		}
		require.Zero(t, after.Load())
	})
}

// TestAdversary9_SignalRacingParkedDeadline: a parked AwaitSignal with a
// timeout; the signal is sent around its deadline. Either the workflow got
// the signal (and it is consumed) or it timed out (and the signal is still
// stored, for nobody): never both, never neither.
func TestAdversary9_SignalRacingParkedDeadline(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		wf := engine.Define("adv9-deadline", "v1", func(ctx *engine.Context, timeout time.Duration) (string, error) {
			got, err := engine.AwaitSignal[string](ctx, "go", timeout)
			if errors.Is(err, engine.ErrSignalTimeout) {
				return "timed out", nil
			}
			return got, err
		})
		e, _ := adv9Run(t, s, adv9Config("n1"), wf)
		client := engine.New(s, adv9Config("client"))
		got, timedOut := 0, 0
		for round := range 16 {
			const timeout = 150 * time.Millisecond
			h, err := wf.Start(t.Context(), e, timeout)
			require.NoError(t, err)
			time.Sleep(timeout - 30*time.Millisecond + time.Duration(rand.IntN(60))*time.Millisecond)
			err = client.Signal(t.Context(), h.ID(), "go", "sig")
			if errors.Is(err, engine.ErrExecutionEnded) {
				timedOut++
				require.Equal(t, `"timed out"`, adv9Output(t, adv9Await(t, e, h.ID())))
				continue
			}
			require.NoError(t, err, "round %d", round)
			out := adv9Output(t, adv9Await(t, e, h.ID()))
			switch out {
			case `"sig"`:
				got++
				require.Zero(t, adv9Signals(t, s, h.ID()), "round %d: received and still stored", round)
			case `"timed out"`:
				timedOut++
				require.EqualValues(t, 1, adv9Signals(t, s, h.ID()), "round %d: timed out and the signal is gone", round)
			default:
				t.Fatalf("round %d: output %s", round, out)
			}
		}
		t.Logf("received %d, timed out %d", got, timedOut)
	})
}

// TestAdversary9_ParallelBranchesWaitInPlace: waits inside Parallel do not
// park (a sibling may be mid-step): the execution stays owned throughout;
// a signal wait there is woken in place too.
func TestAdversary9_ParallelBranchesWaitInPlace(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		started := make(chan struct{})
		wf := engine.Define("adv9-par", "v1", func(ctx *engine.Context, _ int) (string, error) {
			var sig string
			err := engine.Parallel(ctx, 0,
				func(ctx *engine.Context) error {
					_, err := engine.Step(ctx, "mark", func(context.Context) (int, error) {
						close(started)
						return 1, nil
					})
					if err != nil {
						return err
					}
					return engine.Sleep(ctx, "nap", 400*time.Millisecond)
				},
				func(ctx *engine.Context) error {
					var err error
					sig, err = engine.AwaitSignal[string](ctx, "go", 0)
					return err
				})
			return sig, err
		})
		e, _ := adv9Run(t, s, adv9Config("n1"), wf)
		h, err := wf.Start(t.Context(), e, 0)
		require.NoError(t, err)
		receive(t, started)
		for range 20 {
			exec, err := s.GetExecution(t.Context(), h.ID())
			require.NoError(t, err)
			require.NotNil(t, exec.NodeID, "a wait inside Parallel parked")
			time.Sleep(10 * time.Millisecond)
		}
		require.NoError(t, e.Signal(t.Context(), h.ID(), "go", "in place"))
		require.Equal(t, `"in place"`, adv9Output(t, adv9Await(t, e, h.ID())))
	})
}

// TestAdversary9_BranchSignalIdsSurviveHandOver: three branches of Parallel
// each wait for a signal of one name. Two signals arrive, the node stops
// gracefully and hands the execution over; the next node replays it: each
// branch that had received a signal gets the same payload again, and the
// third gets the third signal.
func TestAdversary9_BranchSignalIdsSurviveHandOver(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		wf := engine.Define("adv9-branches", "v1", func(ctx *engine.Context, _ int) ([]string, error) {
			out := make([]string, 3)
			err := engine.Parallel(ctx, 0,
				func(ctx *engine.Context) (err error) { out[0], err = engine.AwaitSignal[string](ctx, "s", 0); return },
				func(ctx *engine.Context) (err error) { out[1], err = engine.AwaitSignal[string](ctx, "s", 0); return },
				func(ctx *engine.Context) (err error) { out[2], err = engine.AwaitSignal[string](ctx, "s", 0); return },
			)
			return out, err
		})
		cfg := adv9Config("n1")
		cfg.PollInterval = 5 * time.Millisecond
		e1, stop1 := adv9Run(t, s, cfg, wf)
		h, err := wf.Start(t.Context(), e1, 0)
		require.NoError(t, err)
		require.NoError(t, e1.Signal(t.Context(), h.ID(), "s", "p0"))
		require.NoError(t, e1.Signal(t.Context(), h.ID(), "s", "p1"))
		deadline := time.Now().Add(adv9Bound)
		for len(history(t, s, h.ID())) < 2 {
			require.True(t, time.Now().Before(deadline), "two signals not received")
			time.Sleep(5 * time.Millisecond)
		}
		stop1()
		before := map[string]string{}
		for _, st := range history(t, s, h.ID()) {
			require.Equal(t, models.StepCompleted, st.Status)
			before[st.StepID] = string(st.Output)
		}
		require.Len(t, before, 2)

		e2, _ := adv9Run(t, s, adv9Config("n2"), wf)
		require.NoError(t, e2.Signal(t.Context(), h.ID(), "s", "p2"))
		exec := adv9Await(t, e2, h.ID())
		out, err := wf.Handle(e2, h.ID()).Result(t.Context())
		require.NoError(t, err, deref(exec.Error))
		require.ElementsMatch(t, []string{"p0", "p1", "p2"}, out)
		for i, v := range out {
			if old, ok := before[fmt.Sprintf("branch:%d/signal:s:1", i)]; ok {
				require.Equal(t, fmt.Sprintf("%q", v), old, "branch %d got another payload on replay", i)
			}
		}
		require.Len(t, history(t, s, h.ID()), 3)
	})
}

// TestAdversary9_IgnoredParkError: a workflow that ignores what Sleep
// returns when it parks, calls another step, ignores that error too and
// returns success. It must not complete before its sleep: the step after
// the sleep runs exactly once, after it.
func TestAdversary9_IgnoredParkError(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var afterRuns atomic.Int32
		var sleptAt atomic.Int64
		wf := engine.Define("adv9-ignore", "v1", func(ctx *engine.Context, _ int) (string, error) {
			_ = engine.Sleep(ctx, "nap", 300*time.Millisecond)
			v, _ := engine.Step(ctx, "after", func(context.Context) (string, error) {
				afterRuns.Add(1)
				sleptAt.Store(time.Now().UnixNano())
				return "after", nil
			})
			return "done:" + v, nil
		})
		e, _ := adv9Run(t, s, adv9Config("n1"), wf)
		start := time.Now()
		h, err := wf.Start(t.Context(), e, 0)
		require.NoError(t, err)
		require.Equal(t, `"done:after"`, adv9Output(t, adv9Await(t, e, h.ID())))
		require.EqualValues(t, 1, afterRuns.Load())
		require.GreaterOrEqual(t, time.Duration(sleptAt.Load()-start.UnixNano()), 300*time.Millisecond, "the step after the sleep ran before it ended")
		require.Equal(t, []string{"nap:COMPLETED", "after:COMPLETED"}, statuses(history(t, s, h.ID())))
	})
}

// TestAdversary9_ManyEnginesResumeParkedOnce: four engines, sixty parked
// waiters, all signalled at once from a client: every waiter completes and
// the step after its wait runs exactly once, on whichever node.
func TestAdversary9_ManyEnginesResumeParkedOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var mu sync.Mutex
		runs := map[string]int{}
		wf := engine.Define("adv9-herd", "v1", func(ctx *engine.Context, _ int) (string, error) {
			got, err := engine.AwaitSignal[string](ctx, "go", 0)
			if err != nil {
				return "", err
			}
			return engine.Step(ctx, "after", func(context.Context) (string, error) {
				mu.Lock()
				runs[ctx.ExecutionID()]++
				mu.Unlock()
				return got, nil
			})
		})
		var engines []*engine.Engine
		for i := range 4 {
			cfg := adv9Config(fmt.Sprintf("n%d", i))
			cfg.MaxConcurrent = 8
			e, _ := adv9Run(t, s, cfg, wf)
			engines = append(engines, e)
		}
		client := engine.New(s, adv9Config("client"))
		var ids []string
		for i := range 60 {
			h, err := wf.Start(t.Context(), engines[i%4], 0)
			require.NoError(t, err)
			ids = append(ids, h.ID())
		}
		for _, id := range ids {
			waitParked(t, s, id)
		}
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				require.NoError(t, client.Signal(t.Context(), id, "go", id))
			}()
		}
		wg.Wait()
		for _, id := range ids {
			require.Equal(t, fmt.Sprintf("%q", id), adv9Output(t, adv9Await(t, client, id)))
		}
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			require.Equal(t, 1, runs[id], id)
		}
	})
}

// TestAdversary9_DrainCancelsLongStepElsewhereOnce: a step outlasts the
// DrainTimeout of a stopping node: its ctx ends, the attempt is journaled
// CANCELLED (not a crash), and another node reruns it at once, once.
func TestAdversary9_DrainCancelsLongStepElsewhereOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var runs atomic.Int32
		entered := make(chan struct{}, 2)
		wf := engine.Dynamic(def("adv9-drain"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "slow", func(c context.Context) (string, error) {
				n := runs.Add(1)
				entered <- struct{}{}
				if n == 1 {
					<-c.Done()
					return "", c.Err()
				}
				return "ran on " + ctx.NodeID(), nil
			})
		})
		e1, stop1 := adv9Run(t, s, adv9Config("n1"), wf)
		id, err := e1.Start(t.Context(), "adv9-drain", "v1", nil)
		require.NoError(t, err)
		receive(t, entered)
		stop1()
		exec, err := s.GetExecution(t.Context(), id)
		require.NoError(t, err)
		require.Nil(t, exec.NodeID, "not handed back")
		require.Equal(t, []string{"slow:CANCELLED"}, statuses(history(t, s, id)))

		e2, _ := adv9Run(t, s, adv9Config("n2"), wf)
		require.Equal(t, `"ran on n2"`, adv9Output(t, adv9Await(t, e2, id)))
		require.EqualValues(t, 2, runs.Load())
		h := history(t, s, id)
		require.Equal(t, []string{"slow:CANCELLED", "slow:COMPLETED"}, statuses(h))
		require.Equal(t, 2, h[1].Attempt)
	})
}

// adv9Stale creates n executions of defID owned by a dead node whose
// heartbeat is an hour old.
func adv9StaleWork(t *testing.T, s *repository.Storage, defID string, n int) []string {
	t.Helper()
	d := def(defID)
	require.NoError(t, s.SaveDefinition(t.Context(), &d))
	var ids []string
	for range n {
		exec, err := s.CreateExecution(t.Context(), repository.NewExecution{DefinitionID: defID, DefinitionVersion: "v1", NodeID: "dead"})
		require.NoError(t, err)
		ids = append(ids, exec.ExecutionID)
	}
	require.NoError(t, s.DB().Exec(`UPDATE workflow_executions SET last_heartbeat = ? WHERE node_id = 'dead'`,
		time.Now().Add(-time.Hour).UTC()).Error)
	return ids
}

// TestAdversary9_StopDuringRecoverOnStartup: a node starts beside 80 stale
// executions and is stopped at random moments of its startup recovery.
// Once Run has returned it owns nothing (all handed back or never taken),
// and a second node completes every execution with each step run once.
func TestAdversary9_StopDuringRecoverOnStartup(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var mu sync.Mutex
		runs := map[string]int{}
		wf := engine.Dynamic(def("adv9-recover"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "one", func(context.Context) (int, error) {
				mu.Lock()
				runs[ctx.ExecutionID()]++
				mu.Unlock()
				return 1, nil
			})
		})
		ids := adv9StaleWork(t, s, "adv9-recover", 80)
		for round := range 4 {
			node := fmt.Sprintf("r%d", round)
			e := engine.New(s, adv9Config(node))
			require.NoError(t, e.Register(wf))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			cancel()
			require.NoError(t, receive(t, done))
			var owned int64
			require.NoError(t, s.DB().Table("workflow_executions").
				Where("node_id = ? AND status IN ?", node, []string{"PENDING", "RUNNING"}).Count(&owned).Error)
			require.Zero(t, owned, "round %d: a stopped node still owns live executions", round)
		}
		e, _ := adv9Run(t, s, adv9Config("last"), wf)
		for _, id := range ids {
			require.Equal(t, "1", adv9Output(t, adv9Await(t, e, id)))
		}
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			require.Equal(t, 1, runs[id], id)
		}
	})
}

// TestAdversary9_StartDuringRunStartup: Starts race Run's startup recovery
// (which resumes stale work): every started execution runs once.
func TestAdversary9_StartDuringRunStartup(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var mu sync.Mutex
		runs := map[string]int{}
		wf := engine.Dynamic(def("adv9-startup"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "one", func(context.Context) (int, error) {
				mu.Lock()
				runs[ctx.ExecutionID()]++
				mu.Unlock()
				return 1, nil
			})
		})
		ids := adv9StaleWork(t, s, "adv9-startup", 30)
		e := engine.New(s, adv9Config("n1"))
		require.NoError(t, e.Register(wf))
		var wg sync.WaitGroup
		var idsMu sync.Mutex
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					id, err := e.Start(t.Context(), "adv9-startup", "v1", nil)
					require.NoError(t, err)
					idsMu.Lock()
					ids = append(ids, id)
					idsMu.Unlock()
				}
			}()
		}
		run(t, e)
		wg.Wait()
		for _, id := range ids {
			require.Equal(t, "1", adv9Output(t, adv9Await(t, e, id)))
		}
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			require.Equal(t, 1, runs[id], id)
		}
	})
}

// TestAdversary9_PostgresListenerKilledWhileSignalling: B's listening
// connection is killed again and again while A signals workflows parked on
// B; with a 30 s poll only events and the resync after each reconnect can
// wake them: each completes within wakeBound.
func TestAdversary9_PostgresListenerKilledWhileSignalling(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresSchemaDSN(t)
	app := fmt.Sprintf("wf_adv9_%d", time.Now().UnixNano())
	open := func(dsn string) *repository.Storage {
		s, err := repository.Open(context.Background(), dsn, repository.WithMaxOpenConns(4))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	sa, sb := open(dsn), open(dsn+"&application_name="+app)
	wf := engine.Define("adv9-killed-listener", "v1", func(ctx *engine.Context, _ int) (string, error) {
		return engine.AwaitSignal[string](ctx, "go", 0)
	})
	cfgB := wakeConfig("B") // polls every 30 s
	a := engine.New(sa, wakeConfig("A"))
	run(t, a)
	// B parks only waits longer than its poll: a short poll to park them,
	// then a node with a 30 s poll to wake them.
	parker := engine.New(sb, fast("parker"))
	require.NoError(t, parker.Register(wf))
	stopParker := run(t, parker)
	var ids []string
	for range 6 {
		h, err := wf.Start(t.Context(), parker, 0)
		require.NoError(t, err)
		ids = append(ids, h.ID())
	}
	for _, id := range ids {
		waitParked(t, sb, id)
	}
	stopParker()
	b := engine.New(sb, cfgB)
	require.NoError(t, b.Register(wf))
	run(t, b)
	listener := func() int {
		var pid int
		require.Eventually(t, func() bool {
			var pids []int
			require.NoError(t, sa.DB().Raw(`SELECT pid FROM pg_stat_activity WHERE application_name = ? AND query LIKE 'LISTEN%'`, app).Scan(&pids).Error)
			if len(pids) == 1 {
				pid = pids[0]
				return true
			}
			return false
		}, wakeBound, 5*time.Millisecond, "B listens")
		return pid
	}
	for i, id := range ids {
		pid := listener()
		var killed bool
		require.NoError(t, sa.DB().Raw(`SELECT pg_terminate_backend(?)`, pid).Scan(&killed).Error)
		if i%2 == 0 {
			time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
		}
		require.NoError(t, a.Signal(t.Context(), id, "go", id))
		ctx, cancel := context.WithTimeout(t.Context(), wakeBound)
		exec, err := a.Await(ctx, id)
		cancel()
		require.NoError(t, err, "signal %d sent while B's listener was down was not acted on within %s", i, wakeBound)
		require.Equal(t, fmt.Sprintf("%q", id), string(exec.Output))
	}
}

// TestAdversary9_NodesTableStaysBounded: every engine upserts a row in
// workflow_nodes; nodes with fresh ids (the default: host, pid, random) come
// and go on every deploy. The rows of nodes gone long ago must not pile up
// for ever.
func TestAdversary9_NodesTableStaysBounded(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		for i := range 20 {
			require.NoError(t, s.BeatNode(t.Context(), fmt.Sprintf("gone-%d", i)))
		}
		require.NoError(t, s.DB().Exec(`UPDATE workflow_nodes SET last_seen = ?`, time.Now().Add(-30*24*time.Hour).UTC()).Error)
		e, _ := adv9Run(t, s, adv9Config("alive"), quick)
		q, err := quick.Start(t.Context(), e, 0)
		require.NoError(t, err)
		adv9Await(t, e, q.ID())
		time.Sleep(300 * time.Millisecond) // a few heartbeats
		var rows []string
		require.NoError(t, s.DB().Table("workflow_nodes").Pluck("node_id", &rows).Error)
		require.Equal(t, []string{"alive"}, rows)
	})
}

// adv9SlowPark is a storage whose ParkExecution answers late: the park has
// committed, but its answer takes a while to come back (network latency, a
// descheduled process).
type adv9SlowPark struct {
	*repository.Storage
	parked chan string
}

func (s adv9SlowPark) ParkExecution(ctx context.Context, p repository.ParkParams) error {
	err := s.Storage.ParkExecution(ctx, p)
	if err == nil {
		s.parked <- p.ExecutionID
		time.Sleep(300 * time.Millisecond)
	}
	return err
}

// TestAdversary9_SignalWhileParkAnswers: the signal is stored after the
// park committed but before the parking node heard back. Its event reaches
// the node while the run is still there; the node must not take it for a
// waiter of its own: it claims the execution at once, not at its next poll
// (30 s here).
func TestAdversary9_SignalWhileParkAnswers(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		wf := engine.Define("adv9-slow-park", "v1", func(ctx *engine.Context, _ int) (string, error) {
			return engine.AwaitSignal[string](ctx, "go", 0)
		})
		slow := adv9SlowPark{Storage: s, parked: make(chan string, 1)}
		b := engine.New(slow, wakeConfig("B"))
		require.NoError(t, b.Register(wf))
		run(t, b)
		client := engine.New(s, wakeConfig("client"))
		h, err := wf.Start(t.Context(), b, 0)
		require.NoError(t, err)
		require.Equal(t, h.ID(), receive(t, slow.parked))
		start := time.Now()
		require.NoError(t, client.Signal(t.Context(), h.ID(), "go", "now"))
		ctx, cancel := context.WithTimeout(t.Context(), wakeBound)
		defer cancel()
		exec, err := b.Await(ctx, h.ID())
		require.NoError(t, err, "the signal stored while the park answered waits for the next poll (30 s)")
		t.Logf("woken after %s", time.Since(start))
		require.Equal(t, `"now"`, string(exec.Output))
	})
}

// TestAdversary9_HandOverWakesAPollingNode: node 2 is running and polls
// only every 30 s; node 1 stops gracefully mid-step. The hand-back is an
// event: node 2 resumes the execution at once, and the step that had
// returned does not run again.
func TestAdversary9_HandOverWakesAPollingNode(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var firstRuns, secondRuns atomic.Int32
		entered := make(chan struct{}, 1)
		wf := engine.Dynamic(def("adv9-handover"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			if _, err := engine.Step(ctx, "first", func(context.Context) (int, error) {
				firstRuns.Add(1)
				entered <- struct{}{}
				time.Sleep(50 * time.Millisecond) // returns within the drain
				return 1, nil
			}); err != nil {
				return nil, err
			}
			return engine.Step(ctx, "second", func(context.Context) (string, error) {
				secondRuns.Add(1)
				return ctx.NodeID(), nil
			})
		})
		n2 := engine.New(s, wakeConfig("n2"))
		require.NoError(t, n2.Register(wf))
		run(t, n2)
		cfg := wakeConfig("n1")
		cfg.MaxConcurrent = 1
		n1 := engine.New(s, cfg)
		require.NoError(t, n1.Register(wf))
		stop1 := run(t, n1)
		id, err := n1.Start(t.Context(), "adv9-handover", "v1", nil)
		require.NoError(t, err)
		receive(t, entered)
		stop1()
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), wakeBound)
		defer cancel()
		exec, err := n2.Await(ctx, id)
		require.NoError(t, err, "the hand-back did not wake node 2 (it polls every 30 s)")
		t.Logf("resumed and ended on n2 %s after node 1 stopped", time.Since(start))
		require.Equal(t, `"n2"`, string(exec.Output))
		require.EqualValues(t, 1, firstRuns.Load())
		require.EqualValues(t, 1, secondRuns.Load())
	})
}

// TestAdversary9_LingeringParkedRunDuringStop: as in
// TestAdversary9_LingeringParkedRunIsResumed, the node claims the execution
// again while its parked run is still returning, and then stops. The claim
// is handed back, not kept: once Run has returned the node owns nothing, and
// another node completes the workflow at once.
func TestAdversary9_LingeringParkedRunDuringStop(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		lingering := make(chan struct{}, 1)
		wf := engine.Define("adv9-linger-stop", "v1", func(ctx *engine.Context, _ int) (string, error) {
			got, err := engine.AwaitSignal[string](ctx, "go", 0)
			if err != nil {
				select {
				case lingering <- struct{}{}:
				default:
				}
				time.Sleep(500 * time.Millisecond)
				return "", err
			}
			return got + "@" + ctx.NodeID(), nil
		})
		n1, stop1 := adv9Run(t, s, adv9Config("n1"), wf)
		h, err := wf.Start(t.Context(), n1, 0)
		require.NoError(t, err)
		receive(t, lingering)
		require.NoError(t, n1.Signal(t.Context(), h.ID(), "go", "x"))
		// Claimed again by n1 while its run lingers.
		deadline := time.Now().Add(adv9Bound)
		for {
			exec, err := s.GetExecution(t.Context(), h.ID())
			require.NoError(t, err)
			if deref(exec.NodeID) == "n1" {
				break
			}
			require.True(t, time.Now().Before(deadline), "n1 did not claim it again")
			time.Sleep(2 * time.Millisecond)
		}
		stop1()
		exec, err := s.GetExecution(t.Context(), h.ID())
		require.NoError(t, err)
		if exec.Status == models.ExecutionRunning {
			require.Nil(t, exec.NodeID, "a stopped node still owns the execution")
		}
		n2, _ := adv9Run(t, s, adv9Config("n2"), wf)
		out := adv9Output(t, adv9Await(t, n2, h.ID()))
		require.Contains(t, []string{`"x@n1"`, `"x@n2"`}, out)
	})
}

// adv9Skewed emulates a database server whose clock is ahead of the node's
// by skew: the node's due times reach it skew early.
type adv9Skewed struct {
	*repository.Storage
	skew  time.Duration
	parks *atomic.Int32
}

func (s adv9Skewed) ParkExecution(ctx context.Context, p repository.ParkParams) error {
	s.parks.Add(1)
	if !p.Until.IsZero() {
		p.Until = p.Until.Add(-s.skew)
	}
	return s.Storage.ParkExecution(ctx, p)
}

// TestAdversary9_ClockBehindTheServerDoesNotSpin: the node's clock is a
// second behind PostgreSQL's (heartbeats and staleness use the server's
// clock, the README's "one clock"). A parked sleep is due by the server's
// clock a second early; the replay finds a second left, more than
// PollInterval, and parks again, due at once by the server's clock: claim,
// replay and park again, round after round, until the node's clock
// catches up. A handful of parks is fine; a spin is not.
func TestAdversary9_ClockBehindTheServerDoesNotSpin(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		wf := engine.Define("adv9-skew", "v1", func(ctx *engine.Context, _ int) (string, error) {
			if err := engine.Sleep(ctx, "nap", 1500*time.Millisecond); err != nil {
				return "", err
			}
			return "rested", nil
		})
		var parks atomic.Int32
		e := engine.New(adv9Skewed{Storage: s, skew: time.Second, parks: &parks}, adv9Config("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		h, err := wf.Start(t.Context(), e, 0)
		require.NoError(t, err)
		require.Equal(t, `"rested"`, adv9Output(t, adv9Await(t, e, h.ID())))
		t.Logf("%d parks for one sleep", parks.Load())
		// Parks say how long, on the database's clock (ParkParams.For), so
		// the skewed Until no longer decides.
		require.LessOrEqual(t, parks.Load(), int32(2), "a node whose clock is behind spun claim, replay and park")
	})
}

// TestAdversary9_ParkedBackoffs: a step failing four times with backoffs
// longer than PollInterval parks between attempts, on whichever of two
// nodes: every attempt runs once, with the next number; a Cancel during a
// parked backoff ends it with no further attempt.
func TestAdversary9_ParkedBackoffs(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var mu sync.Mutex
		attempts := map[string][]int{}
		policy := engine.RetryPolicy{MaxAttempts: 5, InitialBackoff: 60 * time.Millisecond}
		wf := engine.Define("adv9-backoff", "v1", func(ctx *engine.Context, failures int) (int, error) {
			return engine.Step(ctx, "call", func(context.Context) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				n := len(attempts[ctx.ExecutionID()]) + 1
				attempts[ctx.ExecutionID()] = append(attempts[ctx.ExecutionID()], n)
				if n <= failures {
					return 0, fmt.Errorf("failure %d", n)
				}
				return n, nil
			}, engine.WithRetry(policy))
		})
		a, _ := adv9Run(t, s, adv9Config("a"), wf)
		_, _ = adv9Run(t, s, adv9Config("b"), wf)
		h, err := wf.Start(t.Context(), a, 4)
		require.NoError(t, err)
		require.Equal(t, "5", adv9Output(t, adv9Await(t, a, h.ID())))
		mu.Lock()
		require.Equal(t, []int{1, 2, 3, 4, 5}, attempts[h.ID()])
		mu.Unlock()
		hist := history(t, s, h.ID())
		require.Equal(t, []string{"call:RETRYING", "call:RETRYING", "call:RETRYING", "call:RETRYING", "call:COMPLETED"}, statuses(hist))
		for i, st := range hist {
			require.Equal(t, i+1, st.Attempt)
		}

		c, err := wf.Start(t.Context(), a, 100)
		require.NoError(t, err)
		waitParked(t, s, c.ID())
		require.NoError(t, a.Cancel(t.Context(), c.ID()))
		require.Equal(t, models.ExecutionCancelled, adv9Await(t, a, c.ID()).Status)
		mu.Lock()
		n := len(attempts[c.ID()])
		mu.Unlock()
		time.Sleep(300 * time.Millisecond) // five backoffs
		mu.Lock()
		require.Len(t, attempts[c.ID()], n, "an attempt ran after the Cancel")
		mu.Unlock()
	})
}
