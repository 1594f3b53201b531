package engine

import (
	"errors"
	"log/slog"
	"time"

	"github.com/plexspaces/workflow/repository"
)

// errParked is the cause of a workflow context whose execution was parked:
// it waits in the database, unowned, and its goroutine and slot are free. A
// sweep of any node claims it when it is due and replays it.
var errParked = errors.New("engine: execution parked")

// parkable reports whether a wait of d may park the execution instead of
// holding its slot: a wait longer than PollInterval (shorter ones cost less
// in place), on the system clock (a fake clock's times mean nothing to the
// database, which decides when a parked execution is due), outside Parallel
// and Map (a sibling branch may be mid-step).
func (c *Context) parkable(d time.Duration) bool {
	e := c.x.engine
	if d <= e.cfg.PollInterval {
		return false
	}
	if _, system := e.cfg.Clock.(systemClock); !system {
		return false
	}
	return !c.concurrent()
}

// pause waits d: in place when short, else by parking until then.
func (c *Context) pause(d time.Duration) error {
	if c.parkable(d) {
		return c.park(c.x.engine.cfg.Clock.Now().Add(d), "")
	}
	return c.wait(d)
}

// park journals the queued completions, hands the execution back to the
// database until it is due (at until, zero meaning never by itself, or when
// a signal named signal is stored; no later than the workflow's timeout) and
// stops the run with errParked.
func (c *Context) park(until time.Time, signal string) error {
	if err := c.flush(c); err != nil {
		return err
	}
	x := c.x
	if !x.deadline.IsZero() && (until.IsZero() || x.deadline.Before(until)) {
		until = x.deadline
	}
	e := x.engine
	// A claim before the park is no wake-up of it (this node's own sweep
	// took it back, stale, while it ran).
	e.mu.Lock()
	x.reclaimed = nil
	e.mu.Unlock()
	p := repository.ParkParams{ExecutionID: x.id, NodeID: e.cfg.NodeID, Until: until, Signal: signal}
	if !until.IsZero() {
		// How long, not when: the database's clock decides when it is due,
		// so a node whose clock runs behind cannot make it due at once.
		p.For = max(until.Sub(e.cfg.Clock.Now()), time.Microsecond)
	}
	err := e.store.ParkExecution(c, p)
	if err != nil {
		return x.checkpointError(err)
	}
	x.stop(errParked)
	x.tel.parked = true // a heartbeat may have stopped it first (telemetry.go)
	// The database made it due p.For after the park's statement began, which
	// may be later than until by this node's clock: the local wake-up waits
	// at least p.For from now, so that its sweep does not come too early and
	// leave the execution to the next poll.
	e.parked(until, p.For)
	x.logger().LogAttrs(c, slog.LevelDebug, "execution parked", slog.String("signal", signal), slog.Time("until", until))
	return errParked
}
