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

// Adversary 12: a sweep with no free slot no longer sets the engine's
// "work may wait" flag (recovery.claimUpTo). Work that WAS announced (a
// Start that left its execution unowned, a Signal to a parked execution, a
// claim that took all it could, another node's start or hand-back) must
// still be claimed as soon as a slot frees, not at the next poll. Every
// engine here polls every 30 s (wakeConfig) and nothing may wait for that:
// each bounded wait is adv12Bound.

const adv12Bound = 10 * time.Second

// adv12Result waits adv12Bound for a typed result.
func adv12Result[T any](t *testing.T, h *engine.Handle[T], what string, since time.Time) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adv12Bound)
	defer cancel()
	v, err := h.Result(ctx)
	require.NoError(t, err, "%s: not done within %s (%s after the slot freed): left for the next poll", what, adv12Bound, time.Since(since))
	return v
}

// adv12Busy is a workflow that holds its slot until release closes.
func adv12Busy(id string, release <-chan struct{}, entered *atomic.Int32) *engine.Workflow[int, int] {
	return engine.Define(id, "v1", func(ctx *engine.Context, n int) (int, error) {
		return engine.Step(ctx, "hold", func(sctx context.Context) (int, error) {
			if entered != nil {
				entered.Add(1)
			}
			select {
			case <-release:
			case <-sctx.Done():
				return 0, sctx.Err()
			case <-time.After(2 * time.Minute):
			}
			return n, nil
		})
	})
}

func adv12Quick(id string) *engine.Workflow[int, int] {
	return engine.Define(id, "v1", func(ctx *engine.Context, n int) (int, error) {
		return engine.Step(ctx, "s", func(context.Context) (int, error) { return n * 10, nil })
	})
}

// TestAdversary12_StartsWhileBusyRunWhenSlotFrees: MaxConcurrent 1. While
// a run holds the slot, three Starts leave their executions unowned (each
// announced). Once the slot frees, each must run in turn (a full claim of
// one, then the next run's end), with no poll.
func TestAdversary12_StartsWhileBusyRunWhenSlotFrees(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		release := make(chan struct{})
		busy := adv12Busy("adv12-busy", release, nil)
		quick := adv12Quick("adv12-quick")
		cfg := wakeConfig("adv12-one-slot")
		cfg.MaxConcurrent = 1
		e := engine.New(s, cfg)
		require.NoError(t, e.Register(busy, quick))
		run(t, e)
		time.Sleep(200 * time.Millisecond) // past RecoverOnStartup: Start runs here
		b, err := busy.Start(ctx, e, 0)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			x, err := s.GetExecution(ctx, b.ID())
			return err == nil && x.NodeID != nil && x.Status == models.ExecutionRunning
		}, adv12Bound, 5*time.Millisecond)
		var hs []*engine.Handle[int]
		for i := range 3 {
			h, err := quick.Start(ctx, e, i+1)
			require.NoError(t, err)
			x, err := s.GetExecution(ctx, h.ID())
			require.NoError(t, err)
			require.Nil(t, x.NodeID, "the slot is busy: Start leaves it unowned")
			hs = append(hs, h)
		}
		time.Sleep(300 * time.Millisecond) // the announcements' sweeps find no room
		close(release)
		adv12Result(t, b, "busy", time.Now())
		freed := time.Now()
		for i, h := range hs {
			require.Equal(t, (i+1)*10, adv12Result(t, h, "queued start", freed))
		}
	})
}

// TestAdversary12_SignalWhileBusyRunsWhenSlotFrees: MaxConcurrent 1. An
// execution parks on AwaitSignal; another run takes the slot; the signal
// comes (announced by Signal) while no slot is free. Once it frees, the
// signalled execution must resume without waiting for a poll.
func TestAdversary12_SignalWhileBusyRunsWhenSlotFrees(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		release := make(chan struct{})
		busy := adv12Busy("adv12-sig-busy", release, nil)
		waiter := engine.Define("adv12-waiter", "v1", func(ctx *engine.Context, _ int) (string, error) {
			return engine.AwaitSignal[string](ctx, "go", 0)
		})
		cfg := wakeConfig("adv12-sig")
		cfg.MaxConcurrent = 1
		e := engine.New(s, cfg)
		require.NoError(t, e.Register(busy, waiter))
		run(t, e)
		time.Sleep(200 * time.Millisecond)
		w, err := waiter.Start(ctx, e, 0)
		require.NoError(t, err)
		waitParked(t, s, w.ID())
		b, err := busy.Start(ctx, e, 0)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			x, err := s.GetExecution(ctx, b.ID())
			return err == nil && x.NodeID != nil
		}, adv12Bound, 5*time.Millisecond, "the busy run took the slot")
		require.NoError(t, e.Signal(ctx, w.ID(), "go", "hello"))
		time.Sleep(300 * time.Millisecond) // the signal's sweep finds no room
		close(release)
		adv12Result(t, b, "busy", time.Now())
		require.Equal(t, "hello", adv12Result(t, w, "signalled waiter", time.Now()))
	})
}

// TestAdversary12_ForeignStartWhileBusyRunsWhenSlotFrees: node A (it runs
// nothing) starts a workflow only B runs, while B's one slot is busy: A's
// start is announced to B as an event, and B must claim it once its slot
// frees.
func TestAdversary12_ForeignStartWhileBusyRunsWhenSlotFrees(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			sa, sb := wakeStores(t, dialect)
			ctx := t.Context()
			release := make(chan struct{})
			busy := adv12Busy("adv12-foreign-busy", release, nil)
			quick := adv12Quick("adv12-foreign-quick")
			cfgB := wakeConfig("B")
			cfgB.MaxConcurrent = 1
			b := engine.New(sb, cfgB)
			require.NoError(t, b.Register(busy, quick))
			run(t, b)
			a := engine.New(sa, wakeConfig("A"))
			run(t, a)
			time.Sleep(300 * time.Millisecond)
			hb, err := busy.Start(ctx, b, 0)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				x, err := sb.GetExecution(ctx, hb.ID())
				return err == nil && x.NodeID != nil
			}, adv12Bound, 5*time.Millisecond)
			h, err := quick.Start(ctx, a, 7)
			require.NoError(t, err)
			time.Sleep(500 * time.Millisecond) // the event reached B, whose sweep found no room
			close(release)
			adv12Result(t, hb, "busy", time.Now())
			require.Equal(t, 70, adv12Result(t, quick.Handle(b, h.ID()), "foreign start", time.Now()))
		})
	}
}
