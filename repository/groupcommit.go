package repository

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"
)

// Group commit. On SQLite one connection at a time may write, and every
// transaction pays for its own WAL frames; concurrent workflows whose
// checkpoints (a step start, an execution's creation or end) each wait for
// the write lock spend their time in busy retries. So the checkpoints that
// arrive while one is being written wait for it and are then written
// together, in one transaction, as River's batch completer does for job
// completions:
//
//   - a checkpoint that finds nothing in flight is written at once, as
//     before: one workflow alone pays no wait and no extra statement;
//   - one that arrives meanwhile queues; when the write in flight ends, the
//     whole queue is written in one IMMEDIATE transaction. A lost owner is
//     no error there (the checkpoint's fenced statements write nothing and
//     it reports ErrConcurrentUpdate); a checkpoint that fails (a step
//     attempt started twice) rolls the transaction back, and then each
//     checkpoint is written alone, for its own outcome;
//   - if the transaction itself fails (its commit, the lock), nothing of it
//     was written and every checkpoint in it gets that error;
//   - a caller whose context ends while its checkpoint still queues takes it
//     out, so it is never written; once a shared write has taken it, the
//     caller waits for that write and gets its true outcome (written, or
//     skipped for the ended context), never a guess.
//
// Every checkpoint keeps its own fencing (the owner check is in its own
// statements), so sharing a transaction changes nothing of what it may
// write. Inside a caller's transaction there is no grouping: the caller
// owns the commit.

// groupCommitTimeout bounds one shared transaction, which does not end with
// any one caller's context.
const groupCommitTimeout = 30 * time.Second

// checkpoint is one caller's writes, waiting for a transaction.
type checkpoint struct {
	ctx context.Context
	// op writes the checkpoint in tx; it may run more than once (a busy
	// transaction runs again), so it only sets what it returns.
	op func(tx *gorm.DB) error
	// single: op is one statement, which needs no transaction of its own.
	single bool
	// start, if set, is the step start op writes, which PostgreSQL can
	// write together with others (groupcommit_postgres.go).
	start *stepStart
	// end and create, likewise, are the execution end or creation op
	// writes.
	end    *executionEnd
	create *executionCreate
	err    error
	done   chan struct{}
}

// groupCommit queues the checkpoints that arrive while one is written.
type groupCommit struct {
	mu     sync.Mutex
	busy   bool          // a write is in flight
	queue  []*checkpoint // waiting for the next shared transaction
	commit func(batch []*checkpoint)
	shared atomic.Int64 // transactions written for more than one checkpoint
	// byStatement: only creations without labels, step starts and
	// execution ends are grouped, each kind written as one statement over
	// arrays (PostgreSQL, where other checkpoints gain nothing from waiting
	// for a shared commit).
	byStatement bool
}

// write runs c now if nothing is in flight, else queues it for the next
// shared transaction, and returns its error.
func (g *groupCommit) write(c *checkpoint) error {
	g.mu.Lock()
	if !g.busy {
		g.busy = true
		g.mu.Unlock()
		// Deferred: should commit panic, what queued meanwhile is still
		// written, and the lane freed.
		defer g.next()
		g.commit([]*checkpoint{c})
		return c.err
	}
	c.done = make(chan struct{})
	g.queue = append(g.queue, c)
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-c.ctx.Done():
	}
	g.mu.Lock()
	for i, q := range g.queue {
		if q == c {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			g.mu.Unlock()
			return fmt.Errorf("checkpoint not written: %w", context.Cause(c.ctx))
		}
	}
	g.mu.Unlock()
	// A shared write has it: its outcome is the caller's to know, whatever
	// the context says (the write skips it only if it has not begun it).
	// The write is bounded by groupCommitTimeout.
	<-c.done
	return c.err
}

// next writes what queued meanwhile, on a goroutine of its own so that the
// caller whose write just ended returns at once; it is busy until the queue
// is empty.
func (g *groupCommit) next() {
	g.mu.Lock()
	batch := g.queue
	g.queue = nil
	if len(batch) == 0 {
		g.busy = false
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	go func() {
		defer func() {
			// A panic here (a bug) would end the app's process from a
			// goroutine of the library's: each caller gets it as its
			// checkpoint's error instead, the outcome not known.
			if r := recover(); r != nil {
				for _, c := range batch {
					c.err = fmt.Errorf("writing the checkpoint panicked (its outcome is not known): %v", r)
				}
			}
			for _, c := range batch {
				close(c.done)
			}
			g.next()
		}()
		g.commit(batch)
	}()
}

// writeCheckpoint writes c, one checkpoint (its op, and for PostgreSQL the
// start, end or creation it is, if it is one of those): alone in a
// transaction of its own (or, single, as the one statement it is), or, when
// concurrent callers' checkpoints are waiting, together with them. c.ctx is
// the caller's context.
func (s *Storage) writeCheckpoint(c *checkpoint) error {
	grouped := s.group != nil && !s.inTransaction() &&
		(!s.group.byStatement || c.start != nil || c.end != nil || c.create != nil)
	if grouped {
		return s.group.write(c)
	}
	return s.run(c.ctx, func(db *gorm.DB) error {
		if c.single {
			return c.op(db)
		}
		return s.atomically(db, c.op)
	})
}

// commitCheckpoints writes a batch: one checkpoint as it would be written
// alone; more in one transaction. A checkpoint that fails there (a step
// attempt started twice, an id that exists) fails the transaction, which
// then wrote nothing, and every checkpoint is written alone after it for
// the outcome it would have had: failures are rare, and a savepoint around
// each checkpoint would cost two statements apiece every time.
func (s *Storage) commitCheckpoints(batch []*checkpoint) {
	alone := func(c *checkpoint) {
		if c.ctx.Err() != nil {
			c.err = context.Cause(c.ctx) // its caller gave up: not written
			return
		}
		c.err = s.run(c.ctx, func(db *gorm.DB) error {
			if c.single {
				return c.op(db)
			}
			return db.Transaction(c.op)
		})
	}
	if len(batch) == 1 {
		alone(batch[0])
		return
	}
	s.group.shared.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), groupCommitTimeout)
	defer cancel()
	var failed error
	err := s.run(ctx, func(db *gorm.DB) error {
		failed = nil
		return db.Transaction(func(tx *gorm.DB) error {
			for _, c := range batch {
				if c.ctx.Err() != nil {
					c.err = context.Cause(c.ctx) // its caller gave up: not written
					continue
				}
				if c.err = c.op(tx); c.err != nil {
					failed = c.err
					return c.err
				}
			}
			return nil
		})
	})
	switch {
	case failed != nil:
		for _, c := range batch {
			alone(c)
		}
	case err != nil:
		for _, c := range batch {
			c.err = errors.Join(c.err, err) // nothing of it was written
		}
	}
}
