package recovery_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/recovery"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// adv9Parked creates n executions parked until a signal named "go", each
// with that signal already stored: claimable now, by the signalled pick.
func adv9Parked(t *testing.T, s *repository.Storage, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		id := create(t, s, "w", models.ExecutionRunning, 0)
		require.NoError(t, s.ParkExecution(t.Context(), repository.ParkParams{ExecutionID: id, NodeID: "w", Signal: "go"}))
		require.NoError(t, s.SendSignal(t.Context(), id, "go", "x"))
		ids = append(ids, id)
	}
	return ids
}

// TestAdversary9_SignalledBacklogIsShared: executions parked for a signal
// that has come are claimable work like any other. With fair sharing, one
// sweep of the only live node, with 8 free slots, claims all 8 of them, and
// with two live nodes its share, 4; not one per sweep because the backlog
// count left them out.
func TestAdversary9_SignalledBacklogIsShared(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		adv9Parked(t, s, 16)
		sweep := func(node string) int {
			require.NoError(t, s.BeatNode(t.Context(), node))
			svc := recovery.NewService(s, node, recovery.WithFairShare(), recovery.WithBatchSize(8),
				recovery.WithCapacity(func() int { return 8 }), recovery.WithStaleThreshold(time.Minute))
			return svc.Sweep(t.Context())
		}
		require.Equal(t, 8, sweep("alone"), "the only live node, 8 free slots, 16 signalled executions")
		require.NoError(t, s.BeatNode(t.Context(), "other"))
		// 8 left, 3 live nodes ("w" never beat): at least a share of
		// ceil(8/3) = 3 (signal-woken work is not in the backlog count,
		// so the free slots bound it).
		require.GreaterOrEqual(t, sweep("third"), 3)
	})
}

// TestAdversary9_FairShareWithIdleNodes: idle nodes count among the live
// ones, so a lone worker's sweep claims less than its free slots, but
// every sweep claims at least one and the backlog drains.
func TestAdversary9_FairShareWithIdleNodes(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		for range 10 {
			create(t, s, "", models.ExecutionPending, 0)
		}
		for i := range 9 {
			require.NoError(t, s.BeatNode(t.Context(), fmt.Sprintf("idle-%d", i)))
		}
		require.NoError(t, s.BeatNode(t.Context(), "worker"))
		svc := recovery.NewService(s, "worker", recovery.WithFairShare(), recovery.WithBatchSize(64),
			recovery.WithStaleThreshold(time.Minute))
		total := 0
		for range 10 {
			n := svc.Sweep(t.Context())
			require.GreaterOrEqual(t, n, 1, "a sweep with work left claimed nothing")
			total += n
			if total == 10 {
				break
			}
		}
		require.Equal(t, 10, total)
	})
}

// TestAdversary9_StartupTakesItsFairShare: a node starts beside a backlog
// of 40 unowned executions while another node is alive. Its startup
// recovery, in batches, claims its fair share (20), not the whole backlog
// batch after batch (20, then 10 of what is left, then 5...).
func TestAdversary9_StartupTakesItsFairShare(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		for range 40 {
			create(t, s, "", models.ExecutionPending, 0)
		}
		require.NoError(t, s.BeatNode(t.Context(), "other"))
		svc := recovery.NewService(s, "starting", recovery.WithFairShare(), recovery.WithBatchSize(64),
			recovery.WithCapacity(func() int { return 64 }), recovery.WithStaleThreshold(time.Minute))
		report, err := svc.RecoverOnStartup(t.Context(), time.Minute, time.Second)
		require.NoError(t, err)
		require.LessOrEqual(t, report.Claimed, 20, "startup recovery claimed more than its fair share")
		require.GreaterOrEqual(t, report.Claimed, 1)
	})
}
