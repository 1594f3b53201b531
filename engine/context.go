package engine

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Context is the context.Context a workflow function runs with. It is done
// when the execution is cancelled, times out, is taken over by another node or
// its engine stops; context.Cause tells which. It also carries the execution's
// journal, which Step, Sleep and AwaitSignal consult so that a resumed
// workflow gets the results of its completed steps instead of running them
// again. It is safe for use by the goroutines of Parallel and Map.
type Context struct {
	context.Context
	x *execution
	*shared
	// scope prefixes the step ids numbered by call order (AwaitSignal's):
	// empty in the workflow function, "branch:<i>/" added by each level of
	// Parallel or Map, so that concurrent branches number their calls apart.
	scope string
}

// shared is the state of one run, shared by its Context and the Contexts of
// its Parallel and Map branches.
type shared struct {
	mu      sync.Mutex
	journal map[string][]models.StepExecution // attempts of each step id, in order
	used    map[string]bool                   // step ids used in this run
	waits   map[[2]string]int                 // AwaitSignal calls per scope and signal name
	// pending holds completions of steps not yet written: each rides along
	// with the next checkpoint, so a step costs one commit. Only deterministic
	// workflow code runs between a step and the next checkpoint, and every
	// wait writes them first.
	pending []repository.FinishStepParams
	// branches counts the Parallel and Map goroutines running now.
	branches int
}

// concurrent reports whether branches of Parallel or Map are running.
func (c *Context) concurrent() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.branches > 0
}

func (c *Context) addBranches(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.branches += n
}

// branch returns the Context of branch i of a Parallel or Map called with c:
// the same run, journal and pending completions, with automatic step ids of
// its own.
func (c *Context) branch(i int) *Context {
	return &Context{Context: c.Context, x: c.x, shared: c.shared, scope: c.scope + "branch:" + strconv.Itoa(i) + "/"}
}

func newContext(x *execution, history []models.StepExecution) *Context {
	c := &Context{Context: x.ctx, x: x, shared: &shared{journal: map[string][]models.StepExecution{}, used: map[string]bool{}, waits: map[[2]string]int{}}}
	for _, h := range history {
		c.journal[h.StepID] = append(c.journal[h.StepID], h)
	}
	return c
}

// ExecutionID returns the id of the running execution. With a step id it makes
// an idempotency key for the step's side effects.
func (c *Context) ExecutionID() string { return c.x.id }

// NodeID returns the id of the node running the workflow now.
func (c *Context) NodeID() string { return c.x.engine.cfg.NodeID }

// claim reserves stepID for this run and returns its journal so far.
func (c *Context) claim(stepID string) ([]models.StepExecution, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used[stepID] {
		return nil, fmt.Errorf("step %q: %w", stepID, ErrDuplicateStep)
	}
	c.used[stepID] = true
	return c.journal[stepID], nil
}

func (c *Context) record(step models.StepExecution) {
	c.mu.Lock()
	defer c.mu.Unlock()
	attempts := c.journal[step.StepID]
	for i := range attempts {
		if attempts[i].StepExecutionID == step.StepExecutionID {
			attempts[i] = step
			return
		}
	}
	c.journal[step.StepID] = append(attempts, step)
}

// nextWait numbers the AwaitSignal calls of one signal name in c's scope, so
// that a replay meets its journal entries in the same order. Each branch of
// Parallel or Map has a scope of its own, whatever order its goroutines run in.
func (c *Context) nextWait(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := [2]string{c.scope, name}
	c.waits[key]++
	return c.waits[key]
}

// autoID returns the step id of a call numbered by nextWait: id itself in the
// workflow function, as journals written before branches had scopes, and id
// prefixed with the branch path ("branch:1/branch:0/signal:x:1") in Parallel
// and Map.
func (c *Context) autoID(id string) string { return c.scope + id }

// stopped returns why the workflow must stop now, or nil.
func (c *Context) stopped() error { return c.x.cause() }

// defer queues a step's completion for the next checkpoint.
func (c *Context) deferCompletion(p repository.FinishStepParams) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, p)
}

// takePending removes one queued completion, if any, to ride along with a
// checkpoint; putBack returns it when that checkpoint failed.
func (c *Context) takePending() *repository.FinishStepParams {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil
	}
	p := c.pending[0]
	c.pending = c.pending[1:]
	return &p
}

func (c *Context) putBack(p *repository.FinishStepParams) {
	if p == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append([]repository.FinishStepParams{*p}, c.pending...)
}

// takeLastPending removes and returns the newest queued completion, if any.
func (c *Context) takeLastPending() *repository.FinishStepParams {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.pending)
	if n == 0 {
		return nil
	}
	p := c.pending[n-1]
	c.pending = c.pending[:n-1]
	return &p
}

// takeAllPending removes and returns every queued completion.
func (c *Context) takeAllPending() []repository.FinishStepParams {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending
	c.pending = nil
	return p
}

// flush writes every queued completion.
func (c *Context) flush(ctx context.Context) error {
	for p := c.takePending(); p != nil; p = c.takePending() {
		if err := c.x.engine.store.FinishStep(ctx, *p); err != nil {
			c.putBack(p)
			return c.x.checkpointError(err)
		}
	}
	return nil
}
