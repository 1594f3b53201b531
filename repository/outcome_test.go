package repository_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// TestPreviousOutcome_RolledBackWithALostOwner: a step start or an end that
// carries the previous step's outcome writes nothing, the outcome included,
// when its node no longer owns the execution, alone, in a caller's
// transaction that commits, and in a group of
// checkpoints whose others are written (on SQLite the outcome's own owner
// check is left to the execution's fenced write, and the transaction rolls
// back when that misses).
func TestPreviousOutcome_RolledBackWithALostOwner(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		// started makes an execution of n1 with step "a" running.
		started := func() (*models.WorkflowExecution, *models.StepExecution) {
			x := create(t, s, repository.NewExecution{NodeID: "n1", Running: true})
			st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
			require.NoError(t, err)
			return x, st
		}
		takeOver := func(x *models.WorkflowExecution) {
			got, err := s.GetExecution(ctx, x.ExecutionID)
			require.NoError(t, err)
			require.NoError(t, s.TransferOwnership(ctx, x.ExecutionID, "n2", int64(got.Version)))
		}
		done := func(x *models.WorkflowExecution, st *models.StepExecution) *repository.FinishStepParams {
			return &repository.FinishStepParams{ExecutionID: x.ExecutionID, StepExecutionID: st.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: "out"}
		}
		untouched := func(x *models.WorkflowExecution) {
			t.Helper()
			h, err := s.GetStepExecutionHistory(ctx, x.ExecutionID)
			require.NoError(t, err)
			require.Len(t, h, 1)
			require.Equal(t, models.StepRunning, h[0].Status, "the previous step's outcome was written for a node that lost the execution")
			require.Nil(t, h[0].Output)
			got, err := s.GetExecution(ctx, x.ExecutionID)
			require.NoError(t, err)
			require.Equal(t, models.ExecutionRunning, got.Status)
			require.Equal(t, "n2", *got.NodeID)
		}

		// Alone.
		lost, st := started()
		takeOver(lost)
		_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: lost.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1, Previous: done(lost, st)})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
		untouched(lost)
		err = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: lost.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted, Previous: done(lost, st)})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
		untouched(lost)

		// In a caller's transaction that then commits.
		lost, st = started()
		takeOver(lost)
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			_, err := tx.StartStep(ctx, repository.StartStepParams{ExecutionID: lost.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1, Previous: done(lost, st)})
			require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
			err = tx.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: lost.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted, Previous: done(lost, st)})
			require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
			return nil
		}))
		untouched(lost)

		// Grouped with two that are owned: a start and an end.
		lost, lostStep := started()
		takeOver(lost)
		kept, keptStep := started()
		ending, endingStep := started()
		release, grouped := repository.HoldCheckpoints(s)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		wg.Add(3)
		go func() {
			defer wg.Done()
			_, errs[0] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: lost.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1, Previous: done(lost, lostStep)})
		}()
		go func() {
			defer wg.Done()
			_, errs[1] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: kept.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1, Previous: done(kept, keptStep)})
		}()
		go func() {
			defer wg.Done()
			errs[2] = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: ending.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted, Previous: done(ending, endingStep)})
		}()
		if grouped {
			require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 3 }, 20*time.Second, time.Millisecond)
		}
		release()
		wg.Wait()
		require.ErrorIs(t, errs[0], repository.ErrConcurrentUpdate)
		require.NoError(t, errs[1])
		require.NoError(t, errs[2])
		untouched(lost)
		h, err := s.GetStepExecutionHistory(ctx, kept.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, []models.StepStatus{models.StepCompleted, models.StepRunning}, []models.StepStatus{h[0].Status, h[1].Status})
		h, err = s.GetStepExecutionHistory(ctx, ending.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.StepCompleted, h[0].Status)
		got, err := s.GetExecution(ctx, ending.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCompleted, got.Status)
	})
}
