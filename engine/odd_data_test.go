package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// TestEngine_UnstorableStepResultFailsOnce: a step whose result the database
// cannot store (NaN, a NUL in a string) ran successfully; it is failed once,
// not retried, and the workflow ends FAILED with an error that says why.
func TestEngine_UnstorableStepResultFailsOnce(t *testing.T) {
	results := map[string]any{"nan": math.NaN(), "nul": "a\u0000b", "nested-nul": map[string]string{"k": "\u0000"}}
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		for name, result := range results {
			t.Run(name, func(t *testing.T) {
				var runs atomic.Int64
				e := engine.New(s, fast("odd-"+name))
				require.NoError(t, e.Register(engine.Dynamic(def("odd-"+name), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
					return engine.Step(ctx, "compute", func(context.Context) (any, error) {
						runs.Add(1)
						return result, nil
					}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 4}))
				})))
				run(t, e)
				id, err := e.Start(t.Context(), "odd-"+name, "v1", nil)
				require.NoError(t, err)
				exec := await(t, e, id)
				require.Equal(t, models.ExecutionFailed, exec.Status)
				require.NotNil(t, exec.Error)
				require.Contains(t, *exec.Error, "cannot be stored")
				require.NotContains(t, *exec.Error, "crashed")
				require.EqualValues(t, 1, runs.Load(), "the step succeeded; it must not run again")
				require.Equal(t, []string{"compute:FAILED"}, statuses(history(t, s, id)))
			})
		}
	})
}

// TestEngine_UnstorableWorkflowEnds: a workflow whose error is not valid
// UTF-8 or holds a NUL, or whose output holds a NUL, ends FAILED with a
// storable error instead of staying RUNNING.
func TestEngine_UnstorableWorkflowEnds(t *testing.T) {
	cases := map[string]engine.WorkflowFunc{
		"invalid-utf8-error": func(*engine.Context, json.RawMessage) (any, error) { return nil, errors.New("bad \xff\xfe byte") },
		"nul-error":          func(*engine.Context, json.RawMessage) (any, error) { return nil, errors.New("nul \x00 here") },
		"nul-output":         func(*engine.Context, json.RawMessage) (any, error) { return "a\u0000b", nil },
		"nan-output":         func(*engine.Context, json.RawMessage) (any, error) { return math.Inf(1), nil },
		"invalid-utf8-json": func(*engine.Context, json.RawMessage) (any, error) {
			return json.RawMessage("\"\xff\""), nil
		},
	}
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		for name, wf := range cases {
			t.Run(name, func(t *testing.T) {
				e := engine.New(s, fast("ends-"+name))
				require.NoError(t, e.Register(engine.Dynamic(def("ends-"+name), wf)))
				run(t, e)
				id, err := e.Start(t.Context(), "ends-"+name, "v1", nil)
				require.NoError(t, err)
				exec := await(t, e, id)
				require.Equal(t, models.ExecutionFailed, exec.Status)
				require.NotNil(t, exec.Error)
				require.True(t, utf8.ValidString(*exec.Error))
				require.NotContains(t, *exec.Error, "\x00")
			})
		}
	})
}

// TestEngine_StepErrorWithInvalidUTF8IsRetried: the retry policy applies
// whatever the error's text, and every attempt ends.
func TestEngine_StepErrorWithInvalidUTF8IsRetried(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var runs atomic.Int64
		e := engine.New(s, fast("utf8"))
		require.NoError(t, e.Register(engine.Dynamic(def("utf8"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "flaky", func(context.Context) (int64, error) {
				return 0, fmt.Errorf("attempt %d: \xff\x00", runs.Add(1))
			}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 3}))
		})))
		run(t, e)
		id, err := e.Start(t.Context(), "utf8", "v1", nil)
		require.NoError(t, err)
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionFailed, exec.Status)
		require.EqualValues(t, 3, runs.Load())
		require.Equal(t, []string{"flaky:RETRYING", "flaky:RETRYING", "flaky:FAILED"}, statuses(history(t, s, id)))
		require.Contains(t, *exec.Error, `\xff\x00`)
	})
}

// TestEngine_ErrorWrappingErrCancelledIsAFailure: a workflow that returns an
// error wrapping ErrCancelled while nobody cancelled it ends FAILED.
func TestEngine_ErrorWrappingErrCancelledIsAFailure(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("wraps"))
		require.NoError(t, e.Register(engine.Dynamic(def("wraps"), func(*engine.Context, json.RawMessage) (any, error) {
			return nil, fmt.Errorf("child cancelled: %w", engine.ErrCancelled)
		})))
		run(t, e)
		id, err := e.Start(t.Context(), "wraps", "v1", nil)
		require.NoError(t, err)
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionFailed, exec.Status)
		require.Contains(t, *exec.Error, "child cancelled")
	})
}

var errDeclined = errors.New("card declined")

// TestEngine_DeclaredStepErrorSurvivesReplay: a saga branches on
// errors.Is(err, errDeclined) the same way on its first run and after a
// restart, because the step declares the error with WithErrors.
func TestEngine_DeclaredStepErrorSurvivesReplay(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var branches []string
		var mu sync.Mutex
		entered := make(chan struct{}, 1)
		first := atomic.Bool{}
		first.Store(true)
		wf := func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			_, err := engine.Step(ctx, "charge", func(context.Context) (int, error) {
				return 0, fmt.Errorf("charging order 7: %w", errDeclined)
			}, engine.WithErrors(errDeclined))
			branch := "other"
			if errors.Is(err, errDeclined) {
				branch = "declined"
			}
			mu.Lock()
			branches = append(branches, branch)
			mu.Unlock()
			return engine.Step(ctx, "compensate", func(c context.Context) (string, error) {
				if first.CompareAndSwap(true, false) {
					entered <- struct{}{}
					<-c.Done() // the node stops here; the next run replays the charge
					return "", c.Err()
				}
				return branch, nil
			})
		}
		id := startThenStop(t, s, "saga", "saga", wf, entered)
		exec := runAgain(t, s, "saga-2", "saga", wf, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status, "error %v", exec.Error)
		require.JSONEq(t, `"declined"`, string(exec.Output))
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []string{"declined", "declined"}, branches)
	})
}

// TestEngine_MaxConcurrentUnderConcurrentStarts: Starts racing each other
// never run more than MaxConcurrent workflows at once on the node.
func TestEngine_MaxConcurrentUnderConcurrentStarts(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		cfg := fast("limit")
		cfg.MaxConcurrent = 4
		e := engine.New(s, cfg)
		var now, peak atomic.Int64
		release := make(chan struct{})
		require.NoError(t, e.Register(engine.Dynamic(def("limit"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "hold", func(context.Context) (bool, error) {
				n := now.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-release
				now.Add(-1)
				return true, nil
			})
		})))
		run(t, e)
		const starts = 24
		ids := make([]string, starts)
		var wg sync.WaitGroup
		for i := range starts {
			wg.Go(func() {
				id, err := e.Start(t.Context(), "limit", "v1", i)
				require.NoError(t, err)
				ids[i] = id
			})
		}
		wg.Wait()
		close(release)
		for _, id := range ids {
			require.Equal(t, models.ExecutionCompleted, await(t, e, id).Status)
		}
		require.LessOrEqual(t, peak.Load(), int64(4))
	})
}

// TestEngine_StartExistingID: the same definition, version and input return
// the id; anything else is ErrAlreadyExists saying what differs.
func TestEngine_StartExistingID(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("ids"))
		noop := func(*engine.Context, json.RawMessage) (any, error) { return nil, nil }
		require.NoError(t, e.Register(engine.Dynamic(def("ids"), noop)))
		require.NoError(t, e.Register(engine.Dynamic(models.WorkflowDefinition{ID: "ids", Version: "v2"}, noop)))
		require.NoError(t, e.Register(engine.Dynamic(def("other"), noop)))
		ctx := t.Context()
		id, err := e.Start(ctx, "ids", "v1", map[string]int{"a": 1, "b": 2}, engine.WithExecutionID("order-1"))
		require.NoError(t, err)
		require.Equal(t, "order-1", id)

		again, err := e.Start(ctx, "ids", "v1", json.RawMessage(`{"b": 2, "a": 1}`), engine.WithExecutionID("order-1"))
		require.NoError(t, err)
		require.Equal(t, "order-1", again)

		for what, start := range map[string]func() error{
			"ids@v1": func() error {
				_, err := e.Start(ctx, "other", "v1", map[string]int{"a": 1, "b": 2}, engine.WithExecutionID("order-1"))
				return err
			},
			"not ids@v2": func() error {
				_, err := e.Start(ctx, "ids", "v2", map[string]int{"a": 1, "b": 2}, engine.WithExecutionID("order-1"))
				return err
			},
			"input": func() error {
				_, err := e.Start(ctx, "ids", "v1", map[string]int{"a": 2}, engine.WithExecutionID("order-1"))
				return err
			},
			"input differs": func() error { _, err := e.Start(ctx, "ids", "v1", nil, engine.WithExecutionID("order-1")); return err },
		} {
			err := start()
			require.ErrorIs(t, err, repository.ErrAlreadyExists, what)
			require.Contains(t, err.Error(), what)
		}
	})
}

// TestEngine_SignalEndedOrUnknown: a signal to an ended execution is
// ErrExecutionEnded, to an unknown id ErrNotFound, and nothing is stored.
func TestEngine_SignalEndedOrUnknown(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("sig-ended"))
		require.NoError(t, e.Register(engine.Dynamic(def("sig-ended"), func(*engine.Context, json.RawMessage) (any, error) { return "ok", nil })))
		run(t, e)
		id, err := e.Start(t.Context(), "sig-ended", "v1", nil)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCompleted, await(t, e, id).Status)
		require.ErrorIs(t, e.Signal(t.Context(), id, "late", 1), engine.ErrExecutionEnded)
		_, waiting, err := s.CheckSignal(t.Context(), id, "late")
		require.NoError(t, err)
		require.False(t, waiting)
		require.ErrorIs(t, e.Signal(t.Context(), "no-such-execution", "x", 1), repository.ErrNotFound)
		require.ErrorIs(t, e.Signal(t.Context(), "no-such-execution", "x", 1), engine.ErrNotFound)

		cancelled, err := e.Start(t.Context(), "sig-ended", "v1", nil, engine.WithExecutionID("to-cancel-"+strings.ToLower(s.Dialect())))
		require.NoError(t, err)
		require.NoError(t, e.Cancel(t.Context(), cancelled))
		if exec := await(t, e, cancelled); exec.Status.Terminal() {
			require.ErrorIs(t, e.Signal(t.Context(), cancelled, "late", 1), engine.ErrExecutionEnded)
		}
	})
}
