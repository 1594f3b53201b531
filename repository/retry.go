package repository

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"gorm.io/gorm"
)

// Contention retries. On SQLite a statement fails with "database is locked"
// when another connection holds the write lock past the busy timeout (an
// app's connection may have none), when a deferred transaction cannot upgrade
// to a write, or when a WAL snapshot went stale. A statement or transaction
// that failed so changed nothing, so the library runs its own again, a few
// times, with jittered exponential backoff, within a bounded time.
const (
	retryAttempts  = 8
	retryBaseDelay = 10 * time.Millisecond
	retryMaxDelay  = time.Second
	// retryBudget bounds the time from the first attempt after which no new
	// attempt starts.
	retryBudget = 5 * time.Second
)

// run runs op, one whole statement or one whole transaction of the library's
// own, on a statement with ctx, and runs it again while it fails with
// contention. Inside a transaction the caller owns (Storage.Transaction,
// or a Storage on an app's open transaction) nothing is retried: a failed
// statement there may have cost the transaction, and only its owner can
// decide to run it again. op must be safe to run more than once: it may only
// set what it returns.
func (s *Storage) run(ctx context.Context, op func(db *gorm.DB) error) error {
	err := op(s.query(ctx))
	if err == nil || !s.dialect.isContention(err) || s.inTransaction() {
		return err
	}
	start := time.Now()
	delay := retryBaseDelay
	for attempt := 1; attempt < retryAttempts && time.Since(start) < retryBudget; attempt++ {
		// Full jitter in [delay/2, delay): nodes that collided do not
		// collide again in step.
		wait := delay/2 + rand.N(delay/2)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (retries stopped: %w)", err, context.Cause(ctx))
		case <-timer.C:
		}
		if err = op(s.query(ctx)); err == nil || !s.dialect.isContention(err) {
			return err
		}
		delay = min(2*delay, retryMaxDelay)
	}
	return err
}

// inTransaction reports whether the storage works inside a transaction it did
// not begin.
func (s *Storage) inTransaction() bool {
	_, ok := s.db.Statement.ConnPool.(gorm.TxCommitter)
	return ok
}

// atomically runs fn in a transaction of the library's own, or, inside a
// transaction the caller owns, directly in that one: the caller's commit or
// rollback decides for all of it, and no savepoint (whose name GORM derives
// from a memory address, which no sqlmock expectation can match) appears in
// the SQL.
func (s *Storage) atomically(db *gorm.DB, fn func(tx *gorm.DB) error) error {
	if s.inTransaction() {
		return fn(db)
	}
	return db.Transaction(fn)
}
