package workflowtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
)

// MaxWait bounds every wait of a Tester: for a result, a timer, a signal's
// delivery or an engine to stop. A test that would wait longer fails (or gets
// an error) instead of hanging.
const MaxWait = 30 * time.Second

// The tester's engine settings: fast, so that work a stopped engine handed
// back is picked up at once. They are real time; only workflow waits follow
// the fake clock.
const (
	heartbeatInterval = 50 * time.Millisecond
	staleThreshold    = 500 * time.Millisecond
	pollInterval      = 20 * time.Millisecond
)

// Tester runs workflows for one test: a fresh in-memory database, an engine
// on a fake Clock, step stubs and step counters. Create it with New; it stops
// at the test's cleanup. Its methods are safe for concurrent use; those that
// fail the test (Advance, Signal, and Start and the functions built on it) must
// be called from the test's goroutine, as t.Fatalf must.
type Tester struct {
	t         testing.TB
	store     *repository.Storage
	clock     *Clock
	workflows []engine.Registrable

	mu      sync.Mutex
	node    *node // the engine running now
	nodes   int   // engines started so far, to name the next one
	stubs   map[string]func(context.Context) (any, error)
	runs    map[string]int
	restart *restartPoint // set by RunWithRestart until its step completes
}

// node is one engine and its Run.
type node struct {
	e    *engine.Engine
	stop context.CancelFunc
	done chan error // Run's result

	once sync.Once
	err  error
}

// restartPoint is where RunWithRestart stops the engine.
type restartPoint struct {
	executionID, stepID string
	reached             chan struct{}
}

// New returns a Tester running workflows: it opens a fresh in-memory SQLite
// database, registers the workflows with an engine whose clock is a fake one
// (reading the current time until advanced) and runs the engine in the
// background. At the test's cleanup it stops the engine, fails the test if
// Run returned an error, and closes the database.
func New(t testing.TB, workflows ...engine.Registrable) *Tester {
	t.Helper()
	ctx, cancel := bounded()
	defer cancel()
	store, err := repository.NewInMemory(ctx)
	if err != nil {
		t.Fatalf("workflowtest: opening in-memory storage: %v", err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("workflowtest: closing storage: %v", err)
		}
	})
	tt := &Tester{
		t:         t,
		store:     store,
		clock:     NewClock(time.Now()),
		workflows: workflows,
		stubs:     map[string]func(context.Context) (any, error){},
		runs:      map[string]int{},
	}
	n, err := tt.startEngine()
	if err != nil {
		t.Fatalf("workflowtest: %v", err)
	}
	tt.node = n
	t.Cleanup(func() {
		tt.mu.Lock()
		n := tt.node
		tt.mu.Unlock()
		if err := n.halt(); err != nil {
			t.Errorf("workflowtest: %v", err)
		}
	})
	return tt
}

// startEngine creates an engine on the tester's storage, clock and
// interceptor, registers the workflows and starts its Run.
func (tt *Tester) startEngine() (*node, error) {
	tt.mu.Lock()
	tt.nodes++
	nodeID := fmt.Sprintf("workflowtest-%d", tt.nodes)
	tt.mu.Unlock()
	e := engine.New(tt.store, engine.Config{
		NodeID:            nodeID,
		HeartbeatInterval: heartbeatInterval,
		StaleThreshold:    staleThreshold,
		PollInterval:      pollInterval,
		Clock:             tt.clock,
		InterceptStep:     tt.intercept,
	})
	if err := e.Register(tt.workflows...); err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	n := &node{e: e, stop: stop, done: make(chan error, 1)}
	go func() { n.done <- e.Run(ctx) }()
	return n, nil
}

// halt stops the engine's Run and waits for it, at most MaxWait. It may be
// called more than once.
func (n *node) halt() error {
	n.once.Do(func() {
		n.stop()
		select {
		case err := <-n.done:
			if err != nil {
				n.err = fmt.Errorf("engine %s: Run: %w", n.e.NodeID(), err)
			}
		case <-time.After(MaxWait):
			n.err = fmt.Errorf("engine %s did not stop within %s", n.e.NodeID(), MaxWait)
		}
	})
	return n.err
}

// restartEngine stops the running engine gracefully (it journals what
// completed and hands its executions back) and starts a fresh one on the same
// storage, clock, stubs and counters, which resumes them.
func (tt *Tester) restartEngine() error {
	tt.mu.Lock()
	old := tt.node
	tt.mu.Unlock()
	if err := old.halt(); err != nil {
		return err
	}
	n, err := tt.startEngine()
	if err != nil {
		return err
	}
	tt.mu.Lock()
	tt.node = n
	tt.mu.Unlock()
	return nil
}

// Engine returns the engine running now (a new one after RunWithRestart), for
// what the Tester does not wrap: Cancel, Await, the untyped Start.
func (tt *Tester) Engine() *engine.Engine {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.node.e
}

// Storage returns the tester's database, to read executions and the journal
// or to seed data.
func (tt *Tester) Storage() *repository.Storage { return tt.store }

// Clock returns the fake clock the engine waits by.
func (tt *Tester) Clock() *Clock { return tt.clock }

// Advance waits until some timer is due within d (a workflow has reached its
// Sleep, AwaitSignal timeout or retry backoff), then moves the clock d forward,
// firing every timer due by then. d must be positive. It fails the test if no
// timer comes due within MaxWait; to move the clock without waiting, call
// Clock().Advance. Any due timer ends the wait: with several workflows in
// flight, let each reach its wait first (Result of the others, or
// Clock().BlockUntil with the number of timers expected).
func (tt *Tester) Advance(d time.Duration) {
	tt.t.Helper()
	if d <= 0 {
		tt.t.Fatalf("workflowtest: Advance(%s): d must be positive", d)
	}
	ctx, cancel := bounded()
	defer cancel()
	if err := tt.clock.waitDue(ctx, d); err != nil {
		tt.t.Fatalf("workflowtest: Advance(%s): no timer came due within %s (%d pending): %v", d, d, tt.clock.Pending(), err)
	}
	tt.clock.Advance(d)
}

// Signal sends the signal name with payload to an execution, as
// Engine.Signal does; AwaitSignal receives it whether it waits already or
// later. It fails the test if the signal cannot be sent (the execution is
// unknown or has ended).
func (tt *Tester) Signal(executionID, name string, payload any) {
	tt.t.Helper()
	ctx, cancel := bounded()
	defer cancel()
	if err := tt.Engine().Signal(ctx, executionID, name, payload); err != nil {
		tt.t.Fatalf("workflowtest: signalling %s to %s: %v", name, executionID, err)
	}
}

// StubStep makes every later attempt of step stepID, in every execution, call
// fn instead of the step's function. fn's result is journaled as the step's,
// after a JSON round trip into the step's result type, so it must encode to a
// value of that type; its error fails the attempt (retried by the step's
// policy). Stub calls are not counted by StepRuns. A nil fn removes the stub.
func (tt *Tester) StubStep(stepID string, fn func(ctx context.Context) (any, error)) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if fn == nil {
		delete(tt.stubs, stepID)
		return
	}
	tt.stubs[stepID] = fn
}

// StepRuns returns how often the function of step stepID has run: every
// attempt, in every execution, across RunWithRestart's restart. A replayed
// step does not run, and a stubbed one runs its stub, so neither counts.
func (tt *Tester) StepRuns(stepID string) int {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.runs[stepID]
}

// intercept is every engine's engine.StepInterceptor: it runs the stub or the
// step's function, counts the latter, and stops the engine where
// RunWithRestart asked.
func (tt *Tester) intercept(ctx context.Context, step engine.StepInfo, next func(context.Context) (any, error)) (any, error) {
	tt.mu.Lock()
	stub := tt.stubs[step.StepID]
	if stub != nil {
		next = stub
	} else {
		tt.runs[step.StepID]++
	}
	tt.mu.Unlock()
	out, err := next(ctx)
	if err == nil {
		tt.stepCompleted(step)
	}
	return out, err
}

// stepCompleted stops the running engine if RunWithRestart waits for this
// step. The stop takes effect at the workflow's next step or wait; the
// step's result is journaled first.
func (tt *Tester) stepCompleted(step engine.StepInfo) {
	tt.mu.Lock()
	p := tt.restart
	if p == nil || p.executionID != step.ExecutionID || p.stepID != step.StepID {
		tt.mu.Unlock()
		return
	}
	tt.restart = nil
	stop := tt.node.stop
	tt.mu.Unlock()
	stop()
	close(p.reached)
}

// bounded returns a context that ends after MaxWait.
func bounded() (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(context.Background(), MaxWait, fmt.Errorf("workflowtest: gave up after %s", MaxWait))
}
