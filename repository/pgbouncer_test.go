package repository_test

import (
	"context"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
	dsn := os.Getenv("WORKFLOW_TEST_PGBOUNCER_DSN")
	if dsn == "" {
		t.Skip("WORKFLOW_TEST_PGBOUNCER_DSN not set")
	}
	// A database of its own (PgBouncer passes no search_path for the
	// per-test schemas).
	direct, err := pgx.Connect(t.Context(), testutil.PostgresDSN(t))
	require.NoError(t, err)
	defer direct.Close(context.Background())
	const db = "plexwf_pgbouncer_repo_test"
	_, err = direct.Exec(t.Context(), "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	require.NoError(t, err)
	_, err = direct.Exec(t.Context(), "CREATE DATABASE "+db)
	require.NoError(t, err)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	u.Path = "/" + db
	s, err := repository.Open(t.Context(), u.String(), repository.WithMaxOpenConns(8))
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
