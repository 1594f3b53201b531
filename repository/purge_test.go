package repository_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// seedEnded creates an execution with two labels, two steps and one
// pending signal, ended with status age ago.
func seedEnded(t testing.TB, s *repository.Storage, status models.ExecutionStatus, age time.Duration) string {
	t.Helper()
	ctx := context.Background()
	e := create(t, s, repository.NewExecution{Labels: map[string]string{"a": "1", "b": "2"}})
	for _, step := range []string{"one", "two"} {
		_, err := s.CreateStepExecution(ctx, e.ExecutionID, step, nil, 1)
		require.NoError(t, err)
	}
	require.NoError(t, s.SendSignal(ctx, e.ExecutionID, "go", nil))
	endAt(t, s, e.ExecutionID, status, age)
	return e.ExecutionID
}

func count(t testing.TB, s *repository.Storage, table string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, s.DB().Table(table).Count(&n).Error)
	return n
}

func TestPurgeExecutions_DeletesOnlyWhatEndedBeforeTheCutoff(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		var old []string
		for _, st := range []models.ExecutionStatus{models.ExecutionCompleted, models.ExecutionFailed, models.ExecutionCancelled, models.ExecutionTimedOut} {
			old = append(old, seedEnded(t, s, st, 48*time.Hour))
		}
		recent := seedEnded(t, s, models.ExecutionCompleted, time.Hour)
		live := create(t, s, repository.NewExecution{Labels: map[string]string{"a": "1"}})
		_, err := s.CreateStepExecution(ctx, live.ExecutionID, "one", nil, 1)
		require.NoError(t, err)
		// A live execution with an old completed_at (set by hand): its
		// status keeps it.
		res := s.DB().Model(&models.WorkflowExecution{}).Where("execution_id = ?", live.ExecutionID).
			UpdateColumn("completed_at", time.Now().UTC().Add(-72*time.Hour).Truncate(time.Microsecond))
		require.NoError(t, res.Error)

		dry, err := s.PurgeExecutions(ctx, repository.PurgeParams{OlderThan: 24 * time.Hour, DryRun: true})
		require.NoError(t, err)
		require.Equal(t, repository.PurgeCounts{Executions: 4, Steps: 8, Signals: 4, Labels: 8}, dry)
		require.EqualValues(t, 6, count(t, s, "workflow_executions"), "a dry run deletes nothing")

		var progress []repository.PurgeCounts
		got, err := s.PurgeExecutions(ctx, repository.PurgeParams{OlderThan: 24 * time.Hour, BatchSize: 3,
			Progress: func(c repository.PurgeCounts) { progress = append(progress, c) }})
		require.NoError(t, err)
		require.Equal(t, dry, got)
		require.Equal(t, []repository.PurgeCounts{{Executions: 3, Steps: 6, Signals: 3, Labels: 6}, dry}, progress, "running totals per batch")
		for _, id := range old {
			_, err := s.GetExecution(ctx, id)
			require.ErrorIs(t, err, repository.ErrNotFound)
			require.Empty(t, history(t, s, id))
		}
		for _, id := range []string{recent, live.ExecutionID} {
			kept, err := s.GetExecution(ctx, id)
			require.NoError(t, err)
			require.NotEmpty(t, kept.Labels)
			require.NotEmpty(t, history(t, s, id))
		}
		require.EqualValues(t, 1, count(t, s, "signals"), "the recent one's")
		require.EqualValues(t, 3, count(t, s, "workflow_execution_labels"))
		require.EqualValues(t, 3, count(t, s, "step_executions"))

		// By time instead of age; nothing more to purge is no error.
		got, err = s.PurgeExecutions(ctx, repository.PurgeParams{EndedBefore: time.Now().Add(-2 * time.Hour)})
		require.NoError(t, err)
		require.Zero(t, got)
		got, err = s.PurgeExecutions(ctx, repository.PurgeParams{EndedBefore: time.Now()})
		require.NoError(t, err)
		require.Equal(t, repository.PurgeCounts{Executions: 1, Steps: 2, Signals: 1, Labels: 2}, got)
		require.EqualValues(t, 1, count(t, s, "workflow_executions"))
	})
}

func TestPurgeExecutions_ManyBatches(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		const n = 230
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			for range n {
				e, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Labels: map[string]string{"k": "v"}})
				if err != nil {
					return err
				}
				if err := tx.UpdateExecutionStatus(ctx, e.ExecutionID, models.ExecutionCompleted); err != nil {
					return err
				}
			}
			return nil
		}))
		batches := 0
		got, err := s.PurgeExecutions(ctx, repository.PurgeParams{EndedBefore: time.Now().Add(time.Minute), BatchSize: 50,
			Progress: func(repository.PurgeCounts) { batches++ }})
		require.NoError(t, err)
		require.Equal(t, repository.PurgeCounts{Executions: n, Labels: n}, got)
		require.Equal(t, 5, batches)
		require.Zero(t, count(t, s, "workflow_executions"))
	})
}

// TestPurgeExecutions_RacingRetriesNeverDeleteALiveExecution: purges and
// retries of the same executions at once; whatever a retry revived keeps
// its row, labels and journal, and whatever a purge deleted is gone whole.
func TestPurgeExecutions_RacingRetriesNeverDeleteALiveExecution(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		const n = 40
		ids := make([]string, n)
		for i := range ids {
			ids[i] = seedEnded(t, s, models.ExecutionFailed, 48*time.Hour)
		}
		var wg sync.WaitGroup
		retried := make([]bool, n)
		start := make(chan struct{})
		for i, id := range ids {
			wg.Go(func() {
				<-start
				_, err := s.RetryExecution(ctx, id)
				switch {
				case err == nil:
					retried[i] = true
				case errors.Is(err, repository.ErrNotFound): // purged first
				default:
					t.Errorf("retrying %s: %v", id, err)
				}
			})
		}
		for range 2 {
			wg.Go(func() {
				<-start
				for range 5 {
					if _, err := s.PurgeExecutions(ctx, repository.PurgeParams{OlderThan: time.Hour, BatchSize: 3}); err != nil {
						t.Errorf("purging: %v", err)
					}
				}
			})
		}
		close(start)
		wg.Wait()
		// What no retry revived and no purge reached yet goes now.
		_, err := s.PurgeExecutions(ctx, repository.PurgeParams{OlderThan: time.Hour})
		require.NoError(t, err)
		kept := 0
		for i, id := range ids {
			e, err := s.GetExecution(ctx, id)
			if !retried[i] {
				require.ErrorIs(t, err, repository.ErrNotFound, "not retried, so purged")
				require.Empty(t, history(t, s, id))
				continue
			}
			kept++
			require.NoError(t, err, "a retried execution is never purged")
			require.Equal(t, models.ExecutionPending, e.Status)
			require.Len(t, e.Labels, 2)
			require.Len(t, history(t, s, id), 2, "its journal stays whole")
			sigs, err := s.ListPendingSignals(ctx, id)
			require.NoError(t, err)
			require.Len(t, sigs, 1)
		}
		require.EqualValues(t, kept, count(t, s, "workflow_executions"))
		require.EqualValues(t, 2*kept, count(t, s, "step_executions"))
	})
}

// TestPurgeExecutions_SQL: one batch, as PostgreSQL sees it.
func TestPurgeExecutions_SQL(t *testing.T) {
	t.Parallel()
	s, mock := testutil.NewMockStorage(t)
	cutoff := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	ended := `status IN ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT') AND completed_at < `
	mock.ExpectBegin()
	mock.ExpectQuery(`SELECT execution_id FROM workflow_executions WHERE `+ended+`$1 ORDER BY completed_at, execution_id LIMIT $2 FOR UPDATE SKIP LOCKED`).
		WithArgs(cutoff, 2).WillReturnRows(sqlmock.NewRows([]string{"execution_id"}).AddRow("a").AddRow("b"))
	mock.ExpectExec(`DELETE FROM workflow_execution_labels WHERE execution_id IN ($1,$2)`).WithArgs("a", "b").WillReturnResult(sqlmock.NewResult(0, 3))
	mock.ExpectExec(`DELETE FROM step_executions WHERE execution_id IN ($1,$2)`).WithArgs("a", "b").WillReturnResult(sqlmock.NewResult(0, 5))
	mock.ExpectExec(`DELETE FROM signals WHERE execution_id IN ($1,$2)`).WithArgs("a", "b").WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectExec(`DELETE FROM workflow_executions WHERE execution_id IN ($1,$2) AND `+ended+`$3`).WithArgs("a", "b", cutoff).WillReturnResult(sqlmock.NewResult(0, 2))
	mock.ExpectCommit()
	mock.ExpectBegin()
	mock.ExpectQuery(`SELECT execution_id FROM workflow_executions WHERE `+ended+`$1 ORDER BY completed_at, execution_id LIMIT $2 FOR UPDATE SKIP LOCKED`).
		WithArgs(cutoff, 2).WillReturnRows(sqlmock.NewRows([]string{"execution_id"}))
	mock.ExpectCommit()
	got, err := s.PurgeExecutions(t.Context(), repository.PurgeParams{EndedBefore: cutoff, BatchSize: 2})
	require.NoError(t, err)
	require.Equal(t, repository.PurgeCounts{Executions: 2, Steps: 5, Signals: 1, Labels: 3}, got)
}

// TestPurgeExecutions_FailedBatchRollsBack: a batch whose delete fails rolls
// back whole, and the totals are those of the batches that committed.
func TestPurgeExecutions_FailedBatchRollsBack(t *testing.T) {
	t.Parallel()
	s, mock := testutil.NewMockStorage(t)
	mock.ExpectBegin()
	mock.ExpectQuery(`SELECT execution_id FROM workflow_executions WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT') AND completed_at < now() - $1::bigint * INTERVAL '1 microsecond' ORDER BY completed_at, execution_id LIMIT $2 FOR UPDATE SKIP LOCKED`).
		WithArgs(time.Hour.Microseconds(), repository.PurgeBatchSizeDefault).WillReturnRows(sqlmock.NewRows([]string{"execution_id"}).AddRow("a"))
	mock.ExpectExec(`DELETE FROM workflow_execution_labels WHERE execution_id IN ($1)`).WithArgs("a").WillReturnError(errors.New("connection reset"))
	mock.ExpectRollback()
	got, err := s.PurgeExecutions(t.Context(), repository.PurgeParams{OlderThan: time.Hour})
	require.ErrorContains(t, err, "connection reset")
	require.Zero(t, got)
}

// TestPurgeExecutions_DryRunSQL: a dry run only counts.
func TestPurgeExecutions_DryRunSQL(t *testing.T) {
	t.Parallel()
	s, mock := testutil.NewMockStorage(t)
	cutoff := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	q := fixNumbering(repository.PurgeCountSQL)
	mock.ExpectQuery(q).WithArgs(cutoff, cutoff, cutoff, cutoff).
		WillReturnRows(sqlmock.NewRows([]string{"executions", "steps", "signals", "labels"}).AddRow(7, 20, 1, 3))
	got, err := s.PurgeExecutions(t.Context(), repository.PurgeParams{EndedBefore: cutoff, DryRun: true})
	require.NoError(t, err)
	require.Equal(t, repository.PurgeCounts{Executions: 7, Steps: 20, Signals: 1, Labels: 3}, got)
}

// fixNumbering rewrites ? to $1, $2, ... as GORM does on PostgreSQL.
func fixNumbering(sql string) string {
	var b strings.Builder
	n := 0
	for _, r := range sql {
		if r == '?' {
			n++
			b.WriteString("$" + string(rune('0'+n)))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestExplain_PurgePicksByTheEndedIndex: the purge's batch pick is a range on
// migration 010's index, not a scan of the executions.
func TestExplain_PurgePicksByTheEndedIndex(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			for i := range 300 {
				e, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1"})
				if err != nil {
					return err
				}
				if i%3 != 0 {
					if err := tx.UpdateExecutionStatus(ctx, e.ExecutionID, models.ExecutionCompleted); err != nil {
						return err
					}
				}
			}
			return nil
		}))
		require.NoError(t, s.DB().Exec("ANALYZE").Error)
		c := captureQueries(t, s)
		_, err := s.PurgeExecutions(ctx, repository.PurgeParams{OlderThan: time.Hour, BatchSize: 10})
		require.NoError(t, err)
		require.Len(t, c.sql, 1, "one pick, which found nothing")
		plan := explain(t, s, c.sql[0], c.vars[0])
		t.Logf("%s plan of %s:\n%s", s.Dialect(), c.sql[0], plan)
		require.Contains(t, plan, "idx_workflow_executions_ended")
	})
}
