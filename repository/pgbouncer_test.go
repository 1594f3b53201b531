package repository_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// TestPgBouncer_GroupedWrites: the grouped statements (arrays, in
// PgBouncer's transaction mode with pgx's simple protocol) write creations,
// step starts and ends through PgBouncer as they do directly, each with its
// own outcome.
func TestPgBouncer_GroupedWrites(t *testing.T) {
	dsn := testutil.PgBouncerDatabase(t, "plexwf_pgbouncer_repo_test")
	s, err := repository.Open(t.Context(), dsn, repository.WithMaxOpenConns(8))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	require.NoError(t, s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: "order", Version: "v1", Name: "order"}))

	const n = 6
	ids := make([]string, n)
	for i := range ids {
		x, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
		require.NoError(t, err)
		ids[i] = x.ExecutionID
	}
	release, grouped := repository.HoldCheckpoints(s)
	require.True(t, grouped)
	var wg sync.WaitGroup
	errs := make([]error, 3*n)
	created := make([]*models.WorkflowExecution, n)
	for i := range n {
		wg.Add(3)
		go func() {
			defer wg.Done()
			created[i], errs[i] = s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Input: i})
		}()
		go func() {
			defer wg.Done()
			_, errs[n+i] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: ids[i], StepID: "a", NodeID: "n1", Attempt: 1, Input: "in\u00e9"})
		}()
		go func() {
			defer wg.Done()
			// the end of an execution that has just its creation
			x, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
			if err != nil {
				errs[2*n+i] = err
				return
			}
			errs[2*n+i] = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: x.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted, Output: []int{i}})
		}()
	}
	require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 3*n }, 10*time.Second, time.Millisecond)
	release()
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, i)
	}
	require.Positive(t, repository.SharedTransactions(s))
	for i := range n {
		require.Len(t, history(t, s, ids[i]), 1)
		require.JSONEq(t, `"iné"`, string(history(t, s, ids[i])[0].Input))
		require.Equal(t, models.ExecutionPending, created[i].Status)
	}
}
