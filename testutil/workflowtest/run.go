package workflowtest

import (
	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
)

// Start starts an execution of w with input in on the tester's engine and
// returns its handle; w must be among the workflows given to New. It fails
// the test if the execution cannot be started.
func Start[In, Out any](tt *Tester, w *engine.Workflow[In, Out], in In, opts ...engine.StartOption) *engine.Handle[Out] {
	tt.t.Helper()
	ctx, cancel := bounded()
	defer cancel()
	h, err := w.Start(ctx, tt.Engine(), in, opts...)
	if err != nil {
		tt.t.Fatalf("workflowtest: starting %s@%s: %v", w.ID(), w.Version(), err)
	}
	return h
}

// Result waits, at most MaxWait, for the execution's end and returns what
// Handle.Result returns: the output, or a *engine.WorkflowError for an
// execution that ended FAILED, CANCELLED or TIMED_OUT. After MaxWait the error
// says the tester gave up.
func Result[Out any](tt *Tester, h *engine.Handle[Out]) (Out, error) {
	ctx, cancel := bounded()
	defer cancel()
	return h.Result(ctx)
}

// Run starts an execution of w and waits for its result: Start, then Result.
// A workflow that waits for the clock needs Start, Advance and Result instead.
func Run[In, Out any](tt *Tester, w *engine.Workflow[In, Out], in In, opts ...engine.StartOption) (Out, error) {
	tt.t.Helper()
	return Result(tt, Start(tt, w, in, opts...))
}

// RunWithRestart runs an execution of w like Run, but stops the engine
// gracefully right after step afterStep first completes in it, then starts a
// fresh engine on the same database, clock, stubs and counters, which resumes
// the execution from its journal; it returns the execution's result. Every
// execution of the tester is stopped and resumed alike. StepRuns then shows
// that the steps completed before the stop did not run again. The test fails
// if the execution ends before afterStep completes. Only one RunWithRestart
// may run at a time. The test's goroutine waits inside it, so a workflow that
// waits for the clock or a signal gets them from another goroutine, with
// Clock().BlockUntil and Clock().Advance or Engine().Signal.
func RunWithRestart[In, Out any](tt *Tester, w *engine.Workflow[In, Out], in In, afterStep string, opts ...engine.StartOption) (Out, error) {
	tt.t.Helper()
	// The execution id must be known before Start returns: the step may
	// complete first.
	var nx repository.NewExecution
	for _, opt := range opts {
		opt(&nx)
	}
	id := nx.ExecutionID
	if id == "" {
		id = repository.NewID()
		opts = append(opts, engine.WithExecutionID(id))
	}
	p := &restartPoint{executionID: id, stepID: afterStep, reached: make(chan struct{})}
	tt.mu.Lock()
	busy := tt.restart != nil
	if !busy {
		tt.restart = p
	}
	tt.mu.Unlock()
	if busy {
		tt.t.Fatalf("workflowtest: RunWithRestart: another RunWithRestart is running")
	}
	defer func() {
		tt.mu.Lock()
		if tt.restart == p {
			tt.restart = nil
		}
		tt.mu.Unlock()
	}()

	h := Start(tt, w, in, opts...)
	type result struct {
		out Out
		err error
	}
	ended := make(chan result, 1)
	go func() {
		// The handle reads the database, so it sees the end whichever
		// engine runs the execution.
		out, err := Result(tt, h)
		ended <- result{out, err}
	}()
	select {
	case <-p.reached:
	case r := <-ended:
		tt.t.Errorf("workflowtest: RunWithRestart: execution %s ended before step %q completed, so it was not restarted", id, afterStep)
		return r.out, r.err
	}
	if err := tt.restartEngine(); err != nil {
		tt.t.Fatalf("workflowtest: RunWithRestart: restarting the engine: %v", err)
	}
	r := <-ended
	return r.out, r.err
}
