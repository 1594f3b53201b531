package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/plexspaces/workflow/repository"
)

// Pushed wake-ups. While Run goes, the engine listens to its storage's
// events (repository.Listener: PostgreSQL's LISTEN/NOTIFY, or, on SQLite,
// the engines of this process on the same database) and acts on them at once
// instead of at its next poll:
//
//   - claimable (work nobody runs: started by a node that does not run it,
//     handed back, parked until now): sweep now;
//   - signal: wake an AwaitSignal waiting here, or, if the execution does
//     not run here, sweep now, which claims it if it is parked for the
//     signal;
//   - ended: wake the Awaits of the execution, and if it runs here, look
//     at why (a Cancel) and stop it at once instead of at the next heartbeat;
//   - resync (the listener reconnected, events may be lost): all of that,
//     for every execution.
//
// Polling stays as it was, the safety net: a lost event costs at most a
// PollInterval (a heartbeat, for a Cancel), as without events. A storage
// that cannot listen (a fake, another driver) just polls.

// wakeState holds the Awaits of executions that do not run here, waiting for
// an "ended" event. Its zero value is ready.
type wakeState struct {
	mu    sync.Mutex
	ended map[string]*endWaiter
}

// endWaiter is shared by the Awaits of one execution. Its channel closes on
// the execution's "ended" event, or at the latest after a PollInterval, when
// the Awaits look again, as they did by polling: a waiter nobody wakes
// neither leaks nor lets an Await miss the end.
type endWaiter struct {
	ch    chan struct{}
	timer *time.Timer
}

// listen starts listening to the storage's events for the engine, and
// returns what stops it and waits for it. Run defers that stop, so the
// listener lives as long as Run, drain included.
func (e *Engine) listen(ctx context.Context) (stop func()) {
	l, ok := e.store.(repository.Listener)
	if !ok {
		return func() {}
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := l.Listen(lctx, func(kind, executionID string) { e.onEvent(lctx, kind, executionID) })
		if err != nil && lctx.Err() == nil {
			e.log.LogAttrs(lctx, slog.LevelInfo, "no pushed wake-ups: polling every PollInterval",
				slog.String("error", err.Error()))
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// onEvent acts on one event of the storage. It runs on the listener's
// goroutine, so it never waits for the database itself.
func (e *Engine) onEvent(ctx context.Context, kind, executionID string) {
	switch kind {
	case repository.EventClaimable:
		e.workWaits()
	case repository.EventSignal:
		if !e.notifySignal(executionID) {
			e.workWaits()
		}
	case repository.EventEnded:
		e.wakeEnded(executionID)
		e.stopEnded(ctx, executionID)
	case repository.EventResync:
		e.workWaits()
		e.wakeAllEnded()
		// Events may have been lost before the listener (re)connected: a
		// Cancel among them must still stop the local run at once.
		e.mu.Lock()
		ids := make([]string, 0, len(e.running))
		for id := range e.running {
			ids = append(ids, id)
		}
		e.mu.Unlock()
		for _, id := range ids {
			e.stopEnded(ctx, id)
		}
	}
}

// stopEnded stops a local run of an execution that ended elsewhere (a
// Cancel, or a write by hand), for the reason the database gives: a step
// that watches its ctx sees it done now, not at the next heartbeat.
func (e *Engine) stopEnded(ctx context.Context, executionID string) {
	e.mu.Lock()
	x := e.running[executionID]
	e.mu.Unlock()
	if x == nil || x.returned.Load() {
		return // not here, or its own finish: nothing to stop, no read to pay
	}
	go func() {
		// The event says only that it ended; the database says why, and
		// whether this node still runs it at all (its own finish is an
		// "ended" event too, and then stopping changes nothing).
		readCtx, cancel := context.WithTimeout(ctx, finishTimeout)
		defer cancel()
		if cause := e.lostCause(readCtx, executionID); cause != nil {
			x.stop(cause)
		}
	}()
}

// remoteEnd returns what Await waits on for the next look at an execution:
// done, the local run's end, when the execution runs here; else a channel
// that closes when an "ended" event for it arrives, or after PollInterval.
func (e *Engine) remoteEnd(executionID string, done chan struct{}) chan struct{} {
	if done != nil {
		return done
	}
	w := &e.wake
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur := w.ended[executionID]; cur != nil {
		return cur.ch
	}
	if w.ended == nil {
		w.ended = map[string]*endWaiter{}
	}
	ew := &endWaiter{ch: make(chan struct{})}
	ew.timer = time.AfterFunc(e.cfg.PollInterval, func() { w.wake(executionID, ew) })
	w.ended[executionID] = ew
	return ew.ch
}

// wake closes ew if it is still the execution's waiter.
func (w *wakeState) wake(executionID string, ew *endWaiter) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended[executionID] == ew {
		delete(w.ended, executionID)
		ew.timer.Stop()
		close(ew.ch)
	}
}

// wakeEnded wakes the Awaits of one execution.
func (e *Engine) wakeEnded(executionID string) {
	w := &e.wake
	w.mu.Lock()
	ew := w.ended[executionID]
	w.mu.Unlock()
	if ew != nil {
		w.wake(executionID, ew)
	}
}

// wakeAllEnded wakes every Await waiting for an event, to look again.
func (e *Engine) wakeAllEnded() {
	w := &e.wake
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, ew := range w.ended {
		delete(w.ended, id)
		ew.timer.Stop()
		close(ew.ch)
	}
}
