package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Sleep pauses the workflow for d, durably: the wake-up time is journaled as
// step stepID, so a workflow resumed after a crash sleeps only what is left (a
// 10-minute sleep resumed after 3 sleeps 7 more). The wake-up time is the
// clock of the node that first ran the step. Cancel wakes it with
// ErrCancelled.
func Sleep(ctx *Context, stepID string, d time.Duration) (err error) {
	ctx, span := ctx.beginSleep(stepID, d) // telemetry.go
	defer func() { endWait(span, err) }()
	clock := ctx.x.engine.cfg.Clock
	wakeAt, err := ownStep(ctx, stepID, func(context.Context) (time.Time, error) {
		return clock.Now().UTC().Add(d), nil
	})
	if err != nil {
		return err
	}
	return ctx.pause(wakeAt.Sub(clock.Now()))
}

// AwaitSignal waits for the next signal named name sent to the execution and
// returns its payload decoded as T. Receiving consumes exactly one signal and
// journals it in the same transaction, so a resumed workflow gets the same
// payload again without consuming another. With timeout > 0 it returns
// ErrSignalTimeout once the timeout passes; the deadline and the timeout are
// journaled too, so a replay times out at the same point.
func AwaitSignal[T any](ctx *Context, name string, timeout time.Duration) (T, error) {
	var zero T
	stepID := ctx.autoID("signal:" + name + ":" + strconv.Itoa(ctx.nextWait(name)))
	wctx, span := ctx.beginSignal(name, timeout) // telemetry.go
	raw, err := wctx.awaitSignal(stepID, name, timeout)
	endWait(span, err)
	if err != nil {
		return zero, err
	}
	var out T
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			return zero, fmt.Errorf("decoding signal %s: %w", name, err)
		}
	}
	return out, nil
}

func (c *Context) awaitSignal(stepID, name string, timeout time.Duration) (json.RawMessage, error) {
	e := c.x.engine
	var deadline time.Time
	if timeout > 0 {
		var err error
		deadline, err = ownStep(c, stepID+":deadline", func(context.Context) (time.Time, error) {
			return e.cfg.Clock.Now().UTC().Add(timeout), nil
		})
		if err != nil {
			return nil, err
		}
	}
	attempts, err := c.claim(stepID)
	if err != nil {
		return nil, err
	}
	for _, a := range attempts {
		switch a.Status {
		case models.StepCompleted:
			return json.RawMessage(a.Output), nil
		case models.StepFailed:
			return nil, fmt.Errorf("signal %s: %w", name, ErrSignalTimeout)
		case models.StepRunning:
			// Only a timeout journals a wait as RUNNING, and the write that
			// would have ended it failed: end it the same way now.
			timeoutErr := fmt.Errorf("signal %s: %w", name, ErrSignalTimeout)
			if err := c.finishStep(c, &a, models.StepFailed, nil, timeoutErr); err != nil {
				return nil, c.x.checkpointError(err)
			}
			return nil, timeoutErr
		}
	}
	if err := c.flush(c); err != nil {
		return nil, err
	}
	poll := time.NewTicker(e.cfg.PollInterval)
	defer poll.Stop()
	var expired <-chan time.Time
	if !deadline.IsZero() {
		fired, stop := e.cfg.Clock.NewTimer(deadline.Sub(e.cfg.Clock.Now()))
		defer stop()
		expired = fired
	}
	timedOut := false
	for {
		// Take the waiter before looking, so a Signal between the look and the
		// wait still wakes us.
		signalled := e.signalWaiter(c.x.id)
		step, ok, err := e.store.ReceiveSignal(c, repository.ReceiveSignalParams{
			ExecutionID: c.x.id, NodeID: e.cfg.NodeID, SignalName: name, StepID: stepID,
		})
		if err != nil {
			if cause := c.stopped(); cause != nil {
				return nil, cause
			}
			return nil, c.x.checkpointError(err)
		}
		if ok {
			c.record(*step)
			return json.RawMessage(step.Output), nil
		}
		if timedOut {
			return nil, c.recordTimeout(stepID, name)
		}
		// Nothing yet: wait in the database, unless the wait is short.
		left := time.Duration(math.MaxInt64)
		if !deadline.IsZero() {
			left = deadline.Sub(e.cfg.Clock.Now())
		}
		if c.parkable(left) {
			return nil, c.park(deadline, name)
		}
		select {
		case <-signalled:
		case <-poll.C:
		case <-c.Done():
			return nil, c.stopped()
		case <-c.x.parent.Done(): // draining
			return nil, c.stopped()
		case <-expired:
			// Look once more before timing out: a signal stored before the
			// deadline wins, even when its wake-up and the deadline are
			// ready together (as when a test's fake clock jumps past it).
			timedOut = true
		}
	}
}

// recordTimeout journals that the wait for a signal timed out, so a replay
// times out too instead of taking a signal that came later.
func (c *Context) recordTimeout(stepID, name string) error {
	e := c.x.engine
	if err := c.flush(c); err != nil {
		return err
	}
	step, err := e.store.StartStep(c, repository.StartStepParams{ExecutionID: c.x.id, StepID: stepID, NodeID: e.cfg.NodeID, Attempt: 1})
	if err != nil {
		// ErrAlreadyExists included: an earlier write for this wait committed
		// though it reported a failure. The run stops and replays the journal,
		// which holds the truth.
		return c.x.checkpointError(err)
	}
	timeoutErr := fmt.Errorf("signal %s: %w", name, ErrSignalTimeout)
	if err := c.finishStep(c, step, models.StepFailed, nil, timeoutErr); err != nil {
		return c.x.checkpointError(err)
	}
	return timeoutErr
}
