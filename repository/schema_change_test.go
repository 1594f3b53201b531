package repository_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// TestSchemaChange_CachedStatementsSurvive: another node adds a column (a
// later migration) while this one runs; statements this node has prepared
// keep working, because they name the columns they return.
func TestSchemaChange_CachedStatementsSurvive(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			ctx := t.Context()
			s := testutil.NewStorage(t, dialect, repository.WithMaxOpenConns(1)) // one connection: one statement cache
			seedDefinition(t, s, "order", "v1")
			e := create(t, s, repository.NewExecution{NodeID: "n1"})
			step, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
			require.NoError(t, err)
			require.NoError(t, s.SendSignal(ctx, e.ExecutionID, "go", 1))

			for _, table := range []string{"workflow_executions", "step_executions", "signals", "workflow_definitions"} {
				require.NoError(t, s.DB().Exec("ALTER TABLE "+table+" ADD COLUMN added_later TEXT").Error)
			}

			create(t, s, repository.NewExecution{NodeID: "n1"})
			seedDefinition(t, s, "order", "v1")
			_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1,
				Previous: &repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: step.StepExecutionID, NodeID: "n1", Status: models.StepCompleted}})
			require.NoError(t, err)
			_, ok, err := s.ConsumeSignal(ctx, e.ExecutionID, "go")
			require.NoError(t, err)
			require.True(t, ok)
		})
	}
}
