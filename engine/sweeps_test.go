package engine_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// claimCounter counts the claim statements an engine runs.
type claimCounter struct {
	*repository.Storage
	claims atomic.Int64
}

func (c *claimCounter) ClaimExecutions(ctx context.Context, p repository.ClaimParams) ([]models.WorkflowExecution, error) {
	c.claims.Add(1)
	return c.Storage.ClaimExecutions(ctx, p)
}

// TestSweeps_NoClaimAfterEachRunOnceNothingWaits: once work waited for a
// slot (a Start found none free) and was claimed, a node whose queue is empty
// again runs workflow after workflow without a claim after each: the "work
// may wait" flag is cleared by the claim that found the queue empty. (It
// used to stay set, and every run's end cost a claim statement.)
func TestSweeps_NoClaimAfterEachRunOnceNothingWaits(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		release := make(chan struct{})
		block := engine.Define("sweeps-block", "v1", func(ctx *engine.Context, wait bool) (int, error) {
			return engine.Step(ctx, "s", func(context.Context) (int, error) {
				if wait {
					<-release
				}
				return 1, nil
			})
		})
		store := &claimCounter{Storage: s}
		cfg := wakeConfig("sweeps")
		cfg.MaxConcurrent = 1
		e := engine.New(store, cfg)
		require.NoError(t, e.Register(block))
		run(t, e)

		first, err := block.Start(t.Context(), e, true)
		require.NoError(t, err)
		queued, err := block.Start(t.Context(), e, false) // no slot: left for a sweep
		require.NoError(t, err)
		close(release)
		for _, h := range []*engine.Handle[int]{first, queued} {
			got, err := h.Result(t.Context())
			require.NoError(t, err)
			require.Equal(t, 1, got)
		}
		// The queued one's end swept once more and found nothing.
		before := store.claims.Load()
		for range 20 {
			h, err := block.Start(t.Context(), e, false)
			require.NoError(t, err)
			_, err = h.Result(t.Context())
			require.NoError(t, err)
		}
		require.LessOrEqual(t, store.claims.Load()-before, int64(1), "claims while nothing waited")
	})
}

// TestSweeps_SignalledWhileFullClaimedWhenASlotFrees: a parked execution
// signalled while every slot is taken is claimed as soon as one frees, not at
// the next poll (30 s here).
func TestSweeps_SignalledWhileFullClaimedWhenASlotFrees(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		release := make(chan struct{})
		waiter := engine.Define("sweeps-waiter", "v1", func(ctx *engine.Context, _ int) (string, error) {
			return engine.AwaitSignal[string](ctx, "go", 0)
		})
		busy := engine.Define("sweeps-busy", "v1", func(ctx *engine.Context, _ int) (int, error) {
			return engine.Step(ctx, "s", func(context.Context) (int, error) { <-release; return 1, nil })
		})
		cfg := wakeConfig("sweeps-full")
		cfg.MaxConcurrent = 1
		e := engine.New(s, cfg)
		require.NoError(t, e.Register(waiter, busy))
		run(t, e)

		w, err := waiter.Start(t.Context(), e, 0)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			x, err := s.GetExecution(t.Context(), w.ID())
			return err == nil && x.NodeID == nil && x.Status == models.ExecutionRunning
		}, 10*time.Second, 5*time.Millisecond, "parked")
		b, err := busy.Start(t.Context(), e, 0)
		require.NoError(t, err)
		// Stored from outside the engine: no local waiter learns of it.
		require.NoError(t, s.SendSignal(t.Context(), w.ID(), "go", "now"))
		time.Sleep(100 * time.Millisecond) // any sweep meanwhile finds no free slot
		close(release)
		_, err = b.Result(t.Context())
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		got, err := w.Result(ctx)
		require.NoError(t, err, "claimed only at the next poll")
		require.Equal(t, "now", got)
	})
}
