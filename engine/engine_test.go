package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

type order struct {
	ID    int `json:"id"`
	Cents int `json:"cents"`
}

func threeSteps(ctx *engine.Context, input json.RawMessage) (any, error) {
	var o order
	if err := json.Unmarshal(input, &o); err != nil {
		return nil, err
	}
	reserved, err := engine.Step(ctx, "reserve", func(context.Context) (string, error) { return fmt.Sprintf("r-%d", o.ID), nil })
	if err != nil {
		return nil, err
	}
	charged, err := engine.Step(ctx, "charge", func(context.Context) (int, error) { return o.Cents, nil })
	if err != nil {
		return nil, err
	}
	shipped, err := engine.Step(ctx, "ship", func(context.Context) (bool, error) { return true, nil })
	if err != nil {
		return nil, err
	}
	return map[string]any{"reserved": reserved, "charged": charged, "shipped": shipped}, nil
}

func TestEngine_HappyPath(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("order"), threeSteps)))
		run(t, e)
		id, err := e.Start(t.Context(), "order", "v1", order{ID: 7, Cents: 500}, engine.WithLabels(map[string]string{"tenant": "acme"}))
		require.NoError(t, err)

		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.JSONEq(t, `{"reserved":"r-7","charged":500,"shipped":true}`, string(exec.Output))
		require.Equal(t, "ship", *exec.CurrentStepID)
		require.Equal(t, "n1", *exec.NodeID)
		require.NotNil(t, exec.StartedAt)
		require.NotNil(t, exec.CompletedAt)
		require.Nil(t, exec.Error)
		require.Equal(t, map[string]string{"tenant": "acme"}, exec.Labels)
		require.Equal(t, []string{"reserve:COMPLETED", "charge:COMPLETED", "ship:COMPLETED"}, statuses(history(t, s, id)))
	})
}

func TestEngine_StartIsIdempotent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var runs atomic.Int64
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("once"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "count", func(context.Context) (int64, error) { return runs.Add(1), nil })
		})))
		run(t, e)
		for range 3 {
			id, err := e.Start(t.Context(), "once", "v1", nil, engine.WithExecutionID("order-1"))
			require.NoError(t, err)
			require.Equal(t, "order-1", id)
		}
		require.Equal(t, models.ExecutionCompleted, await(t, e, "order-1").Status)
		require.EqualValues(t, 1, runs.Load())
	})
}

func TestEngine_RetriesThenSucceeds(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var calls atomic.Int64
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("flaky"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "charge", func(context.Context) (int64, error) {
				if n := calls.Add(1); n < 3 {
					return 0, fmt.Errorf("gateway timeout %d", n)
				}
				return 42, nil
			}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond, BackoffMultiplier: 2, Jitter: 0.5}))
		})))
		run(t, e)
		id, err := e.Start(t.Context(), "flaky", "v1", nil)
		require.NoError(t, err)
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.JSONEq(t, "42", string(exec.Output))
		h := history(t, s, id)
		require.Equal(t, []string{"charge:RETRYING", "charge:RETRYING", "charge:COMPLETED"}, statuses(h))
		require.Equal(t, "gateway timeout 1", *h[0].Error)
		require.Equal(t, []int{1, 2, 3}, []int{h[0].Attempt, h[1].Attempt, h[2].Attempt})
	})
}

func TestEngine_FailureIsStored(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("broken"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "charge", func(context.Context) (int, error) { return 0, errors.New("card declined") },
				engine.WithRetry(engine.RetryPolicy{MaxAttempts: 2}))
		})))
		require.NoError(t, e.Register(engine.Dynamic(def("panics"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			panic("boom")
		})))
		require.NoError(t, e.Register(engine.Dynamic(def("dup"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			if _, err := engine.Step(ctx, "a", func(context.Context) (int, error) { return 1, nil }); err != nil {
				return nil, err
			}
			return engine.Step(ctx, "a", func(context.Context) (int, error) { return 2, nil })
		})))
		run(t, e)
		ctx := t.Context()

		id, err := e.Start(ctx, "broken", "v1", nil)
		require.NoError(t, err)
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionFailed, exec.Status)
		require.Contains(t, *exec.Error, "card declined")
		require.Equal(t, []string{"charge:RETRYING", "charge:FAILED"}, statuses(history(t, s, id)))

		id, err = e.Start(ctx, "panics", "v1", nil)
		require.NoError(t, err)
		exec = await(t, e, id)
		require.Equal(t, models.ExecutionFailed, exec.Status)
		require.Contains(t, *exec.Error, "boom")

		id, err = e.Start(ctx, "dup", "v1", nil)
		require.NoError(t, err)
		exec = await(t, e, id)
		require.Equal(t, models.ExecutionFailed, exec.Status)
		require.Contains(t, *exec.Error, engine.ErrDuplicateStep.Error())
	})
}

// TestEngine_ResumeSkipsCompletedSteps stops a node in the middle of a step;
// another node takes over after the stale threshold, does not run the first
// step again, and runs the interrupted one with the next attempt number.
func TestEngine_ResumeSkipsCompletedSteps(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var reserves atomic.Int64
		inCharge := make(chan string, 10)
		workflow := func(block bool) engine.WorkflowFunc {
			return func(ctx *engine.Context, _ json.RawMessage) (any, error) {
				if _, err := engine.Step(ctx, "reserve", func(context.Context) (int64, error) { return reserves.Add(1), nil }); err != nil {
					return nil, err
				}
				return engine.Step(ctx, "charge", func(c context.Context) (string, error) {
					inCharge <- ctx.NodeID()
					if block {
						<-c.Done() // n1 stops here
						return "", c.Err()
					}
					return "paid", nil
				})
			}
		}
		n1 := engine.New(s, fast("n1"))
		require.NoError(t, n1.Register(engine.Dynamic(def("order"), workflow(true))))
		stop1 := run(t, n1)
		id, err := n1.Start(t.Context(), "order", "v1", nil)
		require.NoError(t, err)
		require.Equal(t, "n1", receive(t, inCharge))
		stop1()

		n2 := engine.New(s, fast("n2"))
		require.NoError(t, n2.Register(engine.Dynamic(def("order"), workflow(false))))
		run(t, n2)
		require.Equal(t, "n2", receive(t, inCharge))
		exec := await(t, n2, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.Equal(t, "n2", *exec.NodeID)
		require.EqualValues(t, 1, reserves.Load(), "a completed step is not run again")
		h := history(t, s, id)
		require.Equal(t, []string{"reserve:COMPLETED", "charge:CANCELLED", "charge:COMPLETED"}, statuses(h))
		require.Equal(t, 2, h[2].Attempt)
	})
}
