package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
)

// TestAwait_FromMemoryIsTheStoredExecution: Await of a run started here
// answers without a read; what it returns is what the database holds,
// labels included, for a completed and a failed workflow.
func TestAwait_FromMemoryIsTheStoredExecution(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		wf := engine.Define("await-memory", "v1", func(ctx *engine.Context, fail bool) (map[string]int, error) {
			n, err := engine.Step(ctx, "one", func(context.Context) (int, error) { return 1, nil })
			if err != nil {
				return nil, err
			}
			if fail {
				return nil, engine.NonRetryable(context.Canceled)
			}
			return map[string]int{"b": n, "a": 2}, nil
		})
		e := engine.New(s, fast("await-memory"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		for _, fail := range []bool{false, true} {
			h, err := wf.Start(t.Context(), e, fail, engine.WithLabels(map[string]string{"tenant": "acme"}))
			require.NoError(t, err)
			got, err := e.Await(t.Context(), h.ID())
			require.NoError(t, err)
			stored, err := s.GetExecution(t.Context(), h.ID())
			require.NoError(t, err)
			require.Equal(t, *stored, *got)
			require.Equal(t, "acme", got.Labels["tenant"])
			got.Labels["tenant"] = "changed"
			again, err := e.Await(t.Context(), h.ID())
			require.NoError(t, err)
			require.Equal(t, "acme", again.Labels["tenant"], "callers get their own copy")
		}
	})
}
