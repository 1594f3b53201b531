package repository_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// TestCreateExecution_Running: an execution created with its owner and
// Running is RUNNING from the start, started, with nothing else changed; one
// without is PENDING as before; Running without an owner is refused before
// any SQL and leaves no row.
func TestCreateExecution_Running(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		before := time.Now().Add(-time.Minute)
		running, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
		require.NoError(t, err)
		require.Equal(t, models.ExecutionRunning, running.Status)
		require.NotNil(t, running.StartedAt)
		require.True(t, running.StartedAt.After(before))
		require.EqualValues(t, 1, running.Version)
		stored, err := s.GetExecution(ctx, running.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, *running, *stored)

		owned, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1"})
		require.NoError(t, err)
		require.Equal(t, models.ExecutionPending, owned.Status)
		require.Nil(t, owned.StartedAt)

		// Its first step keeps it RUNNING and started when it was.
		step, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: running.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)
		require.Equal(t, models.StepRunning, step.Status)
		after, err := s.GetExecution(ctx, running.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionRunning, after.Status)
		require.True(t, after.StartedAt.Equal(*running.StartedAt))
		require.EqualValues(t, 1, after.Version)

		c := captureQueries(t, s)
		_, err = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "no-owner", DefinitionID: "order", DefinitionVersion: "v1", Running: true})
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		require.Empty(t, c.sql)
		_, err = s.GetExecution(ctx, "no-owner")
		require.ErrorIs(t, err, repository.ErrNotFound)
	})
}

// TestLeanJournal_ReadsStillUseAnIndex: with the step indexes of migration
// 011 gone, an execution's journal is read through the UNIQUE (execution_id,
// step_id, attempt) index, not by scanning every step; and the journal comes
// back in the order the attempts started.
func TestLeanJournal_ReadsStillUseAnIndex(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		var last string
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			for range 100 {
				e, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
				if err != nil {
					return err
				}
				for _, step := range []string{"c", "a", "b"} {
					if _, err := tx.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: step, NodeID: "n1", Attempt: 1}); err != nil {
						return err
					}
				}
				last = e.ExecutionID
			}
			return nil
		}))
		require.NoError(t, s.DB().Exec("ANALYZE").Error)

		c := captureQueries(t, s)
		steps, err := s.GetStepExecutionHistory(ctx, last)
		require.NoError(t, err)
		require.Len(t, steps, 3)
		var order []string
		for _, st := range steps {
			order = append(order, st.StepID)
		}
		require.Equal(t, []string{"c", "a", "b"}, order)
		require.Len(t, c.sql, 1)
		plan := explain(t, s, c.sql[0], c.vars[0])
		t.Logf("%s plan of %s:\n%s", s.Dialect(), c.sql[0], plan)
		unique := map[string]string{
			"postgres": "step_executions_execution_id_step_id_attempt_key",
			"sqlite":   "USING INDEX sqlite_autoindex_step_executions_2 (execution_id=?)", // the UNIQUE constraint's
		}[s.Dialect()]
		require.Contains(t, plan, unique)
		require.NotContains(t, plan, "Seq Scan")
		require.NotContains(t, plan, "SCAN step_executions\n")
	})
}
