package repository_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func TestRetryExecution_OnlyEndedWithoutSuccess(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		_, err := s.RetryExecution(ctx, "missing")
		require.ErrorIs(t, err, repository.ErrNotFound)

		for _, st := range []models.ExecutionStatus{models.ExecutionPending, models.ExecutionRunning, models.ExecutionCompleted} {
			e := create(t, s, repository.NewExecution{})
			if st != models.ExecutionPending {
				require.NoError(t, s.UpdateExecutionStatus(ctx, e.ExecutionID, st))
			}
			_, err := s.RetryExecution(ctx, e.ExecutionID)
			require.ErrorIs(t, err, repository.ErrNotRetryable, "%s", st)
			require.Contains(t, err.Error(), string(st))
			cur, err := s.GetExecution(ctx, e.ExecutionID)
			require.NoError(t, err)
			require.Equal(t, st, cur.Status, "unchanged")
		}
	})
}

func TestRetryExecution_ResetsAndRetiresUnfinishedSteps(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		for _, st := range []models.ExecutionStatus{models.ExecutionFailed, models.ExecutionCancelled, models.ExecutionTimedOut} {
			e := create(t, s, repository.NewExecution{NodeID: "n1", Labels: map[string]string{"tenant": "acme"}})
			require.NoError(t, s.UpdateExecutionStatus(ctx, e.ExecutionID, models.ExecutionRunning))
			journal := func(stepID string, attempt int, status models.StepStatus) {
				step, err := s.CreateStepExecution(ctx, e.ExecutionID, stepID, nil, attempt)
				require.NoError(t, err)
				if status != models.StepRunning {
					require.NoError(t, s.CompleteStepExecution(ctx, step.StepExecutionID, status, []byte(`1`), ""))
				}
			}
			journal("load", 1, models.StepCompleted)
			journal("charge", 1, models.StepRetrying)
			journal("charge", 2, models.StepFailed)
			journal("notify", 1, models.StepRunning)
			journal("audit", 1, models.StepCancelled)
			require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n1", Status: st, Error: "boom"}))
			ended, err := s.GetExecution(ctx, e.ExecutionID)
			require.NoError(t, err)

			retried, err := s.RetryExecution(ctx, e.ExecutionID)
			require.NoError(t, err, "%s", st)
			require.Equal(t, models.ExecutionPending, retried.Status)
			require.Equal(t, ended.Version+1, retried.Version)
			require.Nil(t, retried.NodeID)
			require.Nil(t, retried.Error)
			require.Nil(t, retried.CompletedAt)
			require.Nil(t, retried.StartedAt, "a timeout counts from the retry")
			require.Empty(t, retried.Output)
			require.Equal(t, map[string]string{"tenant": "acme"}, retried.Labels)
			require.False(t, retried.LastHeartbeat.After(time.Now().Add(time.Minute)), "due at once")

			stored, err := s.GetExecution(ctx, e.ExecutionID)
			require.NoError(t, err)
			require.Equal(t, retried.Version, stored.Version)
			require.Equal(t, models.ExecutionPending, stored.Status)

			prefix := repository.RetiredStepPrefix(int64(retried.Version))
			var got []string
			for _, h := range history(t, s, e.ExecutionID) {
				got = append(got, h.StepID+"#"+string(h.Status))
			}
			require.Equal(t, []string{
				"load#COMPLETED", prefix + "charge#RETRYING", prefix + "charge#FAILED",
				prefix + "notify#RUNNING", prefix + "audit#CANCELLED",
			}, got, "%s: unfinished steps stay in the history, out of the replay's way", st)

			// Claimable at once by any node, as a new execution is.
			claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 10})
			require.NoError(t, err)
			require.Len(t, claimed, 1)
			require.Equal(t, e.ExecutionID, claimed[0].ExecutionID)

			// A second retry, once it failed again, retires only the new rows.
			step, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "charge", NodeID: "n2", Attempt: 1})
			require.NoError(t, err)
			require.NoError(t, s.FinishStep(ctx, repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: step.StepExecutionID, NodeID: "n2", Status: models.StepFailed}))
			require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n2", Status: models.ExecutionFailed}))
			again, err := s.RetryExecution(ctx, e.ExecutionID)
			require.NoError(t, err)
			h := history(t, s, e.ExecutionID)
			require.Equal(t, prefix+"charge", h[1].StepID)
			require.Equal(t, repository.RetiredStepPrefix(int64(again.Version))+"charge", h[len(h)-1].StepID)
			require.NoError(t, s.UpdateExecutionStatus(ctx, e.ExecutionID, models.ExecutionCompleted))
		}
	})
}

// TestRetryExecution_ConcurrentRetriesOneWins: of many retries at once, one
// succeeds and the others see the execution PENDING already.
func TestRetryExecution_ConcurrentRetriesOneWins(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		for round := range 5 {
			e := create(t, s, repository.NewExecution{})
			require.NoError(t, s.UpdateExecutionStatus(ctx, e.ExecutionID, models.ExecutionFailed))
			const n = 8
			var wg sync.WaitGroup
			errs := make([]error, n)
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					_, errs[i] = s.RetryExecution(ctx, e.ExecutionID)
				})
			}
			close(start)
			wg.Wait()
			won := 0
			for _, err := range errs {
				switch {
				case err == nil:
					won++
				case errors.Is(err, repository.ErrNotRetryable), errors.Is(err, repository.ErrConcurrentUpdate):
				default:
					t.Fatalf("round %d: unexpected error %v", round, err)
				}
			}
			require.Equal(t, 1, won, "round %d: %v", round, errs)
			cur, err := s.GetExecution(ctx, e.ExecutionID)
			require.NoError(t, err)
			require.EqualValues(t, e.Version+2, cur.Version, "one bump for the failure, one for the retry")
		}
	})
}
