package repository_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// TestGroupCommit_EachCheckpointItsOwnOutcome: checkpoints written together
// in one transaction (on SQLite; one by one elsewhere) each get the outcome
// they would have had alone. Among them a step start of an execution another
// node owns (refused, nothing written), the same step attempt started twice
// (one wins, one ErrAlreadyExists, one row), creations (new ones, an id that
// exists, a definition that does not),
// an end with the last step's outcome, a failed end and an end of another
// node's execution (refused); the rest commit.
func TestGroupCommit_EachCheckpointItsOwnOutcome(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		var mine []string
		for range 8 {
			e, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
			require.NoError(t, err)
			mine = append(mine, e.ExecutionID)
		}
		theirs, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n2", Running: true})
		require.NoError(t, err)
		last, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: mine[7], StepID: "z", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)

		release, grouped := repository.HoldCheckpoints(s)
		var wg sync.WaitGroup
		calls := 0
		goCall := func(fn func()) {
			calls++
			wg.Add(1)
			go func() { defer wg.Done(); fn() }()
		}
		startErrs := make([]error, 7)
		for i := range 6 {
			goCall(func() {
				_, startErrs[i] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: mine[i], StepID: "a", NodeID: "n1", Attempt: 1})
			})
		}
		goCall(func() { // the same attempt as mine[0]'s, once more
			_, startErrs[6] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: mine[0], StepID: "a", NodeID: "n1", Attempt: 1})
		})
		var stolenErr, existsErr, finishErr error
		goCall(func() {
			_, stolenErr = s.StartStep(ctx, repository.StartStepParams{ExecutionID: theirs.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
		})
		goCall(func() {
			_, existsErr = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: mine[1], DefinitionID: "order", DefinitionVersion: "v2"})
		})
		var finished models.WorkflowExecution
		goCall(func() {
			finishErr = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: mine[7], NodeID: "n1", Status: models.ExecutionCompleted, Output: "done",
				Previous: &repository.FinishStepParams{ExecutionID: mine[7], StepExecutionID: last.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: 7},
				Finished: &finished})
		})
		fresh := make([]*models.WorkflowExecution, 2)
		freshErrs := make([]error, 2)
		for i := range fresh {
			goCall(func() {
				fresh[i], freshErrs[i] = s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1",
					Input: map[string]int{"n": i}, NodeID: "n1", Running: i == 0})
			})
		}
		var noDefErr error
		goCall(func() {
			_, noDefErr = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "no-definition", DefinitionID: "nope", DefinitionVersion: "v1"})
		})
		var failedErr, stolenEndErr error
		var failed models.WorkflowExecution
		goCall(func() {
			failedErr = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: mine[6], NodeID: "n1", Status: models.ExecutionFailed,
				Error: "boom", Finished: &failed})
		})
		goCall(func() { // another node's execution
			stolenEndErr = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: theirs.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted})
		})
		if grouped {
			queued := calls
			require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == queued }, 10*time.Second, time.Millisecond)
		}
		release()
		wg.Wait()
		if grouped {
			require.Positive(t, repository.SharedTransactions(s))
		}

		for i := 1; i < 6; i++ {
			require.NoError(t, startErrs[i], i)
			require.Len(t, history(t, s, mine[i]), 1)
		}
		won := 0
		for _, err := range []error{startErrs[0], startErrs[6]} {
			if err == nil {
				won++
			} else {
				require.ErrorIs(t, err, repository.ErrAlreadyExists)
			}
		}
		require.Equal(t, 1, won)
		require.Len(t, history(t, s, mine[0]), 1)
		require.ErrorIs(t, stolenErr, repository.ErrConcurrentUpdate)
		require.Empty(t, history(t, s, theirs.ExecutionID))
		require.ErrorIs(t, existsErr, repository.ErrAlreadyExists)
		require.NoError(t, finishErr)
		require.Equal(t, models.ExecutionCompleted, finished.Status)
		for i, x := range fresh {
			require.NoError(t, freshErrs[i])
			stored, err := s.GetExecution(ctx, x.ExecutionID)
			require.NoError(t, err)
			require.Equal(t, *stored, *x)
			require.JSONEq(t, fmt.Sprintf(`{"n": %d}`, i), string(x.Input))
		}
		require.Equal(t, models.ExecutionRunning, fresh[0].Status)
		require.NotNil(t, fresh[0].StartedAt)
		require.Equal(t, models.ExecutionPending, fresh[1].Status)
		require.Nil(t, fresh[1].StartedAt)
		require.ErrorIs(t, noDefErr, repository.ErrNotFound)
		_, err = s.GetExecution(ctx, "no-definition")
		require.ErrorIs(t, err, repository.ErrNotFound)
		require.NoError(t, failedErr)
		require.Equal(t, models.ExecutionFailed, failed.Status)
		require.Equal(t, "boom", *failed.Error)
		stored, err := s.GetExecution(ctx, mine[6])
		require.NoError(t, err)
		require.Equal(t, failed, *stored)
		require.ErrorIs(t, stolenEndErr, repository.ErrConcurrentUpdate)
		stillTheirs, err := s.GetExecution(ctx, theirs.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionRunning, stillTheirs.Status)
		steps := history(t, s, mine[7])
		require.Len(t, steps, 1)
		require.Equal(t, models.StepCompleted, steps[0].Status)
		require.JSONEq(t, `7`, string(steps[0].Output))
	})
}

// TestGroupCommit_CancelledWhileQueuedIsNeverWritten: a checkpoint whose
// caller gives up while it waits for a shared transaction returns the
// context's error and is never written, not even by the transaction that
// comes after.
func TestGroupCommit_CancelledWhileQueuedIsNeverWritten(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		e, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
		require.NoError(t, err)
		release, grouped := repository.HoldCheckpoints(s)
		if !grouped {
			t.Skip("this storage writes checkpoints one by one")
		}
		callCtx, cancel := context.WithCancel(ctx)
		errs := make(chan error, 1)
		go func() {
			_, err := s.StartStep(callCtx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
			errs <- err
		}()
		require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 1 }, 10*time.Second, time.Millisecond)
		cancel()
		err = <-errs
		require.True(t, errors.Is(err, context.Canceled), "%v", err)
		require.Zero(t, repository.QueuedCheckpoints(s))
		release()
		require.Empty(t, history(t, s, e.ExecutionID))
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
		require.NoError(t, err, "attempt 1 was never taken")
	})
}

// TestGroupCommit_KilledConnectionMidStatement (PostgreSQL): the grouped
// statement of four step starts waits for a row lock when its server
// connection is killed. Every caller learns an outcome that matches the
// journal: no success without its step row, no step row left half-written,
// and every attempt that failed can be started afterwards.
func TestGroupCommit_KilledConnectionMidStatement(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		release, grouped := repository.HoldCheckpoints(s)
		release()
		if s.Dialect() != "postgres" || !grouped {
			t.Skip("server connections to kill: PostgreSQL through pgx")
		}
		ctx := t.Context()
		ids := make([]string, 4)
		for i := range ids {
			x, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
			require.NoError(t, err)
			ids[i] = x.ExecutionID
		}
		locker := s.DB().Begin()
		require.NoError(t, locker.Error)
		defer locker.Rollback()
		var lockerPID int64
		require.NoError(t, locker.Raw(`SELECT pg_backend_pid()`).Scan(&lockerPID).Error)
		require.NoError(t, locker.Exec(`SELECT 1 FROM workflow_executions WHERE execution_id = ? FOR UPDATE`, ids[2]).Error)

		release, _ = repository.HoldCheckpoints(s)
		errs := make([]error, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "a", NodeID: "n1", Attempt: 1})
			}()
		}
		require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == len(ids) }, 10*time.Second, time.Millisecond)
		release()
		var victim int64
		require.Eventually(t, func() bool {
			return s.DB().Raw(`SELECT pid FROM pg_stat_activity WHERE ? = ANY (pg_blocking_pids(pid)) LIMIT 1`, lockerPID).
				Scan(&victim).Error == nil && victim != 0
		}, 10*time.Second, 5*time.Millisecond, "the grouped statement waits for the lock")
		var killed bool
		require.NoError(t, s.DB().Raw(`SELECT pg_terminate_backend(?)`, victim).Scan(&killed).Error)
		require.True(t, killed)
		require.NoError(t, locker.Rollback().Error)
		wg.Wait()
		t.Logf("outcomes after the kill: %v", errs)

		for i, id := range ids {
			steps := history(t, s, id)
			if errs[i] == nil {
				require.Len(t, steps, 1, "a success without its row")
				continue
			}
			require.Empty(t, steps, "the killed statement committed nothing: %v", errs[i])
			_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "a", NodeID: "n1", Attempt: 1})
			require.NoError(t, err, "the storage goes on after the killed connection")
		}
	})
}
