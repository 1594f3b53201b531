package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
)

// Pushed wake-ups. A committed change that another engine may act on at once
// is announced as an event: a kind and an execution id. On PostgreSQL the
// database announces it (migration 008's triggers NOTIFY at commit, and
// Listen holds a LISTEN connection); on SQLite the storages of one process
// announce it to each other in memory after the commit. Events are a
// shortcut, never the guarantee: a lost event only means the work waits for
// the next poll.

// Event kinds, as Listen reports them.
const (
	// EventClaimable: the execution became unowned, live and due (created
	// without an owner, released, parked until now or for a signal already
	// stored): a sweep may claim it now.
	EventClaimable = "claimable"
	// EventSignal: a signal for the execution was stored.
	EventSignal = "signal"
	// EventEnded: the execution became terminal (COMPLETED, FAILED,
	// CANCELLED or TIMED_OUT; a Cancel is one).
	EventEnded = "ended"
	// EventResync has no execution id: the listener (re)connected and may
	// have missed events meanwhile, so whatever events would have woken
	// should look again.
	EventResync = "resync"
)

// ErrListenUnsupported is Listen's error when the storage cannot push events:
// a Storage inside a transaction, a PostgreSQL database whose connections do
// not come from pgx, or one without migration 008. Callers poll instead.
var ErrListenUnsupported = errors.New("repository: pushed wake-ups unsupported")

// Listener is implemented by storages that push wake-ups. Storage implements
// it; WorkflowStorage does not require it, so fakes need not.
type Listener interface {
	// Listen calls onEvent for every event (an Event* kind and an
	// execution id, "" for EventResync) until ctx ends, then returns nil.
	// onEvent runs on the listening goroutine and must not block. Events
	// may come twice, late, or for executions of no interest; none comes
	// before its change commits. Listen returns an error only when it
	// cannot listen at all (ErrListenUnsupported, ErrInvalidArgument);
	// lost connections are reconnected, with backoff, and followed by an
	// EventResync.
	Listen(ctx context.Context, onEvent func(kind, executionID string)) error
}

var _ Listener = (*Storage)(nil)

// Listen implements Listener. On PostgreSQL it holds one connection of its
// own, outside the pool, that LISTENs for migration 008's notifications (see
// listen_postgres.go). On SQLite it hears the events of every Storage of this
// process on the same *sql.DB (one Storage, or New on one *gorm.DB); storages
// that opened the same file separately do not hear each other and poll.
func (s *Storage) Listen(ctx context.Context, onEvent func(kind, executionID string)) error {
	if onEvent == nil {
		return fmt.Errorf("listening with a nil callback: %w", ErrInvalidArgument)
	}
	if s.inTransaction() || s.pool == nil {
		return fmt.Errorf("listening on a storage without a pool of its own (inside a transaction): %w", ErrListenUnsupported)
	}
	if s.dialect.notifiesCommits() {
		return s.listenPostgres(ctx, onEvent)
	}
	defer subscribe(s.pool, onEvent)()
	onEvent(EventResync, "")
	<-ctx.Done()
	return nil
}

// hub passes the events of the storages on one *sql.DB to that process's
// listeners. Publishing calls every listener in turn, on the writer's
// goroutine, after the commit.
type hub struct {
	mu   sync.Mutex
	subs map[int]func(kind, executionID string)
	next int
}

// hubs holds a hub per pool while it has listeners; without any, publishing
// costs one map lookup.
var hubs = struct {
	sync.Mutex
	byPool map[*sql.DB]*hub
}{byPool: map[*sql.DB]*hub{}}

// hubOf returns the pool's hub, nil if nobody listens on it.
func hubOf(pool *sql.DB) *hub {
	hubs.Lock()
	defer hubs.Unlock()
	return hubs.byPool[pool]
}

// subscribe adds fn to the listeners of pool until unsubscribe is called.
func subscribe(pool *sql.DB, fn func(kind, executionID string)) (unsubscribe func()) {
	hubs.Lock()
	defer hubs.Unlock()
	h := hubs.byPool[pool]
	if h == nil {
		h = &hub{subs: map[int]func(string, string){}}
		hubs.byPool[pool] = h
	}
	h.mu.Lock()
	id := h.next
	h.next++
	h.subs[id] = fn
	h.mu.Unlock()
	return func() {
		// Lock order: hubs, then a hub; publish takes only the hub's.
		hubs.Lock()
		defer hubs.Unlock()
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs, id)
		if len(h.subs) == 0 {
			delete(hubs.byPool, pool)
		}
	}
}

func (h *hub) publish(kind, executionID string) {
	h.mu.Lock()
	subs := make([]func(string, string), 0, len(h.subs))
	for _, fn := range h.subs {
		subs = append(subs, fn)
	}
	h.mu.Unlock()
	for _, fn := range subs {
		fn(kind, executionID)
	}
}

// event is one announcement waiting for its transaction to commit.
type event struct{ kind, executionID string }

// eventBuffer holds the events of a Storage.Transaction until it commits.
type eventBuffer struct {
	mu     sync.Mutex
	events []event
}

func (b *eventBuffer) add(kind, executionID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, event{kind, executionID})
}

func (b *eventBuffer) take() []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.events
	b.events = nil
	return out
}

// listened reports whether an event of this storage would reach anyone: on
// SQLite, a listener in this process on the same pool. On PostgreSQL the
// database announces changes itself.
func (s *Storage) listened() bool {
	return !s.dialect.notifiesCommits() && s.pool != nil && hubOf(s.pool) != nil
}

// publish announces a change the storage just made, after its commit: at
// once, or, inside Storage.Transaction, once the transaction commits.
func (s *Storage) publish(kind, executionID string) {
	if !s.listened() {
		return
	}
	if s.pending != nil {
		s.pending.add(kind, executionID)
		return
	}
	if h := hubOf(s.pool); h != nil {
		h.publish(kind, executionID)
	}
}

// publishCommitted announces what a committed Storage.Transaction buffered.
func (s *Storage) publishCommitted(b *eventBuffer) {
	for _, ev := range b.take() {
		s.publish(ev.kind, ev.executionID)
	}
}

// publishEnded announces a status change when it made the execution terminal.
func (s *Storage) publishEnded(executionID string, status models.ExecutionStatus) {
	if status.Terminal() {
		s.publish(EventEnded, executionID)
	}
}

// publishParked announces a parked execution that is due already: its time
// has come, or the signal it waits for was stored before it parked (that
// signal's own event found it still owned). On PostgreSQL the trigger makes
// the same test.
func (s *Storage) publishParked(ctx context.Context, p ParkParams, until time.Time) {
	if !s.listened() {
		return
	}
	due := !until.After(utcNow())
	if !due && p.Signal != "" {
		var n int64
		err := s.run(ctx, func(db *gorm.DB) error {
			return db.Raw(`SELECT count(*) FROM signals WHERE execution_id = ? AND signal_name = ?`, p.ExecutionID, p.Signal).Scan(&n).Error
		})
		// A failed look announces anyway: a needless sweep costs less than
		// a wake-up lost until the next poll.
		due = err != nil || n > 0
	}
	if due {
		s.publish(EventClaimable, p.ExecutionID)
	}
}
