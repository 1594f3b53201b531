package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// RetryPolicy says how often and how patiently a failing step is retried. The
// zero policy runs a step once. Backoff n (from 1) waits
// InitialBackoff * BackoffMultiplier^(n-1), at most MaxBackoff, spread by
// ±Jitter (a fraction, 0.2 = 20%).
type RetryPolicy struct {
	MaxAttempts       int
	InitialBackoff    time.Duration
	BackoffMultiplier float64
	MaxBackoff        time.Duration
	Jitter            float64
}

func (p RetryPolicy) attempts() int { return max(p.MaxAttempts, 1) }

// backoff is the wait after failed attempt n.
func (p RetryPolicy) backoff(n int) time.Duration {
	mult := p.BackoffMultiplier
	if mult < 1 {
		mult = 1
	}
	d := float64(p.InitialBackoff) * math.Pow(mult, float64(n-1))
	if p.MaxBackoff > 0 {
		d = math.Min(d, float64(p.MaxBackoff))
	}
	if j := math.Min(math.Max(p.Jitter, 0), 1); j > 0 {
		d *= 1 + j*(2*rand.Float64()-1)
	}
	return time.Duration(d)
}

// StepOption configures one Step.
type StepOption func(*stepOptions)

type stepOptions struct {
	retry    RetryPolicy
	input    any
	declared []error
	// own marks the steps Sleep and AwaitSignal journal for themselves,
	// which StepInterceptor does not see.
	own bool
}

// WithRetry retries the step by p when it fails.
func WithRetry(p RetryPolicy) StepOption { return func(o *stepOptions) { o.retry = p } }

// WithInput records v in the journal as the step's input, for people reading
// the history; it does not change what runs.
func WithInput(v any) StepOption { return func(o *stepOptions) { o.input = v } }

// Step runs fn once for the execution, as the journal entry stepID, and
// returns its result. If the journal already holds stepID's result (the
// workflow is being resumed), fn does not run and the stored result is
// returned, decoded from JSON as T; a fresh result goes through the same JSON
// round trip, so both paths return equal values. Step ids must be unique
// within an execution.
//
// fn's side effects are at least once: if the node dies after the effect and
// before the result is stored, fn runs again, with the next attempt number,
// on the node that takes over. Give the outside world an idempotency key such
// as ctx.ExecutionID() + "/" + stepID.
func Step[T any](ctx *Context, stepID string, fn func(context.Context) (T, error), opts ...StepOption) (T, error) {
	return step(ctx, stepID, fn, opts...)
}

// ownStep is a step of the engine's own (Sleep's wake-up time, a signal's
// deadline): what it journals is not the user's to stub.
func ownStep[T any](ctx *Context, stepID string, fn func(context.Context) (T, error)) (T, error) {
	return step(ctx, stepID, fn, func(o *stepOptions) { o.own = true })
}

func step[T any](ctx *Context, stepID string, fn func(context.Context) (T, error), opts ...StepOption) (T, error) {
	var zero T
	raw, err := ctx.step(stepID, func(c context.Context) (any, error) { return fn(c) }, opts)
	if err != nil {
		return zero, err
	}
	var out T
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			return zero, fmt.Errorf("decoding result of step %s: %w", stepID, err)
		}
	}
	return out, nil
}

// step runs or replays one journal entry and returns its JSON result.
func (c *Context) step(stepID string, fn func(context.Context) (any, error), opts []StepOption) (json.RawMessage, error) {
	var o stepOptions
	for _, opt := range opts {
		opt(&o)
	}
	attempts, err := c.claim(stepID)
	if err != nil {
		return nil, err
	}
	failed, crashed := 0, 0
	for _, a := range attempts {
		switch a.Status {
		case models.StepCompleted:
			return json.RawMessage(a.Output), nil
		case models.StepFailed:
			return nil, &StepError{StepID: stepID, Attempt: a.Attempt, Err: replayed(deref(a.Error), a.Output, o.declared)}
		case models.StepRetrying:
			failed++
		case models.StepRunning:
			crashed++ // its node died before it ended
		}
	}
	if crashed >= c.x.engine.cfg.MaxStepCrashes {
		return nil, fmt.Errorf("step %s: %d attempts died with their node: %w", stepID, crashed, ErrTooManyCrashes)
	}
	attempt := len(attempts) + 1
	for {
		if err := c.stopped(); err != nil {
			return nil, err
		}
		run := fn
		if intercept := c.x.engine.cfg.InterceptStep; intercept != nil && !o.own {
			info := StepInfo{ExecutionID: c.x.id, StepID: stepID, Attempt: attempt}
			run = func(ctx context.Context) (any, error) { return intercept(ctx, info, fn) }
		}
		sc, st := c.beginStep(stepID, attempt, o.own) // telemetry.go
		out, runErr, err := sc.attempt(stepID, attempt, run, o.input)
		if err != nil {
			c.endStep(st, "", err)
			return nil, err
		}
		if runErr == nil {
			c.endStep(st, models.StepCompleted, nil)
			return out, nil
		}
		failed++
		status := models.StepRetrying
		if failed >= o.retry.attempts() || errors.Is(runErr, errUnstorable) || isNonRetryable(runErr) {
			// A result that cannot be stored fails the step at once: the
			// function succeeded, and running it again would repeat its effects.
			// A NonRetryable failure says retrying cannot help.
			status = models.StepFailed
		}
		failure, record := journal(runErr, o.declared)
		c.endStep(st, status, runErr)
		if err := c.finishAttempt(stepID, status, record, failure); err != nil {
			return nil, err
		}
		if status == models.StepFailed {
			return nil, &StepError{StepID: stepID, Attempt: attempt, Err: failure}
		}
		if err := c.pause(o.retry.backoff(failed)); err != nil {
			return nil, err
		}
		attempt++
	}
}

// attempt runs one attempt. runErr is fn's failure, or why its result cannot
// be stored; err means the workflow must stop (fenced, cancelled, shutting
// down).
func (c *Context) attempt(stepID string, attempt int, fn func(context.Context) (any, error), input any) (out json.RawMessage, runErr, err error) {
	e := c.x.engine
	previous := c.takePending()
	step, err := e.store.StartStep(c, repository.StartStepParams{
		ExecutionID: c.x.id, StepID: stepID, NodeID: e.cfg.NodeID, Attempt: attempt, Input: input, Previous: previous,
	})
	if err != nil {
		c.putBack(previous)
		return nil, nil, c.x.checkpointError(err)
	}
	c.record(*step)
	result, runErr := protect(c, fn)
	if cause := c.stopped(); cause != nil && runErr != nil {
		// Stopped mid-step, and the function gave up: the attempt has no
		// outcome. When the engine is stopping, say so, so that it does not
		// count as a crash. A function that returned success despite the stop
		// is journaled below: its effects happened.
		if errors.Is(cause, errShutdown) {
			_ = c.finishStep(context.WithoutCancel(c), step, models.StepCancelled, nil, cause)
		}
		return nil, nil, cause
	}
	if runErr != nil {
		return nil, runErr, nil
	}
	raw, err := repository.MarshalJSON("result of step "+stepID, result)
	if err != nil {
		return nil, fmt.Errorf("step %s: %w: %w", stepID, errUnstorable, err), nil
	}
	// The result is journaled with the next checkpoint (see Context.pending),
	// or at once while branches of Parallel or Map run: a sibling's long step
	// must not keep it unwritten.
	c.deferCompletion(repository.FinishStepParams{
		ExecutionID: c.x.id, StepExecutionID: step.StepExecutionID, NodeID: e.cfg.NodeID,
		Status: models.StepCompleted, Output: raw,
	})
	done := *step
	done.Status, done.Output = models.StepCompleted, raw
	c.record(done)
	if c.concurrent() {
		if err := c.flush(c); err != nil {
			return nil, nil, err
		}
	}
	return json.RawMessage(raw), nil, nil
}

// finishAttempt records the outcome of the step's current attempt.
func (c *Context) finishAttempt(stepID string, status models.StepStatus, output any, failure error) error {
	c.mu.Lock()
	attempts := c.journal[stepID]
	step := attempts[len(attempts)-1]
	c.mu.Unlock()
	if err := c.finishStep(c, &step, status, output, failure); err != nil {
		return c.x.checkpointError(err)
	}
	return nil
}

func (c *Context) finishStep(ctx context.Context, step *models.StepExecution, status models.StepStatus, output any, failure error) error {
	p := repository.FinishStepParams{
		ExecutionID: c.x.id, StepExecutionID: step.StepExecutionID, NodeID: c.x.engine.cfg.NodeID,
		Status: status, Output: output,
	}
	if failure != nil {
		p.Error = storableText(failure.Error())
	}
	// Queued completions go first: they happened before this outcome.
	if err := c.flush(ctx); err != nil {
		return err
	}
	if err := c.x.engine.store.FinishStep(ctx, p); err != nil {
		return err
	}
	done := *step
	done.Status = status
	if raw, ok := output.([]byte); ok {
		done.Output = raw
	}
	if failure != nil {
		done.Error = &p.Error
	}
	c.record(done)
	return nil
}

// protect runs a step function, turning a panic into its error.
func protect(ctx context.Context, fn func(context.Context) (any, error)) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("step panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return fn(ctx)
}

// wait sleeps d unless the workflow is stopped first. It writes the queued
// step completions before it waits.
func (c *Context) wait(d time.Duration) error {
	if err := c.flush(c); err != nil {
		return err
	}
	if d <= 0 {
		return c.stopped()
	}
	fired, stop := c.x.engine.cfg.Clock.NewTimer(d)
	defer stop()
	select {
	case <-fired:
		if c.x.timedOut() {
			return c.stopped()
		}
		return nil
	case <-c.Done():
		return c.stopped()
	case <-c.x.parent.Done(): // draining
		return c.stopped()
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
