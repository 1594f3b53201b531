package repository_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// TestFinishExecution_WithTheLastStep: the end carries the last step's
// outcome in one write, fenced as one: a node that lost the execution
// writes neither, its owner both, and Finished is the row as stored. The
// first checkpoint made the execution RUNNING.
func TestFinishExecution_WithTheLastStep(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		e := create(t, s, repository.NewExecution{NodeID: "n1"})
		require.Equal(t, models.ExecutionPending, e.Status)
		step, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "charge", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)
		got, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionRunning, got.Status, "the first step start makes it RUNNING")
		require.NotNil(t, got.StartedAt)
		require.Equal(t, e.Version, got.Version, "without a write of its own")

		last := func(node string) *repository.FinishStepParams {
			return &repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: step.StepExecutionID, NodeID: node, Status: models.StepCompleted, Output: "paid"}
		}
		// Another node's step outcome is refused before any SQL.
		err = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted, Previous: last("n2")})
		require.ErrorIs(t, err, repository.ErrInvalidArgument)

		// n2 takes over: n1's end and step outcome both miss.
		require.NoError(t, s.TransferOwnership(ctx, e.ExecutionID, "n2", int64(got.Version)))
		err = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted, Previous: last("n1")})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
		history, err := s.GetStepExecutionHistory(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.StepRunning, history[0].Status, "the fenced write changed nothing")

		var finished models.WorkflowExecution
		require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{
			ExecutionID: e.ExecutionID, NodeID: "n2", Status: models.ExecutionCompleted, Output: 42,
			Previous: last("n2"), Finished: &finished,
		}))
		history, err = s.GetStepExecutionHistory(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.StepCompleted, history[0].Status)
		require.JSONEq(t, `"paid"`, string(history[0].Output))
		stored, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, *stored, finished, "Finished is the row as stored")
		require.Equal(t, models.ExecutionCompleted, finished.Status)
	})
}

// TestFinishExecution_StartsWhatNeverStarted: a workflow with no step ends
// with a started_at.
func TestFinishExecution_StartsWhatNeverStarted(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := create(t, s, repository.NewExecution{NodeID: "n1"})
		var finished models.WorkflowExecution
		require.NoError(t, s.FinishExecution(t.Context(), repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted, Finished: &finished}))
		require.NotNil(t, finished.StartedAt)
		require.NotNil(t, finished.CompletedAt)
		require.Equal(t, e.Version+1, finished.Version)
	})
}
