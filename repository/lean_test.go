package repository_test

import (
	"strings"
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

// TestStartStep_MarksRunningOnce: the first step start of an owned PENDING
// execution (as after a claim) makes it RUNNING and started; later ones move
// its current step and keep its start; one by a node that does not own the
// execution live writes nothing, whatever its status. On SQLite a step start
// of a RUNNING execution does not assign its status, whose three indexes
// SQLite would rewrite for the same value.
func TestStartStep_MarksRunningOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		e := create(t, s, repository.NewExecution{NodeID: "n1"})
		require.Equal(t, models.ExecutionPending, e.Status)
		_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)
		first, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionRunning, first.Status)
		require.NotNil(t, first.StartedAt)
		require.Equal(t, "a", deref(first.CurrentStepID))

		c := captureQueries(t, s)
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)
		second, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionRunning, second.Status)
		require.True(t, second.StartedAt.Equal(*first.StartedAt))
		require.Equal(t, "b", deref(second.CurrentStepID))
		if s.Dialect() == "sqlite" {
			require.NotEmpty(t, c.sql)
			for _, q := range c.sql {
				if set, _, ok := strings.Cut(q, " WHERE "); ok && strings.HasPrefix(q, "UPDATE workflow_executions SET") {
					require.NotContains(t, set, "status", "a RUNNING execution's status is not assigned again")
				}
			}
		}

		// Not owned live: nothing written, whatever the status.
		theirs := create(t, s, repository.NewExecution{NodeID: "n2"})
		running := create(t, s, repository.NewExecution{NodeID: "n2", Running: true})
		ended := create(t, s, repository.NewExecution{NodeID: "n1", Running: true})
		require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: ended.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted}))
		for _, x := range []*models.WorkflowExecution{theirs, running, ended} {
			before, err := s.GetExecution(ctx, x.ExecutionID)
			require.NoError(t, err)
			_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
			require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
			after, err := s.GetExecution(ctx, x.ExecutionID)
			require.NoError(t, err)
			require.Equal(t, *before, *after)
			h, err := s.GetStepExecutionHistory(ctx, x.ExecutionID)
			require.NoError(t, err)
			require.Empty(t, h)
		}
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
