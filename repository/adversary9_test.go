package repository_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/migrations"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// TestAdversary9_RollbackKeepsParkedWaitsWakeable: migrations 008, 007 and
// 006 are rolled back and applied again while executions are parked, one
// only for a signal. The rows and the signals survive, and every parked
// execution can still be woken: none is left due at no time for a signal
// its row no longer names.
func TestAdversary9_RollbackKeepsParkedWaitsWakeable(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := context.Background()
		seedDefinition(t, s, "order", "v1")
		park := func(until time.Time, signal string) string {
			e := create(t, s, repository.NewExecution{NodeID: "n1"})
			require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: e.ExecutionID, NodeID: "n1", Until: until, Signal: signal}))
			return e.ExecutionID
		}
		forSignal := park(time.Time{}, "go")
		forSignalOrTime := park(time.Now().Add(time.Hour), "go")
		require.NoError(t, s.SendSignal(ctx, forSignalOrTime, "other", 1))
		require.NoError(t, s.BeatNode(ctx, "n1"))

		for {
			var ids []string
			require.NoError(t, s.DB().Table(migrations.TableName).Order("id").Pluck("id", &ids).Error)
			if ids[len(ids)-1] < migrations.IDParkedWaits {
				break
			}
			require.NoError(t, migrations.RollbackLast(ctx, s.DB()))
		}
		require.NoError(t, migrations.Migrate(ctx, s.DB()))

		var n int64
		require.NoError(t, s.DB().Table("workflow_executions").Count(&n).Error)
		require.EqualValues(t, 2, n)
		require.NoError(t, s.DB().Table("signals").Count(&n).Error)
		require.EqualValues(t, 1, n)
		require.NoError(t, s.BeatNode(ctx, "n2"))

		require.NoError(t, s.SendSignal(ctx, forSignal, "go", 1))
		require.NoError(t, s.SendSignal(ctx, forSignalOrTime, "go", 1))
		claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 10})
		require.NoError(t, err)
		var got []string
		for _, e := range claimed {
			got = append(got, e.ExecutionID)
		}
		require.Contains(t, got, forSignal, "a signal-only wait parked before the rollback can never be woken")
		require.Contains(t, got, forSignalOrTime, "a signal wait with a deadline parked before the rollback waits for its deadline despite its signal")
	})
}
