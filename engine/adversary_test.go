package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

var errAdvX = errors.New("adv declared")

// awaitBounded waits for the execution with a short bound, returning nil on timeout.
func awaitBounded(t *testing.T, e *engine.Engine, id string, d time.Duration) *models.WorkflowExecution {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	exec, err := e.Await(ctx, id)
	if err != nil {
		return nil
	}
	return exec
}

// TestAdvDeclaredErrorWithOddText: a declared error whose text is invalid
// UTF-8 with a NUL keeps errors.Is and *StepError across a restart.
func TestAdvDeclaredErrorWithOddText(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var mu sync.Mutex
		var seen []string
		entered := make(chan struct{}, 1)
		var first atomic.Bool
		first.Store(true)
		wf := func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			_, err := engine.Step(ctx, "charge", func(context.Context) (int, error) {
				return 0, fmt.Errorf("bad \xff\x00 text: %w", errAdvX)
			}, engine.WithErrors(errAdvX))
			var se *engine.StepError
			r := fmt.Sprintf("is=%v as=%v", errors.Is(err, errAdvX), errors.As(err, &se))
			mu.Lock()
			seen = append(seen, r)
			mu.Unlock()
			return engine.Step(ctx, "after", func(c context.Context) (string, error) {
				if first.CompareAndSwap(true, false) {
					entered <- struct{}{}
					<-c.Done()
					return "", c.Err()
				}
				return "ok", nil
			})
		}
		id := startThenStop(t, s, "adv-odd", "adv-odd", wf, entered)
		exec := runAgain(t, s, "adv-odd-2", "adv-odd", wf, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status, "error %v", exec.Error)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []string{"is=true as=true", "is=true as=true"}, seen)
	})
}

// TestAdvUnstorableOtherFields: data the DB refuses in a step input, step id,
// signal name, or a value json cannot marshal; the workflow must end.
func TestAdvUnstorableOtherFields(t *testing.T) {
	cases := map[string]engine.WorkflowFunc{
		"nul-step-input": func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "s", func(context.Context) (int, error) { return 1, nil }, engine.WithInput("a\x00b"))
		},
		"nan-step-input": func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "s", func(context.Context) (int, error) { return 1, nil }, engine.WithInput(math.NaN()))
		},
		"nul-step-id": func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "s\x00x", func(context.Context) (int, error) { return 1, nil })
		},
		"utf8-step-id": func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "s\xffx", func(context.Context) (int, error) { return 1, nil })
		},
		"nul-signal-name": func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.AwaitSignal[string](ctx, "sig\x00", 10*time.Millisecond)
		},
		"nul-sleep-id": func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return nil, engine.Sleep(ctx, "nap\x00", time.Millisecond)
		},
		"chan-step-result": func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "s", func(context.Context) (any, error) { return make(chan int), nil })
		},
		"chan-output": func(ctx *engine.Context, _ json.RawMessage) (any, error) { return make(chan int), nil },
		"step-panics": func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "s", func(context.Context) (int, error) { panic("boom \x00\xff") })
		},
		"workflow-panics": func(ctx *engine.Context, _ json.RawMessage) (any, error) { panic("wf boom") },
		"nan-in-step-error-struct": func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "s", func(context.Context) (map[string]float64, error) {
				return map[string]float64{"x": math.Inf(-1)}, errors.New("with value")
			})
		},
	}
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		for name, wf := range cases {
			t.Run(name, func(t *testing.T) {
				e := engine.New(s, fast("advu-"+name))
				require.NoError(t, e.Register(engine.Dynamic(def("advu-"+name), wf)))
				run(t, e)
				id, err := e.Start(t.Context(), "advu-"+name, "v1", nil)
				require.NoError(t, err)
				exec := awaitBounded(t, e, id, 15*time.Second)
				if exec == nil {
					cur, _ := s.GetExecution(t.Context(), id)
					st := ""
					if cur != nil {
						st = string(cur.Status)
					}
					t.Fatalf("execution did not end within 15s (status %s, history %v)", st, statuses(history(t, s, id)))
				}
				require.True(t, exec.Status.Terminal())
				if exec.Error != nil {
					require.True(t, utf8.ValidString(*exec.Error))
				}
			})
		}
	})
}

// TestAdvStartOddIDs: Start with an execution id or input the DB may refuse
// returns an error or an execution that ends; it never hangs.
func TestAdvStartOddIDs(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("adv-ids"))
		require.NoError(t, e.Register(engine.Dynamic(def("adv-ids"), func(*engine.Context, json.RawMessage) (any, error) { return 1, nil })))
		run(t, e)
		for _, bad := range []string{"id\x00", "id\xff", ""} {
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			id, err := e.Start(ctx, "adv-ids", "v1", nil, engine.WithExecutionID(bad))
			cancel()
			if err == nil && id != "" {
				exec := awaitBounded(t, e, id, 15*time.Second)
				require.NotNil(t, exec, "execution %q accepted but never ended", id)
			}
			if bad == "id\x00" || bad == "id\xff" {
				// accepted or refused both fine, but no hang (bounded above)
			}
		}
		// input with NUL: refused cleanly or stored; must not hang
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		id, err := e.Start(ctx, "adv-ids", "v1", "x\x00y")
		if err == nil {
			require.NotNil(t, awaitBounded(t, e, id, 15*time.Second))
		}
		require.NoError(t, ctx.Err(), "Start hung")
	})
}

// TestAdvConcurrentStartSameID: concurrent Starts with one id and the same
// input all return the id; those with a different input ErrAlreadyExists.
func TestAdvConcurrentStartSameID(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var runs atomic.Int64
		e := engine.New(s, fast("adv-same"))
		require.NoError(t, e.Register(engine.Dynamic(def("adv-same"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "s", func(context.Context) (int64, error) { return runs.Add(1), nil })
		})))
		run(t, e)
		var wg sync.WaitGroup
		errs := make([]error, 16)
		ids := make([]string, 16)
		for i := range 16 {
			wg.Go(func() {
				in := map[string]int{"a": 1}
				if i%4 == 3 {
					in = map[string]int{"a": 2}
				}
				ids[i], errs[i] = e.Start(t.Context(), "adv-same", "v1", in, engine.WithExecutionID("adv-same-1"))
			})
		}
		wg.Wait()
		sameOK := 0
		for i := range 16 {
			if i%4 == 3 {
				continue
			}
			if errs[i] == nil && ids[i] == "adv-same-1" {
				sameOK++
			}
		}
		diffOK := 0
		for i := 3; i < 16; i += 4 {
			if errs[i] == nil {
				diffOK++
			}
		}
		if diffOK > 0 {
			// the different input won the race: then all same-input starts must fail
			require.Equal(t, 0, sameOK, "both inputs accepted: %v", errs)
		} else {
			require.Equal(t, 12, sameOK, "errors: %v", errs)
			for i := 3; i < 16; i += 4 {
				require.ErrorIs(t, errs[i], repository.ErrAlreadyExists)
			}
		}
		exec := await(t, e, "adv-same-1")
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.EqualValues(t, 1, runs.Load())
	})
}

// TestAdvCancelRacingFinish: Cancel racing completion never errors and leaves
// a terminal execution; a later Signal is ErrExecutionEnded.
func TestAdvCancelRacingFinish(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("adv-cancel"))
		require.NoError(t, e.Register(engine.Dynamic(def("adv-cancel"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "s", func(context.Context) (int, error) { return 1, nil })
		})))
		run(t, e)
		const n = 20
		var wg sync.WaitGroup
		ids := make([]string, n)
		cerrs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				id, err := e.Start(t.Context(), "adv-cancel", "v1", i)
				if err != nil {
					cerrs[i] = err
					return
				}
				ids[i] = id
				time.Sleep(time.Duration(i%5) * time.Millisecond)
				cerrs[i] = e.Cancel(t.Context(), id)
			})
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, cerrs[i])
			exec := awaitBounded(t, e, ids[i], 20*time.Second)
			require.NotNil(t, exec, "execution %s never ended", ids[i])
			require.True(t, exec.Status.Terminal())
			require.ErrorIs(t, e.Signal(t.Context(), ids[i], "x", 1), engine.ErrExecutionEnded)
		}
	})
}

// TestAdvSignalUnstorablePayload: a NaN / NUL payload is refused with an error
// and the waiting workflow still gets a later good signal.
func TestAdvSignalUnstorablePayload(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("adv-sig"))
		require.NoError(t, e.Register(engine.Dynamic(def("adv-sig"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.AwaitSignal[string](ctx, "go", 0)
		})))
		run(t, e)
		id, err := e.Start(t.Context(), "adv-sig", "v1", nil)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		require.Error(t, e.Signal(ctx, id, "go", math.NaN()))
		errNul := e.Signal(ctx, id, "go", "a\x00b")
		if errNul == nil {
			exec := awaitBounded(t, e, id, 15*time.Second)
			require.NotNil(t, exec, "NUL signal accepted but execution never ended")
			return
		}
		require.NoError(t, e.Signal(ctx, id, "go", "good"))
		exec := awaitBounded(t, e, id, 15*time.Second)
		require.NotNil(t, exec)
		require.Equal(t, models.ExecutionCompleted, exec.Status, "error %v", exec.Error)
		require.JSONEq(t, `"good"`, string(exec.Output))
	})
}

// TestAdvMaxConcurrentTwoOnePerNode: MaxConcurrent=1 with concurrent starts
// and resumes; peak must stay 1.
func TestAdvMaxConcurrentOne(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		cfg := fast("adv-limit1")
		cfg.MaxConcurrent = 1
		e := engine.New(s, cfg)
		var now, peak atomic.Int64
		require.NoError(t, e.Register(engine.Dynamic(def("adv-limit1"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			n := now.Add(1)
			defer now.Add(-1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			if err := engine.Sleep(ctx, "nap", 5*time.Millisecond); err != nil {
				return nil, err
			}
			return engine.Step(ctx, "s", func(context.Context) (bool, error) {
				time.Sleep(5 * time.Millisecond)
				return true, nil
			})
		})))
		run(t, e)
		const starts = 10
		ids := make([]string, starts)
		var wg sync.WaitGroup
		for i := range starts {
			wg.Go(func() {
				id, err := e.Start(t.Context(), "adv-limit1", "v1", i)
				require.NoError(t, err)
				ids[i] = id
			})
		}
		wg.Wait()
		for _, id := range ids {
			require.Equal(t, models.ExecutionCompleted, await(t, e, id).Status)
		}
		require.LessOrEqual(t, peak.Load(), int64(1))
	})
}

// TestAdvMaxConcurrentOneDiag: like TestAdvMaxConcurrentOne, logging who overlaps.
func TestAdvMaxConcurrentOneDiag(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		cfg := fast("adv-limitd")
		cfg.MaxConcurrent = 1
		e := engine.New(s, cfg)
		var mu sync.Mutex
		active := map[string]int{}
		calls := map[string]int{}
		peak := 0
		var peakSet []string
		require.NoError(t, e.Register(engine.Dynamic(def("adv-limitd"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			id := ctx.ExecutionID()
			mu.Lock()
			active[id]++
			calls[id]++
			n := 0
			for _, v := range active {
				n += v
			}
			if n > peak {
				peak = n
				peakSet = nil
				for k, v := range active {
					peakSet = append(peakSet, fmt.Sprintf("%s x%d", k, v))
				}
			}
			mu.Unlock()
			defer func() {
				mu.Lock()
				active[id]--
				if active[id] == 0 {
					delete(active, id)
				}
				mu.Unlock()
			}()
			return engine.Step(ctx, "s", func(context.Context) (bool, error) {
				time.Sleep(20 * time.Millisecond)
				return true, nil
			})
		})))
		run(t, e)
		ids := make([]string, 6)
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				id, err := e.Start(t.Context(), "adv-limitd", "v1", i)
				require.NoError(t, err)
				ids[i] = id
			})
		}
		wg.Wait()
		for _, id := range ids {
			require.Equal(t, models.ExecutionCompleted, await(t, e, id).Status)
		}
		mu.Lock()
		defer mu.Unlock()
		require.LessOrEqual(t, peak, 1, "peak set %v calls %v", peakSet, calls)
	})
}

// TestAdvClaimRespectsLimit: ClaimExecutions with Limit 1 claims at most one.
func TestAdvClaimRespectsLimit(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		require.NoError(t, s.SaveDefinition(t.Context(), &models.WorkflowDefinition{ID: "adv-claim", Version: "v1", Name: "adv-claim"}))
		for range 10 {
			_, err := s.CreateExecution(t.Context(), repository.NewExecution{DefinitionID: "adv-claim", DefinitionVersion: "v1"})
			require.NoError(t, err)
		}
		got, err := s.ClaimExecutions(t.Context(), repository.ClaimParams{NodeID: "claimer", StaleThreshold: time.Second, Limit: 1})
		require.NoError(t, err)
		require.LessOrEqual(t, len(got), 1, "claimed %d with Limit 1", len(got))
	})
}

// TestAdvGracefulStopWithFailingWrites: the stop arrives mid-step, the step
// succeeds, and the write of its completion fails once; a new node must not
// run it again.
func TestAdvGracefulStopWithFailingWrites(t *testing.T) {
	for _, f := range []testutil.Fault{
		{Method: "FinishStep", Call: 1, Fail: true},
		{Method: "FinishStep", Call: 1, Fail: true, After: true},
		{Method: "ReleaseExecution", Call: 1, Fail: true},
	} {
		t.Run(fmt.Sprintf("%s-after-%v", f.Method, f.After), func(t *testing.T) {
			forEachDialect(t, func(t *testing.T, s *repository.Storage) {
				var runs atomic.Int64
				entered := make(chan struct{}, 1)
				wf := func(ctx *engine.Context, _ json.RawMessage) (any, error) {
					return engine.Step(ctx, "charge", func(c context.Context) (string, error) {
						if runs.Add(1) == 1 {
							entered <- struct{}{}
							<-c.Done()
						}
						return "charged", nil
					})
				}
				faulty := testutil.NewFaultyStorage(s, f)
				e1 := engine.New(faulty, fast("advg"))
				require.NoError(t, e1.Register(engine.Dynamic(def("advg"), wf)))
				stop := run(t, e1)
				id, err := e1.Start(t.Context(), "advg", "v1", nil)
				require.NoError(t, err)
				receive(t, entered)
				stop()
				e2 := engine.New(s, fast("advg-2"))
				require.NoError(t, e2.Register(engine.Dynamic(def("advg"), wf)))
				run(t, e2)
				exec := await(t, e2, id)
				require.Equal(t, models.ExecutionCompleted, exec.Status)
				require.EqualValues(t, 1, runs.Load(), "the charge ran %d times; history %v", runs.Load(), statuses(history(t, s, id)))
			})
		})
	}
}
