package recovery_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/recovery"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Adversary 12: the engine's "work may wait" flag, as the hooks drive it
// (cleared by WithClaimHook, set by WithFullClaimHook), must stay set
// through sweeps without room, and be set again by every claim that may
// have left work behind: full (of the fair share too) or failed.

// adv12FailingClaims fails every claim while fail is set.
type adv12FailingClaims struct {
	repository.WorkflowStorage
	fail atomic.Bool
}

func (f *adv12FailingClaims) ClaimExecutions(ctx context.Context, p repository.ClaimParams) ([]models.WorkflowExecution, error) {
	if f.fail.Load() {
		return nil, errors.New("adv12: claim failed")
	}
	return f.WorkflowStorage.ClaimExecutions(ctx, p)
}

func TestAdversary12_WaitFlagFollowsWhatTheNodeLearns(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		ctx := t.Context()
		store := &adv12FailingClaims{WorkflowStorage: s}
		var waits atomic.Bool
		var free atomic.Int32
		r := newResumer()
		svc := recovery.NewService(store, "me", recovery.WithResumer(r), recovery.WithBatchSize(4),
			recovery.WithCapacity(func() int { return int(free.Load()) }), recovery.WithFairShare(),
			recovery.WithStaleThreshold(time.Minute), recovery.WithHeartbeatInterval(time.Second),
			recovery.WithClaimHook(func() { waits.Store(false) }), recovery.WithFullClaimHook(func() { waits.Store(true) }))

		// Announced while busy: sweeps without room leave the flag set.
		a := create(t, s, "", models.ExecutionPending, 0)
		waits.Store(true)
		for range 3 {
			require.Zero(t, svc.Sweep(ctx))
		}
		require.True(t, waits.Load(), "a sweep without room cleared the announcement")
		// A slot frees: the claim takes the one waiting, all it could.
		free.Store(1)
		require.Equal(t, 1, svc.Sweep(ctx))
		require.True(t, waits.Load(), "a full claim says more may wait")
		require.Contains(t, r.resumed, a)
		// Nothing waits: a claim with room and nothing found clears it.
		free.Store(4)
		require.Zero(t, svc.Sweep(ctx))
		require.False(t, waits.Load())

		// Fair share: another live node, three claimable, four free slots:
		// the sweep takes two (its share), a full claim.
		require.NoError(t, s.BeatNode(ctx, "other"))
		require.NoError(t, s.BeatNode(ctx, "me"))
		for range 3 {
			create(t, s, "", models.ExecutionPending, 0)
		}
		require.Equal(t, 2, svc.Sweep(ctx))
		require.True(t, waits.Load(), "a claim of its whole share leaves work behind")
		require.Equal(t, 1, svc.Sweep(ctx))

		// A failed claim: what waited may still wait.
		create(t, s, "", models.ExecutionPending, 0)
		waits.Store(false)
		store.fail.Store(true)
		require.Zero(t, svc.Sweep(ctx))
		require.True(t, waits.Load(), "a failed claim must leave the flag set")
		store.fail.Store(false)
		require.Equal(t, 1, svc.Sweep(ctx))

		// Startup with no room: nothing claimed, no hook, flag as it was.
		create(t, s, "", models.ExecutionPending, 0)
		free.Store(0)
		waits.Store(true)
		report, err := svc.RecoverOnStartup(ctx, time.Minute, time.Second)
		require.NoError(t, err)
		require.Zero(t, report.Claimed)
		require.True(t, waits.Load())
	})
}
