package repository_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func TestStep_Lifecycle(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{})

		step, err := s.CreateStepExecution(ctx, exec.ExecutionID, "charge", map[string]int{"cents": 500}, 1)
		require.NoError(t, err)
		require.Equal(t, models.StepRunning, step.Status)
		require.Equal(t, 1, step.Attempt)
		require.NotNil(t, step.StartedAt)
		require.Nil(t, step.CompletedAt)

		require.NoError(t, s.CompleteStepExecution(ctx, step.StepExecutionID, models.StepCompleted, map[string]string{"payment": "p-1"}, ""))
		got, err := s.GetStepExecution(ctx, step.StepExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.StepCompleted, got.Status)
		require.JSONEq(t, `{"payment":"p-1"}`, string(got.Output))
		require.JSONEq(t, `{"cents":500}`, string(got.Input))
		require.Nil(t, got.Error)
		require.NotNil(t, got.CompletedAt)

		_, err = s.GetStepExecution(ctx, "missing")
		require.ErrorIs(t, err, repository.ErrNotFound)
		require.ErrorIs(t, s.CompleteStepExecution(ctx, "missing", models.StepFailed, nil, "x"), repository.ErrNotFound)
		_, err = s.CreateStepExecution(ctx, "missing", "charge", nil, 1)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = s.CreateStepExecution(ctx, exec.ExecutionID, "charge", nil, 1)
		require.ErrorIs(t, err, repository.ErrAlreadyExists, "one row per (execution, step, attempt)")
	})
}

func TestStep_RetryHistoryInOrder(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{})
		var want []string
		for attempt := 1; attempt <= 3; attempt++ {
			step, err := s.CreateStepExecution(ctx, exec.ExecutionID, "charge", nil, attempt)
			require.NoError(t, err)
			status, msg := models.StepRetrying, "card declined"
			if attempt == 3 {
				status, msg = models.StepCompleted, ""
			}
			require.NoError(t, s.CompleteStepExecution(ctx, step.StepExecutionID, status, nil, msg))
			want = append(want, step.StepExecutionID)
		}
		ship, err := s.CreateStepExecution(ctx, exec.ExecutionID, "ship", nil, 1)
		require.NoError(t, err)
		want = append(want, ship.StepExecutionID)

		history, err := s.GetStepExecutionHistory(ctx, exec.ExecutionID)
		require.NoError(t, err)
		var got []string
		for i, h := range history {
			got = append(got, h.StepExecutionID)
			if i < 2 {
				require.Equal(t, models.StepRetrying, h.Status)
				require.Equal(t, "card declined", *h.Error)
				require.Equal(t, i+1, h.Attempt)
			}
		}
		require.Equal(t, want, got)

		empty, err := s.GetStepExecutionHistory(ctx, "missing")
		require.NoError(t, err)
		require.Empty(t, empty)
	})
}
