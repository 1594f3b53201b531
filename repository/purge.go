package repository

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Batch sizes of PurgeExecutions.
const (
	PurgeBatchSizeDefault = 500
	PurgeBatchSizeMax     = 5000
)

// PurgeParams is the input of PurgeExecutions. Exactly one of OlderThan and
// EndedBefore sets the cutoff.
type PurgeParams struct {
	// OlderThan purges executions that ended more than this long ago, by
	// the database's clock (on PostgreSQL; the process's on SQLite).
	OlderThan time.Duration
	// EndedBefore purges executions that ended before this time.
	EndedBefore time.Time
	// BatchSize is how many executions one batch, one short transaction,
	// deletes: PurgeBatchSizeDefault when zero, at most PurgeBatchSizeMax.
	BatchSize int
	// DryRun counts what would be purged now and deletes nothing.
	DryRun bool
	// Progress, if set, hears the running totals after every batch (once,
	// with the totals, for a dry run). It runs on the caller's goroutine.
	Progress func(PurgeCounts)
}

// PurgeCounts is what PurgeExecutions deleted (or, in a dry run, would).
type PurgeCounts struct {
	Executions int64 `json:"executions"`
	Steps      int64 `json:"steps"`
	Signals    int64 `json:"signals"`
	Labels     int64 `json:"labels"`
}

func (c *PurgeCounts) add(o PurgeCounts) {
	c.Executions += o.Executions
	c.Steps += o.Steps
	c.Signals += o.Signals
	c.Labels += o.Labels
}

// ended is the purge's fence: an execution that ended before the cutoff.
// Every statement that deletes an execution repeats it, so a retry that
// revived it in between (status PENDING, completed_at NULL) keeps it.
const ended = `status IN ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT') AND completed_at < ?`

// PurgePickSQL selects one batch of ended executions on
// idx_workflow_executions_ended (migration 010); its arguments are the
// cutoff and the batch size. The %s is the dialect's claim lock: on
// PostgreSQL the batch's rows stay locked until its transaction ends, so a
// concurrent retry waits for the purge and then finds nothing, or the purge
// skips what a retry holds.
const PurgePickSQL = `SELECT execution_id FROM workflow_executions WHERE ` + ended +
	` ORDER BY completed_at, execution_id LIMIT ?%s`

// The deletes of one batch, children first, so that their counts do not
// depend on foreign keys (off on some SQLite connections) cascading. Their
// argument is the batch's ids; the last one's also the cutoff, after them.
const (
	PurgeLabelsSQL     = `DELETE FROM workflow_execution_labels WHERE execution_id IN ?`
	PurgeStepsSQL      = `DELETE FROM step_executions WHERE execution_id IN ?`
	PurgeSignalsSQL    = `DELETE FROM signals WHERE execution_id IN ?`
	PurgeExecutionsSQL = `DELETE FROM workflow_executions WHERE execution_id IN ? AND ` + ended
)

// PurgeCountSQL counts what a dry run would purge: the ended executions and
// their children. Its arguments are the cutoff, four times.
const PurgeCountSQL = `SELECT ` +
	`(SELECT COUNT(*) FROM workflow_executions WHERE ` + ended + `) AS executions, ` +
	`(SELECT COUNT(*) FROM step_executions WHERE execution_id IN (SELECT execution_id FROM workflow_executions WHERE ` + ended + `)) AS steps, ` +
	`(SELECT COUNT(*) FROM signals WHERE execution_id IN (SELECT execution_id FROM workflow_executions WHERE ` + ended + `)) AS signals, ` +
	`(SELECT COUNT(*) FROM workflow_execution_labels WHERE execution_id IN (SELECT execution_id FROM workflow_executions WHERE ` + ended + `)) AS labels`

// PurgeExecutions implements ManageRepository. Each batch is one short
// transaction: it picks up to BatchSize ended executions by index, oldest
// end first, deletes their labels, steps and signals, then the executions,
// each delete fenced again on "ended before the cutoff", so a live
// execution is never deleted, even one a concurrent retry revives. It stops
// when a batch comes back short, so executions that end meanwhile wait for
// the next purge, and returns the totals; after a failed batch, the totals
// of those that committed, with the error.
func (s *Storage) PurgeExecutions(ctx context.Context, p PurgeParams) (PurgeCounts, error) {
	cutoff, err := s.purgeCutoff(p)
	if err != nil {
		return PurgeCounts{}, err
	}
	batch := p.BatchSize
	switch {
	case batch == 0:
		batch = PurgeBatchSizeDefault
	case batch < 0 || batch > PurgeBatchSizeMax:
		return PurgeCounts{}, fmt.Errorf("purge batch size %d (want 0 to %d): %w", batch, PurgeBatchSizeMax, ErrInvalidArgument)
	}
	if p.DryRun {
		var counts PurgeCounts
		err := s.run(ctx, func(db *gorm.DB) error {
			return db.Raw(PurgeCountSQL, cutoff, cutoff, cutoff, cutoff).Scan(&counts).Error
		})
		if err != nil {
			return PurgeCounts{}, fmt.Errorf("counting executions to purge: %w", err)
		}
		if p.Progress != nil {
			p.Progress(counts)
		}
		return counts, nil
	}
	var total PurgeCounts
	for {
		counts, picked, err := s.purgeBatch(ctx, cutoff, batch)
		if err != nil {
			return total, fmt.Errorf("purging executions (%d purged so far): %w", total.Executions, err)
		}
		total.add(counts)
		if picked > 0 && p.Progress != nil {
			p.Progress(total)
		}
		// A short batch is the last; so is one that deleted nothing (every
		// execution it picked was revived meanwhile), lest the loop spin.
		if picked < batch || counts.Executions == 0 {
			return total, nil
		}
	}
}

// purgeCutoff validates p's cutoff and returns it as SQL.
func (s *Storage) purgeCutoff(p PurgeParams) (any, error) {
	switch {
	case p.OlderThan < 0:
		return nil, fmt.Errorf("purging executions older than %s: %w", p.OlderThan, ErrInvalidArgument)
	case p.OlderThan > 0 && !p.EndedBefore.IsZero():
		return nil, fmt.Errorf("purging executions: both an age and a cutoff time given: %w", ErrInvalidArgument)
	case p.OlderThan > 0:
		return s.dialect.before(p.OlderThan), nil
	case p.EndedBefore.IsZero():
		return nil, fmt.Errorf("purging executions: no age or cutoff time given: %w", ErrInvalidArgument)
	}
	return p.EndedBefore.UTC().Truncate(time.Microsecond), nil
}

// purgeBatch deletes one batch in one transaction and reports how many
// executions it picked.
func (s *Storage) purgeBatch(ctx context.Context, cutoff any, batch int) (PurgeCounts, int, error) {
	var counts PurgeCounts
	var picked int
	err := s.run(ctx, func(db *gorm.DB) error {
		counts, picked = PurgeCounts{}, 0
		return s.atomically(db, func(tx *gorm.DB) error {
			var ids []string
			if err := tx.Raw(fmt.Sprintf(PurgePickSQL, s.dialect.claimLock()), cutoff, batch).Scan(&ids).Error; err != nil {
				return err
			}
			picked = len(ids)
			if picked == 0 {
				return nil
			}
			for _, d := range []struct {
				sql  string
				args []any
				n    *int64
			}{
				{PurgeLabelsSQL, []any{ids}, &counts.Labels},
				{PurgeStepsSQL, []any{ids}, &counts.Steps},
				{PurgeSignalsSQL, []any{ids}, &counts.Signals},
				{PurgeExecutionsSQL, []any{ids, cutoff}, &counts.Executions},
			} {
				res := tx.Exec(d.sql, d.args...)
				if res.Error != nil {
					return res.Error
				}
				*d.n = res.RowsAffected
			}
			return nil
		})
	})
	return counts, picked, err
}
