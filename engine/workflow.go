package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// WorkflowFunc is an untyped workflow, for tools that do not know its types
// at compile time (see Dynamic): its input is the stored JSON, and its return
// value becomes the execution's output.
type WorkflowFunc func(ctx *Context, input json.RawMessage) (any, error)

// Registrable is what Engine.Register takes: a *Workflow from Define, or an
// untyped workflow from Dynamic.
type Registrable interface {
	registration() (*registration, error)
}

// registration is a workflow as an engine knows it; each engine keeps its own
// copy, so one Workflow may be registered with several engines.
type registration struct {
	def     models.WorkflowDefinition
	fn      WorkflowFunc
	timeout time.Duration
	// saved: this engine has seen the definition stored, so Start need not
	// make sure of it again.
	saved bool
}

// DefineOption configures a workflow definition.
type DefineOption func(*defineOptions)

type defineOptions struct {
	name    string
	spec    models.JSON
	timeout time.Duration
}

// WithTimeout ends every execution of the workflow TIMED_OUT once d has passed
// since it started running, wherever it runs.
func WithTimeout(d time.Duration) DefineOption {
	return func(o *defineOptions) { o.timeout = d }
}

// WithName sets the definition's human name; the default is its id.
func WithName(name string) DefineOption {
	return func(o *defineOptions) { o.name = name }
}

// WithSpec sets the stored definition document, for people and tools that
// read the definitions table. The engine reads only "timeout" from it (a Go
// duration such as "10m"), and WithTimeout takes precedence.
func WithSpec(spec models.JSON) DefineOption {
	return func(o *defineOptions) { o.spec = spec }
}

// Workflow is a typed workflow: its function takes an In and returns an Out,
// both stored as JSON. Define one per workflow, register it with each engine
// that runs it, and start executions through it.
type Workflow[In, Out any] struct {
	reg *registration
	err error // what Define found wrong, reported by Register and Start
}

var _ Registrable = (*Workflow[int, int])(nil)

// Define declares a workflow: fn, under the definition id@version. A resumed
// execution decodes its stored input as In and runs fn again from the top;
// see the package documentation for what a workflow may do between steps.
// Mistakes (an empty id, a nil fn, a bad spec) are reported by Register and
// Start.
func Define[In, Out any](id, version string, fn func(ctx *Context, in In) (Out, error), opts ...DefineOption) *Workflow[In, Out] {
	var o defineOptions
	for _, opt := range opts {
		opt(&o)
	}
	var untyped WorkflowFunc
	if fn != nil {
		untyped = func(ctx *Context, input json.RawMessage) (any, error) {
			var in In
			if len(input) > 0 {
				if err := json.Unmarshal(input, &in); err != nil {
					return nil, fmt.Errorf("decoding the input of %s@%s: %w", id, version, err)
				}
			}
			return fn(ctx, in)
		}
	}
	def := models.WorkflowDefinition{ID: id, Version: version, Name: o.name, Spec: o.spec}
	reg, err := newRegistration(def, untyped, o.timeout)
	return &Workflow[In, Out]{reg: reg, err: err}
}

// Dynamic declares an untyped workflow from a definition and a function, for
// tools that load workflows at run time. def.Spec may hold {"timeout": "10m"}.
func Dynamic(def models.WorkflowDefinition, fn WorkflowFunc) Registrable {
	reg, err := newRegistration(def, fn, 0)
	return dynamic{reg: reg, err: err}
}

type dynamic struct {
	reg *registration
	err error
}

func (d dynamic) registration() (*registration, error) { return d.reg, d.err }

func (w *Workflow[In, Out]) registration() (*registration, error) {
	if w == nil {
		return nil, fmt.Errorf("nil workflow: %w", repository.ErrInvalidArgument)
	}
	return w.reg, w.err
}

// definitionSpec is what the engine reads from a definition's Spec.
type definitionSpec struct {
	// Timeout ends an execution TIMED_OUT this long after it started, as a Go
	// duration ("30s", "10m").
	Timeout string `json:"timeout"`
}

// newRegistration checks a definition; a timeout > 0 overrides the spec's.
func newRegistration(def models.WorkflowDefinition, fn WorkflowFunc, timeout time.Duration) (*registration, error) {
	if def.ID == "" || def.Version == "" || fn == nil {
		return nil, fmt.Errorf("defining workflow %q@%q: id, version and function are required: %w", def.ID, def.Version, repository.ErrInvalidArgument)
	}
	if timeout < 0 {
		return nil, fmt.Errorf("defining workflow %s@%s: negative timeout %s: %w", def.ID, def.Version, timeout, repository.ErrInvalidArgument)
	}
	if def.Name == "" {
		def.Name = def.ID
	}
	reg := &registration{def: def, fn: fn, timeout: timeout}
	if len(def.Spec) > 0 {
		var spec definitionSpec
		if err := json.Unmarshal(def.Spec, &spec); err != nil {
			return nil, fmt.Errorf("defining workflow %s@%s: spec: %w: %w", def.ID, def.Version, repository.ErrInvalidArgument, err)
		}
		if spec.Timeout != "" && timeout == 0 {
			d, err := time.ParseDuration(spec.Timeout)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("defining workflow %s@%s: timeout %q: %w", def.ID, def.Version, spec.Timeout, repository.ErrInvalidArgument)
			}
			reg.timeout = d
		}
	}
	return reg, nil
}

// ID returns the workflow's definition id.
func (w *Workflow[In, Out]) ID() string { return w.reg.def.ID }

// Version returns the workflow's definition version.
func (w *Workflow[In, Out]) Version() string { return w.reg.def.Version }

// Start records a new execution of the workflow with input in and returns its
// handle. The definition is stored with it if the database lacks it. If e's
// Run is going, the workflow is registered with e and a slot is free, it runs
// on e at once; otherwise any engine that registered it picks it up. Input
// that cannot be stored is ErrInvalidArgument, and nothing is written.
func (w *Workflow[In, Out]) Start(ctx context.Context, e *Engine, in In, opts ...StartOption) (*Handle[Out], error) {
	reg, err := w.registration()
	if err != nil {
		return nil, err
	}
	input, err := repository.EncodeJSON("input of "+reg.def.ID+"@"+reg.def.Version, in)
	if err != nil {
		return nil, err
	}
	id, err := e.start(ctx, &reg.def, reg.def.ID, reg.def.Version, input, opts)
	if err != nil {
		return nil, err
	}
	return w.Handle(e, id), nil
}

// StartTx records a new execution of the workflow in the caller's
// transaction tx (from db.Transaction or db.Begin on the database e's storage
// uses), with the definition if the database lacks it: the execution exists
// if and only if tx commits, and a running engine picks it up within its
// PollInterval of the commit. WithExecutionID is idempotent here as in Start.
func (w *Workflow[In, Out]) StartTx(ctx context.Context, e *Engine, tx *gorm.DB, in In, opts ...StartOption) (*Handle[Out], error) {
	reg, err := w.registration()
	if err != nil {
		return nil, err
	}
	if tx == nil {
		return nil, fmt.Errorf("starting %s@%s: nil transaction: %w", reg.def.ID, reg.def.Version, repository.ErrInvalidArgument)
	}
	input, err := repository.EncodeJSON("input of "+reg.def.ID+"@"+reg.def.Version, in)
	if err != nil {
		return nil, err
	}
	store, err := repository.InTransaction(tx)
	if err != nil {
		return nil, fmt.Errorf("starting %s@%s: %w", reg.def.ID, reg.def.Version, err)
	}
	def := reg.def
	nx := newExecutionInput(reg.def.ID, reg.def.Version, input, opts)
	nx.Definition = &def
	nx.Metadata = traceMetadata(ctx) // runs link to the caller's trace
	exec, err := create(ctx, store, nx)
	if err != nil {
		return nil, err
	}
	e.tel.startedExecution(ctx, exec)
	return w.Handle(e, nx.ExecutionID), nil
}

// Handle returns the handle of an existing execution of the workflow, to wait
// for its result from anywhere.
func (w *Workflow[In, Out]) Handle(e *Engine, executionID string) *Handle[Out] {
	return &Handle[Out]{e: e, id: executionID}
}

// Handle is one execution of a typed workflow.
type Handle[Out any] struct {
	e  *Engine
	id string
}

// ID returns the execution id.
func (h *Handle[Out]) ID() string { return h.id }

// Execution returns the execution as stored now, with its labels.
func (h *Handle[Out]) Execution(ctx context.Context) (*models.WorkflowExecution, error) {
	return h.e.store.GetExecution(ctx, h.id)
}

// Result waits until the execution ends and returns its output. An execution
// that ended FAILED, CANCELLED or TIMED_OUT returns a *WorkflowError (for the
// last two, errors.Is(err, ErrCancelled) and errors.Is(err, ErrTimedOut)
// hold); errors of ctx and of the storage come as they are.
func (h *Handle[Out]) Result(ctx context.Context) (Out, error) {
	var out Out
	exec, err := h.e.Await(ctx, h.id)
	if err != nil {
		return out, err
	}
	if exec.Status != models.ExecutionCompleted {
		return out, &WorkflowError{ExecutionID: h.id, Status: exec.Status, Message: deref(exec.Error)}
	}
	if len(exec.Output) > 0 {
		if err := json.Unmarshal(exec.Output, &out); err != nil {
			return out, fmt.Errorf("decoding the output of execution %s: %w", h.id, err)
		}
	}
	return out, nil
}

// WorkflowError is the outcome of an execution that did not complete: it
// ended FAILED (Message is the stored error), CANCELLED or TIMED_OUT.
type WorkflowError struct {
	ExecutionID string
	Status      models.ExecutionStatus
	Message     string
}

// Error says which execution ended how, and why.
func (e *WorkflowError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("execution %s ended %s", e.ExecutionID, e.Status)
	}
	return fmt.Sprintf("execution %s ended %s: %s", e.ExecutionID, e.Status, e.Message)
}

// Is makes errors.Is(err, ErrCancelled) hold for a CANCELLED execution and
// errors.Is(err, ErrTimedOut) for a TIMED_OUT one.
func (e *WorkflowError) Is(target error) bool {
	switch target {
	case ErrCancelled:
		return e.Status == models.ExecutionCancelled
	case ErrTimedOut:
		return e.Status == models.ExecutionTimedOut
	}
	return false
}

// NonRetryable marks a step failure that the step's retry policy must not
// retry: the step fails at once. NonRetryable(err) matches err with
// errors.Is; the step's *StepError matches err only if the step declares it
// with WithErrors, as for any failure. NonRetryable(nil) is nil.
func NonRetryable(err error) error {
	if err == nil {
		return nil
	}
	return nonRetryable{err}
}

type nonRetryable struct{ error }

func (e nonRetryable) Unwrap() error { return e.error }

func isNonRetryable(err error) bool {
	var nr nonRetryable
	return errors.As(err, &nr)
}
