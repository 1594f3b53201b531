package manage_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// A workflow whose failed step ran inside Parallel and Map branches: a retry
// runs only the branch steps that did not complete, the completed ones keep
// their results, and the workflow completes.
func TestAdversary11_RetryInsideParallelAndMap(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		var ok atomic.Bool
		var runsA, runsB, runsItem [3]atomic.Int32
		wf := engine.Define("fan", "v1", func(ctx *engine.Context, _ struct{}) (int, error) {
			var a, b int
			err := engine.Parallel(ctx, 2,
				func(ctx *engine.Context) error {
					var err error
					a, err = engine.Step(ctx, "a", func(context.Context) (int, error) { runsA[0].Add(1); return 1, nil })
					return err
				},
				func(ctx *engine.Context) error {
					var err error
					b, err = engine.Step(ctx, "b", func(context.Context) (int, error) {
						runsB[0].Add(1)
						if !ok.Load() {
							return 0, engine.NonRetryable(errors.New("b broke"))
						}
						return 10, nil
					})
					return err
				})
			if err != nil {
				return 0, err
			}
			outs, err := engine.Map(ctx, []int{0, 1, 2}, 3, func(ctx *engine.Context, i int, item int) (int, error) {
				return engine.Step(ctx, fmt.Sprintf("item-%d", i), func(context.Context) (int, error) {
					runsItem[i].Add(1)
					if i == 1 && runsItem[i].Load() == 1 {
						return 0, engine.NonRetryable(errors.New("item 1 broke"))
					}
					return 100 * (item + 1), nil
				})
			})
			if err != nil {
				return 0, err
			}
			return a + b + outs[0] + outs[1] + outs[2], nil
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		c := manage.New(s)

		h, err := wf.Start(ctx, e, struct{}{})
		require.NoError(t, err)
		require.Equal(t, models.ExecutionFailed, await(t, e, h.ID()).Status)

		// First retry: b now works, the Map's item 1 fails once.
		ok.Store(true)
		_, err = c.Retry(ctx, h.ID())
		require.NoError(t, err)
		require.Equal(t, models.ExecutionFailed, await(t, e, h.ID()).Status)
		// Second retry: everything works.
		_, err = c.Retry(ctx, h.ID())
		require.NoError(t, err)
		out, err := h.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, 1+10+100+200+300, out)
		require.EqualValues(t, 1, runsA[0].Load(), "branch a completed before the failure: not run again")
		require.EqualValues(t, 2, runsB[0].Load())
		require.EqualValues(t, 1, runsItem[0].Load())
		require.EqualValues(t, 2, runsItem[1].Load())
		require.EqualValues(t, 1, runsItem[2].Load())
	})
}

// Signals with payloads no dialect can store fail before any row is written,
// with ErrInvalidArgument, and the execution keeps no pending signal.
func TestAdversary11_SignalBadPayloadWritesNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		c := manage.New(s)
		x, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "w", DefinitionVersion: "v1",
			Definition: &models.WorkflowDefinition{ID: "w", Version: "v1", Name: "w"}})
		require.NoError(t, err)
		for _, p := range []any{"a\x00b", "\xff\xfe", map[string]string{"k\x00": "v"}, map[string]any{"k": []string{"ok", "\xc3"}},
			jsonRaw(`"\u0000"`), jsonRaw("\"\xff\"")} {
			err := c.Signal(ctx, x.ExecutionID, "go", p)
			require.ErrorIs(t, err, manage.ErrInvalidArgument, "%q", p)
		}
		for _, name := range []string{"", "a\x00", "\xff"} {
			require.ErrorIs(t, c.Signal(ctx, x.ExecutionID, name, nil), manage.ErrInvalidArgument, "name %q", name)
		}
		d, err := c.Get(ctx, x.ExecutionID)
		require.NoError(t, err)
		require.Empty(t, d.PendingSignals)
		require.NoError(t, c.Signal(ctx, x.ExecutionID, "go", "fine é"))
		d, err = c.Get(ctx, x.ExecutionID)
		require.NoError(t, err)
		require.Len(t, d.PendingSignals, 1)
	})
}

func jsonRaw(s string) json.RawMessage { return json.RawMessage(s) }
