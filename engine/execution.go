package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// execution is one execution in flight on this node.
type execution struct {
	engine *Engine
	id     string
	exec   *models.WorkflowExecution
	ctx    context.Context
	cancel context.CancelCauseFunc
	// parent is Run's context: once it ends, the engine is stopping.
	parent context.Context
	// deadline is when the workflow times out (WithTimeout); zero if never.
	deadline time.Time
	// returned is set once the workflow function has returned: the run
	// only writes its end now, and an "ended" event is most likely its own.
	returned atomic.Bool
	// timeoutAt is deadline on the engine's Clock, where the timeout's timer
	// waits; zero if never.
	timeoutAt time.Time
	// fresh says the run is the first, from Start: nothing journaled yet,
	// and the labels are those it was created with.
	fresh bool
	// last is the completion finish writes with the end.
	last *repository.FinishStepParams
	// result is the execution as finish left it, for Await (fresh runs only).
	result *models.WorkflowExecution
	// reclaimed is a claim of the execution made by this node while this
	// run, parked, had not returned yet: resume runs it once this run has
	// returned. Guarded by the engine's mu.
	reclaimed *models.WorkflowExecution
	tel       runTelemetry // the run's span and metric attributes (telemetry.go)
}

// newExecution prepares a run: parent is Run's context, whose end stops the
// workflow at its next step or wait; work, which ends DrainTimeout later, is
// the context of its steps; fresh says it is the first run, from Start.
func newExecution(e *Engine, parent, work context.Context, exec *models.WorkflowExecution, fresh bool) *execution {
	work, tel := e.tel.beginRun(work, exec, e.cfg.NodeID, fresh)
	ctx, cancel := context.WithCancelCause(work)
	return &execution{engine: e, id: exec.ExecutionID, exec: exec, ctx: ctx, cancel: cancel, parent: parent, tel: tel, fresh: fresh}
}

// stop ends the workflow's context with a cause; the workflow notices at its
// next step, or at once when it waits in Sleep or AwaitSignal.
func (x *execution) stop(cause error) { x.cancel(cause) }

// isParked reports whether the run stopped because the execution was parked.
func (x *execution) isParked() bool { return errors.Is(context.Cause(x.ctx), errParked) }

// cause is why the workflow's context ended: errShutdown when the engine is
// stopping, else what stopped it.
func (x *execution) cause() error {
	if x.ctx.Err() == nil {
		if x.parent.Err() != nil {
			return errShutdown // draining: no new step, no wait
		}
		return nil
	}
	cause := context.Cause(x.ctx)
	if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) {
		return errShutdown // Run's context ended
	}
	return cause
}

func (x *execution) logger() *slog.Logger {
	return x.engine.log.With(slog.String("execution_id", x.id))
}

// run executes the workflow to its end, or until it is stopped. It reports
// whether the run must be tried again later because the storage failed.
func (x *execution) run() (retry bool) {
	defer x.cancel(nil)
	defer func() { x.endRun(retry) }()
	e := x.engine
	log := x.logger()
	reg, ok := e.registration(x.exec.DefinitionID, x.exec.DefinitionVersion)
	if !ok {
		return x.finish(models.ExecutionFailed, nil, fmt.Errorf("%s@%s on node %s: %w",
			x.exec.DefinitionID, x.exec.DefinitionVersion, e.cfg.NodeID, ErrNotRegistered))
	}
	// The first checkpoint makes the execution RUNNING; a timeout needs
	// started_at before that.
	if reg.timeout > 0 {
		if err := x.markRunning(); err != nil {
			log.LogAttrs(x.ctx, slog.LevelInfo, "not starting execution", slog.String("reason", err.Error()))
			return transient(err) && x.ctx.Err() == nil
		}
	}
	// Completions a failed write kept from an earlier run go in first.
	if err := x.writeCarried(); err != nil {
		log.LogAttrs(x.ctx, slog.LevelWarn, "writing kept step completions", slog.String("error", err.Error()))
		return transient(err) && x.ctx.Err() == nil
	}
	var history []models.StepExecution
	if !x.fresh {
		var err error
		if history, err = e.store.GetStepExecutionHistory(x.ctx, x.id); err != nil {
			log.LogAttrs(x.ctx, slog.LevelWarn, "reading journal", slog.String("error", err.Error()))
			return x.ctx.Err() == nil
		}
		x.noteJournal(history)
	}
	if reg.timeout > 0 {
		var stopTimer context.CancelFunc
		// started_at is the database's time: what is left is measured on the
		// wall clock, and only waited out on the engine's Clock.
		x.deadline = x.exec.StartedAt.Add(reg.timeout)
		left := time.Until(x.deadline)
		x.timeoutAt = e.cfg.Clock.Now().Add(left)
		x.ctx, stopTimer = withTimeout(x.ctx, e.cfg.Clock, left, ErrTimedOut)
		defer stopTimer()
	}
	wctx := newContext(x, history)
	output, err := x.call(reg.fn, wctx)
	x.returned.Store(true)
	// Journal what completed, whatever stopped the run: it must not run
	// again. A write that fails keeps the completions for the next run here.
	// The last completion of a run that goes on to end the execution is
	// written with the end, in one commit.
	var last *repository.FinishStepParams
	if x.cause() == nil {
		last = wctx.takeLastPending()
	}
	flushErr := x.flushAll(wctx)
	// What stopped the run decides, not the error the workflow returned: a
	// workflow may return an error that wraps ErrCancelled while nobody
	// cancelled it, and that is its failure.
	cause := x.cause()
	if errors.Is(cause, errShutdown) && err == nil && x.ctx.Err() == nil && flushErr == nil {
		cause = nil // it returned while the engine drained: it is done
	}
	if cause == nil && flushErr != nil {
		cause = flushErr
	}
	if last != nil && cause != nil && !errors.Is(cause, ErrTimedOut) {
		// Not ending after all: the completion is written on its own.
		wctx.deferCompletion(*last)
		last = nil
		if err := x.flushAll(wctx); err != nil && !errors.Is(cause, errParked) {
			cause = err
		}
	}
	x.last = last
	switch {
	case errors.Is(cause, ErrTimedOut):
		return x.finish(models.ExecutionTimedOut, nil, fmt.Errorf("%w after %s", ErrTimedOut, reg.timeout))
	case errors.Is(cause, errParked):
		return false
	case cause != nil:
		log.LogAttrs(context.Background(), slog.LevelInfo, "execution stopped", slog.String("cause", cause.Error()))
		return errors.Is(cause, errStorage)
	case err != nil:
		return x.finish(models.ExecutionFailed, nil, err)
	}
	return x.finish(models.ExecutionCompleted, output, nil)
}

// timedOut reports whether the workflow's timeout is due on the Clock, and
// if so stops the run with it: a wait whose timer fired together with the
// timeout's must not let the workflow go on before the timeout's own
// goroutine has stopped it.
func (x *execution) timedOut() bool {
	if x.timeoutAt.IsZero() || x.engine.cfg.Clock.Now().Before(x.timeoutAt) {
		return false
	}
	x.stop(ErrTimedOut)
	return true
}

// flushAll journals the queued completions. When the engine stops, no later
// run here will write them: it tries a few more times before the process
// goes away. What it cannot write is kept for the next run here.
func (x *execution) flushAll(wctx *Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.ctx), finishTimeout)
	defer cancel()
	err := wctx.flush(ctx)
	for pause := 50 * time.Millisecond; err != nil && errors.Is(x.cause(), errShutdown) && pause <= time.Second && ctx.Err() == nil; pause *= 2 {
		time.Sleep(pause)
		err = wctx.flush(ctx)
	}
	if err != nil {
		x.engine.carry(x.id, wctx.takeAllPending())
	}
	return err
}

// transient reports whether a failed storage call may succeed if tried again:
// anything but fencing, a missing row and bad input.
func transient(err error) bool {
	return !errors.Is(err, repository.ErrConcurrentUpdate) && !errors.Is(err, repository.ErrNotFound) &&
		!errors.Is(err, repository.ErrInvalidArgument) && !errors.Is(err, ErrOwnershipLost)
}

// markRunning moves a PENDING execution to RUNNING, fenced by ownership, and
// reads it back for started_at: only a workflow with a timeout needs that
// before its first step (which otherwise makes it RUNNING).
func (x *execution) markRunning() error {
	store := x.engine.store
	for tries := 0; x.exec.Status != models.ExecutionRunning; tries++ {
		version := int64(x.exec.Version)
		err := store.UpdateExecutionStatusWithVersion(x.ctx, x.id, models.ExecutionRunning, &version)
		if err == nil {
			x.exec.Status = models.ExecutionRunning
			x.exec.Version++
			break
		}
		if !errors.Is(err, repository.ErrConcurrentUpdate) || tries >= markRunningTries {
			return err
		}
		// The version moved since the claim: this node's own sweep may have
		// claimed it again (its heartbeat lapsed). Ownership decides, not
		// the version read: go on if the execution is still this node's.
		cur, err := store.GetExecution(x.ctx, x.id)
		if err != nil {
			return err
		}
		if cur.Status.Terminal() || cur.NodeID == nil || *cur.NodeID != x.engine.cfg.NodeID {
			return ErrOwnershipLost
		}
		x.exec = cur
	}
	cur, err := store.GetExecution(x.ctx, x.id)
	if err != nil {
		return err
	}
	if cur.NodeID == nil || *cur.NodeID != x.engine.cfg.NodeID || cur.Status != models.ExecutionRunning || cur.StartedAt == nil {
		return ErrOwnershipLost
	}
	x.exec = cur
	return nil
}

// release hands the execution back when the engine stops, so that any node
// resumes it at its next sweep instead of after the stale threshold. If the
// write fails, the execution goes stale and is taken over then.
func (x *execution) release() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.ctx), finishTimeout)
	defer cancel()
	if err := x.engine.store.ReleaseExecution(ctx, x.id, x.engine.cfg.NodeID); err != nil {
		x.logger().LogAttrs(ctx, slog.LevelInfo, "releasing execution", slog.String("error", err.Error()))
		return
	}
	x.logger().LogAttrs(ctx, slog.LevelDebug, "execution handed back")
}

// markRunningTries bounds the re-reads of markRunning when the execution
// keeps changing under it.
const markRunningTries = 5

// writeCarried writes the step completions an earlier run of this execution
// here could not write.
func (x *execution) writeCarried() error {
	for _, p := range x.engine.takeCarried(x.id) {
		if err := x.engine.store.FinishStep(x.ctx, p); err != nil {
			if !errors.Is(err, repository.ErrConcurrentUpdate) {
				x.engine.carry(x.id, []repository.FinishStepParams{p})
			}
			return err
		}
	}
	return nil
}

// call runs the workflow function, turning a panic into an error.
func (x *execution) call(fn WorkflowFunc, wctx *Context) (output any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("workflow panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return fn(wctx, json.RawMessage(x.exec.Input))
}

// finishTimeout bounds the final write, which must not depend on a context
// that may have ended (a timeout ends the workflow's own).
const finishTimeout = 30 * time.Second

// finish stores the execution's end. It reports whether the write must be
// tried again later (the storage failed; the execution is still owned here).
func (x *execution) finish(status models.ExecutionStatus, output any, failure error) (retry bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.ctx), finishTimeout)
	defer cancel()
	var ended models.WorkflowExecution
	p := repository.FinishExecutionParams{
		ExecutionID: x.id, NodeID: x.engine.cfg.NodeID, Status: status, Output: output,
		Previous: x.last, Finished: &ended,
	}
	if failure != nil {
		p.Error = storableText(failure.Error())
	}
	err := x.engine.store.FinishExecution(ctx, p)
	if errors.Is(err, repository.ErrInvalidArgument) {
		// The database cannot store the output (JSON cannot encode it, or it
		// holds a NUL): that is the workflow's failure, not a reason to run
		// it again.
		p.Status, p.Output = models.ExecutionFailed, nil
		p.Error = storableText(fmt.Sprintf("workflow %v: %v", errUnstorable, err))
		err = x.engine.store.FinishExecution(ctx, p)
	}
	x.finishedRun(p.Status, p.Error, err == nil)
	log := x.logger()
	if err != nil && x.last != nil {
		x.engine.carry(x.id, []repository.FinishStepParams{*x.last})
	}
	if err == nil && x.fresh {
		// Started here: its labels are known, and Await needs no read.
		ended.Labels = x.exec.Labels
		x.result = &ended
	}
	if err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "finishing execution", slog.String("status", string(status)), slog.String("error", err.Error()))
		return transient(err)
	}
	log.LogAttrs(ctx, slog.LevelInfo, "execution finished", slog.String("status", string(p.Status)))
	return false
}

// checkpointError turns a fenced write's miss into why this node lost the
// execution, and stops the workflow with it.
func (x *execution) checkpointError(err error) error {
	if !errors.Is(err, repository.ErrConcurrentUpdate) {
		if cause := x.cause(); cause != nil {
			return cause
		}
		if transient(err) {
			// Not this node's fault nor the workflow's: stop, keep the
			// execution, and resume it when the storage answers again.
			cause := fmt.Errorf("%w: %w", errStorage, err)
			x.stop(cause)
			return cause
		}
		return err
	}
	cause := x.engine.lostCause(context.WithoutCancel(x.ctx), x.id)
	if cause == nil {
		cause = ErrOwnershipLost
	}
	x.stop(cause)
	return fmt.Errorf("%w: %w", cause, err)
}
