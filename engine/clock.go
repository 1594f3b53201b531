package engine

import (
	"context"
	"time"
)

// Clock is the time workflows wait by: Sleep's wake-up times, AwaitSignal's
// deadlines, retry backoffs and WithTimeout. The default is the system
// clock; a test swaps in a fake one (see testutil/workflowtest) so that waits
// end when the test says, not in real time. Heartbeats, staleness and polling
// keep real time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a channel that receives once d has passed (at once
	// when d <= 0), and a function that stops the timer.
	NewTimer(d time.Duration) (fired <-chan time.Time, stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// StepInfo describes one attempt of a step to a StepInterceptor.
type StepInfo struct {
	ExecutionID string
	StepID      string
	Attempt     int
}

// StepInterceptor runs around every attempt of every Step function: it
// calls next to run the function, or returns a result of its own instead
// (which must encode to JSON as the step's result type). Whatever it returns
// is journaled as the step's outcome. Replayed steps do not reach it, and
// neither do the steps Sleep and AwaitSignal journal for themselves. Tests
// use it to stub steps and count their runs.
type StepInterceptor func(ctx context.Context, step StepInfo, next func(context.Context) (any, error)) (any, error)

// withTimeout ends ctx with cause once d has passed on clock.
func withTimeout(ctx context.Context, clock Clock, d time.Duration, cause error) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	fired, stopTimer := clock.NewTimer(d)
	go func() {
		select {
		case <-fired:
			cancel(cause)
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		stopTimer()
		cancel(nil)
	}
}
