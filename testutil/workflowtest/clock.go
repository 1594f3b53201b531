package workflowtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/plexspaces/workflow/engine"
)

// Clock is a fake engine.Clock: its time stands still until Advance moves it,
// and a timer fires only when Advance reaches its due time. It is safe for
// concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer // pending: neither fired nor stopped
	// changed is closed, and replaced, whenever a timer is added or the
	// clock moves, so that BlockUntil waits without polling.
	changed chan struct{}
}

type timer struct {
	at    time.Time
	fired chan time.Time
}

var _ engine.Clock = (*Clock)(nil)

// NewClock returns a fake clock that reads start until it is advanced.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start, changed: make(chan struct{})}
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a channel that receives the clock's time once Advance has
// moved it d past now; with d <= 0 it has fired already. stop removes a
// pending timer and reports whether it was pending.
func (c *Clock) NewTimer(d time.Duration) (fired <-chan time.Time, stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), fired: make(chan time.Time, 1)}
	if d <= 0 {
		t.fired <- c.now
		return t.fired, func() bool { return false }
	}
	c.timers = append(c.timers, t)
	c.notify()
	return t.fired, func() bool { return c.remove(t) }
}

// notify wakes the waiters of waitFor; c.mu must be held.
func (c *Clock) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Clock) remove(t *timer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.timers, t)
	if i < 0 {
		return false
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	return true
}

// Advance moves the clock d forward and fires, in due order, every pending
// timer due by then. A timer created after Advance returns counts from the new
// time: a workflow that reaches Sleep(ctx, "nap", time.Hour) only after an
// Advance of an hour still sleeps an hour. Tester.Advance waits for the timer
// first. d must not be negative.
func (c *Clock) Advance(d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("workflowtest: Clock.Advance(%s): time cannot go back", d))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	slices.SortStableFunc(c.timers, func(a, b *timer) int { return a.at.Compare(b.at) })
	due := 0
	for due < len(c.timers) && !c.timers[due].at.After(c.now) {
		c.timers[due].fired <- c.now // buffered, and each timer fires once
		due++
	}
	c.timers = slices.Delete(c.timers, 0, due)
	c.notify()
}

// Pending returns how many timers wait to fire: neither fired nor stopped.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// BlockUntil waits until at least n timers are pending, which tells a test
// that its workflows have reached their Sleep, AwaitSignal timeout or retry
// backoff. It returns ctx's error if ctx ends first.
func (c *Clock) BlockUntil(ctx context.Context, n int) error {
	err := c.waitFor(ctx, func() bool { return len(c.timers) >= n })
	if err != nil {
		return fmt.Errorf("waiting for %d pending timers (%d now): %w", n, c.Pending(), err)
	}
	return nil
}

// waitDue waits until a pending timer is due within d from now.
func (c *Clock) waitDue(ctx context.Context, d time.Duration) error {
	return c.waitFor(ctx, func() bool {
		limit := c.now.Add(d)
		return slices.ContainsFunc(c.timers, func(t *timer) bool { return !t.at.After(limit) })
	})
}

// waitFor waits until cond, called with c.mu held, holds.
func (c *Clock) waitFor(ctx context.Context, cond func() bool) error {
	for {
		c.mu.Lock()
		ok, changed := cond(), c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}
