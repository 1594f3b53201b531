package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/plexspaces/workflow/repository"
)

// Retention: with Config.Retention set, every engine tries, when Run starts
// and then every retentionInterval, to take the database lease
// "retention" (repository.Storage.AcquireLease, a row of workflow_leases
// taken or renewed in one statement, expiring by the database's clock). The
// node that holds it purges the executions that ended more than Retention
// ago; the others do nothing. The holder renews the lease at each of its
// passes, so it keeps the chore while it lives; once it stops (or stops
// purging: its Retention was turned off), the lease expires after
// retentionLeaseTTL and the next node to ask takes over. A lease rather than
// "the live node with the smallest id": nodes with Retention off, or a
// different one, never block the chore, and no node needs to agree with the
// others on who is alive.
//
// Purging is safe if two nodes ever do it at once (a purge that outlasts
// the lease): each batch picks and deletes its rows in one transaction,
// fenced on "ended before the cutoff", skipping rows another holds.

// retentionLease names the lease of the background purge.
const retentionLease = "retention"

// Bounds of the interval between two background purges: a tenth of
// Retention, at least retentionIntervalMin, at most retentionIntervalMax.
const (
	retentionIntervalMin = time.Minute
	retentionIntervalMax = time.Hour
)

// retentionInterval is how often an engine with Retention r purges.
func retentionInterval(r time.Duration) time.Duration {
	return min(max(r/10, retentionIntervalMin), retentionIntervalMax)
}

// retentionLeaseTTL is how long a pass holds the lease: two intervals, so
// the holder renews it before it expires, and a dead holder's lease passes
// on within about three.
func retentionLeaseTTL(r time.Duration) time.Duration { return 2 * retentionInterval(r) }

// retentionStore is what the background purge needs from storage;
// *repository.Storage has it. A WorkflowStorage without it (a test's fake)
// purges nothing.
type retentionStore interface {
	AcquireLease(ctx context.Context, p repository.LeaseParams) (bool, error)
	PurgeExecutions(ctx context.Context, p repository.PurgeParams) (repository.PurgeCounts, error)
}

// retain starts the background purge while Run goes, if Config.Retention is
// set, and returns the function that stops it and waits for it to return.
func (e *Engine) retain(ctx context.Context) (stop func()) {
	if e.cfg.Retention <= 0 {
		return func() {}
	}
	store, ok := e.store.(retentionStore)
	if !ok {
		e.log.LogAttrs(ctx, slog.LevelWarn, "retention is set but the storage cannot purge; keeping everything")
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		ticker := time.NewTicker(retentionInterval(e.cfg.Retention))
		defer ticker.Stop()
		for {
			e.purgeOnce(ctx, store)
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// purgeOnce purges if this node holds the retention lease, or can take it.
func (e *Engine) purgeOnce(ctx context.Context, store retentionStore) {
	held, err := store.AcquireLease(ctx, repository.LeaseParams{
		Name: retentionLease, Holder: e.cfg.NodeID, TTL: retentionLeaseTTL(e.cfg.Retention),
	})
	if err != nil {
		if ctx.Err() == nil {
			e.log.LogAttrs(ctx, slog.LevelWarn, "taking the retention lease", slog.String("error", err.Error()))
		}
		return
	}
	if !held {
		return // another node purges
	}
	counts, err := store.PurgeExecutions(ctx, repository.PurgeParams{OlderThan: e.cfg.Retention})
	switch {
	case err != nil && ctx.Err() == nil:
		e.log.LogAttrs(ctx, slog.LevelWarn, "purging ended executions", slog.String("error", err.Error()),
			slog.Int64("executions", counts.Executions))
	case counts.Executions > 0:
		e.log.LogAttrs(ctx, slog.LevelInfo, "purged ended executions", slog.Int64("executions", counts.Executions),
			slog.Int64("steps", counts.Steps), slog.Int64("signals", counts.Signals), slog.Int64("labels", counts.Labels),
			slog.Duration("retention", e.cfg.Retention))
	}
	if e.cfg.onPurge != nil {
		e.cfg.onPurge(counts, err)
	}
}
