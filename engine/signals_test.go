package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

type approval struct {
	By string `json:"by"`
}

func TestEngine_SignalReplaysWithoutConsumingAnother(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		afterSignal := make(chan approval, 10)
		workflow := func(block bool) engine.WorkflowFunc {
			return func(wctx *engine.Context, _ json.RawMessage) (any, error) {
				a, err := engine.AwaitSignal[approval](wctx, "approve", 0)
				if err != nil {
					return nil, err
				}
				afterSignal <- a
				return engine.Step(wctx, "ship", func(c context.Context) (string, error) {
					if block {
						<-c.Done()
						return "", c.Err()
					}
					return "shipped by " + a.By, nil
				})
			}
		}
		n1 := engine.New(s, fast("n1"))
		require.NoError(t, n1.Register(engine.Dynamic(def("approval"), workflow(true))))
		stop1 := run(t, n1)
		id, err := n1.Start(ctx, "approval", "v1", nil)
		require.NoError(t, err)
		require.NoError(t, n1.Signal(ctx, id, "approve", approval{By: "ann"}))
		require.Equal(t, "ann", receive(t, afterSignal).By)
		stop1()

		// A second signal arrives before n2 resumes the workflow: replay must
		// return ann's payload from the journal and leave bob's waiting.
		require.NoError(t, n1.Signal(ctx, id, "approve", approval{By: "bob"}))
		n2 := engine.New(s, fast("n2"))
		require.NoError(t, n2.Register(engine.Dynamic(def("approval"), workflow(false))))
		run(t, n2)
		require.Equal(t, "ann", receive(t, afterSignal).By)
		exec := await(t, n2, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.JSONEq(t, `"shipped by ann"`, string(exec.Output))
		left, ok, err := s.CheckSignal(ctx, id, "approve")
		require.NoError(t, err)
		require.True(t, ok)
		require.JSONEq(t, `{"by":"bob"}`, string(left.Payload))
	})
}

func TestEngine_SignalTimeout(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("impatient"), func(wctx *engine.Context, _ json.RawMessage) (any, error) {
			_, err := engine.AwaitSignal[approval](wctx, "approve", 50*time.Millisecond)
			if errors.Is(err, engine.ErrSignalTimeout) {
				return "escalated", nil
			}
			return nil, err
		})))
		run(t, e)
		id, err := e.Start(t.Context(), "impatient", "v1", nil)
		require.NoError(t, err)
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.JSONEq(t, `"escalated"`, string(exec.Output))
		require.Equal(t, []string{"signal:approve:1:deadline:COMPLETED", "signal:approve:1:FAILED"}, statuses(history(t, s, id)))
	})
}

// TestEngine_SignalToRemoteNode: the signal is sent through an engine that
// does not run the workflow; the owner finds it by polling.
func TestEngine_SignalToRemoteNode(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		owner := engine.New(s, fast("owner"))
		require.NoError(t, owner.Register(engine.Dynamic(def("approval"), func(wctx *engine.Context, _ json.RawMessage) (any, error) {
			a, err := engine.AwaitSignal[approval](wctx, "approve", 0)
			return a.By, err
		})))
		run(t, owner)
		client := engine.New(s, fast("client")) // never runs
		id, err := owner.Start(t.Context(), "approval", "v1", nil)
		require.NoError(t, err)
		require.NoError(t, client.Signal(t.Context(), id, "approve", approval{By: "cy"}))
		exec := await(t, client, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.JSONEq(t, `"cy"`, string(exec.Output))
	})
}
