package repository_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// childCounts counts the rows an execution has in each child table.
func childCounts(t *testing.T, s *repository.Storage, id string) (labels, steps, signals int64) {
	t.Helper()
	require.NoError(t, s.DB().Table("workflow_execution_labels").Where("execution_id = ?", id).Count(&labels).Error)
	require.NoError(t, s.DB().Table("step_executions").Where("execution_id = ?", id).Count(&steps).Error)
	require.NoError(t, s.DB().Table("signals").Where("execution_id = ?", id).Count(&signals).Error)
	return
}

// Batches of exactly BatchSize and BatchSize+1 ended executions: every one
// purged, counts exact, progress once per non-empty batch, nothing else
// touched.
func TestAdversary11_PurgeExactBatchBoundaries(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		const batch = 3
		keep := seedEnded(t, s, models.ExecutionFailed, time.Minute)
		live := create(t, s, repository.NewExecution{Labels: map[string]string{"k": "v"}})
		for _, n := range []int{batch, batch + 1, 2 * batch} {
			for range n {
				seedEnded(t, s, models.ExecutionCompleted, 72*time.Hour)
			}
			var calls []repository.PurgeCounts
			got, err := s.PurgeExecutions(ctx, repository.PurgeParams{OlderThan: 24 * time.Hour, BatchSize: batch,
				Progress: func(c repository.PurgeCounts) { calls = append(calls, c) }})
			require.NoError(t, err)
			want := repository.PurgeCounts{Executions: int64(n), Steps: 2 * int64(n), Signals: int64(n), Labels: 2 * int64(n)}
			require.Equal(t, want, got, "n=%d", n)
			require.Len(t, calls, (n+batch-1)/batch, "one progress call per non-empty batch, n=%d", n)
			require.Equal(t, want, calls[len(calls)-1])
			require.EqualValues(t, 2, count(t, s, "workflow_executions"), "n=%d", n)
			again, err := s.PurgeExecutions(ctx, repository.PurgeParams{OlderThan: 24 * time.Hour, BatchSize: batch})
			require.NoError(t, err)
			require.Zero(t, again)
		}
		for _, id := range []string{keep, live.ExecutionID} {
			l, _, _ := childCounts(t, s, id)
			require.NotZero(t, l, "labels of %s kept", id)
		}
	})
}

// A retry racing a purge, execution by execution: each execution ends up
// either wholly gone (no orphan labels, steps or signals) or wholly there
// and PENDING, never half-purged.
func TestAdversary11_RetryRacingPurgeNeverHalfPurges(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		const n = 16
		ids := make([]string, n)
		for i := range ids {
			ids[i] = seedEnded(t, s, models.ExecutionFailed, 72*time.Hour)
		}
		var wg sync.WaitGroup
		var purged repository.PurgeCounts
		var purgeErr error
		wg.Go(func() {
			// Batch size 1 makes as many purge transactions as retries.
			purged, purgeErr = s.PurgeExecutions(ctx, repository.PurgeParams{OlderThan: 24 * time.Hour, BatchSize: 1})
		})
		retried := make([]bool, n)
		retryErrs := make([]error, n)
		wg.Go(func() {
			for i := n - 1; i >= 0; i-- {
				_, err := s.RetryExecution(ctx, ids[i])
				retried[i] = err == nil
				if err != nil && !errors.Is(err, repository.ErrNotFound) {
					retryErrs[i] = err
				}
			}
		})
		wg.Wait()
		require.NoError(t, purgeErr)
		for i, err := range retryErrs {
			require.NoError(t, err, "retry of %s", ids[i])
		}
		var gone int64
		for i, id := range ids {
			exec, err := s.GetExecution(ctx, id)
			labels, steps, signals := childCounts(t, s, id)
			if errors.Is(err, repository.ErrNotFound) {
				gone++
				require.False(t, retried[i], "%s was retried, then purged though live", id)
				require.Zero(t, labels+steps+signals, "orphans of purged %s", id)
				continue
			}
			require.NoError(t, err)
			require.True(t, retried[i], "%s neither purged nor retried", id)
			require.Equal(t, models.ExecutionPending, exec.Status)
			require.Equal(t, [3]int64{2, 2, 1}, [3]int64{labels, steps, signals}, "children of retried %s", id)
		}
		require.Equal(t, gone, purged.Executions)
		require.Equal(t, repository.PurgeCounts{Executions: gone, Steps: 2 * gone, Signals: gone, Labels: 2 * gone}, purged)
	})
}

// A lease: of eight nodes asking at once for a fresh lease, exactly one
// gets it; it passes on only once expired, and the old holder then loses it.
func TestAdversary11_LeaseRaceAndHandOver(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		const nodes = 8
		held := make([]bool, nodes)
		errs := make([]error, nodes)
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				held[i], errs[i] = s.AcquireLease(ctx, repository.LeaseParams{Name: "retention", Holder: fmt.Sprintf("node-%d", i), TTL: time.Hour})
			})
		}
		wg.Wait()
		winner := -1
		for i := range nodes {
			require.NoError(t, errs[i])
			if held[i] {
				require.Equal(t, -1, winner, "two holders: node-%d and node-%d", winner, i)
				winner = i
			}
		}
		require.NotEqual(t, -1, winner, "nobody got the lease")
		holder := fmt.Sprintf("node-%d", winner)
		other := fmt.Sprintf("node-%d", (winner+1)%nodes)
		acquire := func(who string) bool {
			ok, err := s.AcquireLease(ctx, repository.LeaseParams{Name: "retention", Holder: who, TTL: time.Hour})
			require.NoError(t, err)
			return ok
		}
		require.True(t, acquire(holder), "renewal")
		require.False(t, acquire(other))
		// The holder stopped an hour ago: its lease expired.
		past := time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)
		require.NoError(t, s.DB().Table("workflow_leases").Where("name = ?", "retention").Update("expires_at", past).Error)
		require.True(t, acquire(other), "taken over once expired")
		require.False(t, acquire(holder), "the old holder lost it")
		require.True(t, acquire(other))
	})
}

// Retry of an execution whose steps include retired rows from an earlier
// retry: a second failure and retry retire only the new rows, and the
// history keeps every attempt under distinct names.
func TestAdversary11_RetryTwiceKeepsEveryAttempt(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		e := create(t, s, repository.NewExecution{})
		_, err := s.CreateStepExecution(ctx, e.ExecutionID, "a", nil, 1)
		require.NoError(t, err)
		endAt(t, s, e.ExecutionID, models.ExecutionFailed, time.Minute)
		r1, err := s.RetryExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		_, err = s.RetryExecution(ctx, e.ExecutionID)
		require.ErrorIs(t, err, repository.ErrNotRetryable, "a second retry of a PENDING one")
		_, err = s.CreateStepExecution(ctx, e.ExecutionID, "a", nil, 1)
		require.NoError(t, err, "the retired row is out of the way")
		endAt(t, s, e.ExecutionID, models.ExecutionFailed, time.Minute)
		r2, err := s.RetryExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Greater(t, r2.Version, r1.Version)
		var ids []string
		for _, st := range history(t, s, e.ExecutionID) {
			ids = append(ids, st.StepID)
		}
		require.ElementsMatch(t, []string{
			repository.RetiredStepPrefix(int64(r1.Version)) + "a",
			repository.RetiredStepPrefix(int64(r2.Version)) + "a",
		}, ids)
		_, err = s.RetryExecution(ctx, "no-such-execution")
		require.ErrorIs(t, err, repository.ErrNotFound)
	})
}
