package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/recovery"
	"github.com/plexspaces/workflow/repository"
)

type definitionKey struct{ id, version string }

// Engine runs registered workflows durably on one node. Create it with New,
// Register workflows, then Run it; Start, Await, Signal and Cancel work whether
// or not this engine runs.
type Engine struct {
	store repository.WorkflowStorage
	cfg   Config
	log   *slog.Logger

	mu        sync.Mutex
	workflows map[definitionKey]*registration
	running   map[string]*execution // executions in flight on this node
	runCtx    context.Context       // Run's context while Run is going, else nil
	// workCtx is the context of the executions' runs: it outlives Run's by
	// up to DrainTimeout, so that running steps may finish.
	workCtx context.Context
	// startsHere: Start may run what it creates on this node; set once
	// RecoverOnStartup is done, so that recovery never resumes, from an
	// older read, an execution Start already ran here.
	startsHere bool
	finished   map[string]*ending
	signals    map[string]chan struct{}
	wg         sync.WaitGroup
	sweepNow   chan struct{}
	// backlog says that work may wait for a slot here (Start left an
	// execution unowned, a claim was full, a parked execution fell due, an
	// event announced work): while it is set, every finished execution
	// sweeps at once. Each claim clears it first and a full one sets it
	// again, so that a node with nothing waiting does not claim after
	// every run.
	backlog atomic.Bool
	// carried holds step completions a run could not write (the storage
	// failed), for the next run of the execution on this node.
	carried map[string][]repository.FinishStepParams
	// retrying holds the executions whose run stopped on a storage failure
	// and that resumeLater will run again; the node keeps beating for them.
	retrying map[string]bool
	// reserved counts slots Start has taken for executions it is creating.
	reserved int
	wake     wakeState  // Awaits woken by pushed events (wake.go)
	tel      *telemetry // spans and metrics (telemetry.go)
}

var _ recovery.Resumer = (*Engine)(nil)

// New returns an engine on store. Zero Config fields take their defaults.
func New(store repository.WorkflowStorage, cfg Config) *Engine {
	cfg = cfg.withDefaults()
	log := cfg.Logger.With(slog.String("node_id", cfg.NodeID))
	return &Engine{
		store:     store,
		cfg:       cfg,
		log:       log,
		tel:       newTelemetry(cfg, log),
		workflows: map[definitionKey]*registration{},
		running:   map[string]*execution{},
		finished:  map[string]*ending{},
		signals:   map[string]chan struct{}{},
		carried:   map[string][]repository.FinishStepParams{},
		retrying:  map[string]bool{},
		sweepNow:  make(chan struct{}, 1),
	}
}

// NodeID returns the engine's node id.
func (e *Engine) NodeID() string { return e.cfg.NodeID }

// Register makes workflows (from Define or Dynamic) runnable on this engine,
// in memory; Run stores their definitions. Registering id@version again
// replaces it. If any workflow is invalid, none is registered.
func (e *Engine) Register(workflows ...Registrable) error {
	regs := make([]*registration, 0, len(workflows))
	for _, w := range workflows {
		if w == nil {
			return fmt.Errorf("registering a nil workflow: %w", repository.ErrInvalidArgument)
		}
		reg, err := w.registration()
		if err != nil {
			return fmt.Errorf("registering workflow: %w", err)
		}
		own := *reg // this engine's copy
		regs = append(regs, &own)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, reg := range regs {
		e.workflows[definitionKey{reg.def.ID, reg.def.Version}] = reg
	}
	return nil
}

func (e *Engine) registration(id, version string) (*registration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	reg, ok := e.workflows[definitionKey{id, version}]
	return reg, ok
}

// saveDefinition stores a registered definition once per engine.
func (e *Engine) saveDefinition(ctx context.Context, reg *registration) error {
	if e.isSaved(reg) {
		return nil
	}
	def := reg.def
	if err := e.store.SaveDefinition(ctx, &def); err != nil {
		return err
	}
	e.markSaved(reg)
	return nil
}

func (e *Engine) isSaved(reg *registration) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return reg.saved
}

func (e *Engine) markSaved(reg *registration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	reg.saved = true
}

// StartOption configures one Start.
type StartOption func(*repository.NewExecution)

// WithExecutionID starts the execution under a caller-chosen id. Starting an id
// that exists with the same definition, version and input (as a JSON value)
// returns it and runs nothing twice; anything else returns an error matching
// repository.ErrAlreadyExists that says what differs.
func WithExecutionID(id string) StartOption {
	return func(in *repository.NewExecution) { in.ExecutionID = id }
}

// WithLabels stores labels with the execution.
func WithLabels(labels map[string]string) StartOption {
	return func(in *repository.NewExecution) { in.Labels = labels }
}

// Start records a new execution of definitionID@version with input and
// returns its id: the untyped form of Workflow.Start, for tools. A definition
// registered here is stored with the execution if the database lacks it; one
// neither registered here nor stored is ErrNotFound. If this engine's Run is
// going, the workflow is registered here and a slot is free, it runs here at
// once; otherwise any running engine picks it up.
func (e *Engine) Start(ctx context.Context, definitionID, version string, input any, opts ...StartOption) (string, error) {
	raw, err := repository.EncodeJSON("input of "+definitionID+"@"+version, input)
	if err != nil {
		return "", err
	}
	return e.start(ctx, nil, definitionID, version, raw, opts)
}

// start creates an execution and, if it can, runs it here. known is the
// caller's definition, stored with the execution if the database lacks it,
// when the workflow is not registered here.
func (e *Engine) start(ctx context.Context, known *models.WorkflowDefinition, definitionID, version string, input models.JSON, opts []StartOption) (string, error) {
	nx := newExecutionInput(definitionID, version, input, opts)
	nx.Metadata = traceMetadata(ctx) // runs link to the caller's trace
	reg, local := e.registration(definitionID, version)
	switch {
	case local && !e.isSaved(reg):
		def := reg.def
		nx.Definition = &def
	case !local && known != nil:
		def := *known
		nx.Definition = &def
	}
	// Reserve the slot before creating, so that concurrent Starts cannot run
	// more than MaxConcurrent at once.
	e.mu.Lock()
	runCtx := e.runCtx
	reserved := local && runCtx != nil && e.startsHere && e.cfg.MaxConcurrent-len(e.running)-e.reserved > 0
	if reserved {
		e.reserved++
		nx.NodeID, nx.Running = e.cfg.NodeID, true
	}
	e.mu.Unlock()
	unreserve := func() {
		if reserved {
			e.mu.Lock()
			e.reserved--
			e.mu.Unlock()
		}
	}
	exec, err := create(ctx, e.store, nx)
	if errors.Is(err, repository.ErrNotFound) && local && nx.Definition == nil {
		// Stored once, deleted since: store it again.
		def := reg.def
		nx.Definition = &def
		exec, err = create(ctx, e.store, nx)
	}
	if err != nil || exec == nil {
		unreserve()
		return nx.ExecutionID, err
	}
	if local {
		e.markSaved(reg)
	}
	e.tel.startedExecution(ctx, exec)
	if reserved {
		if err := e.resume(runCtx, exec, true); err != nil {
			// Run ended meanwhile: hand the execution back so that any node
			// runs it (if this write fails too, it goes stale and is taken over).
			e.log.LogAttrs(ctx, slog.LevelInfo, "started execution not run here", slog.String("execution_id", exec.ExecutionID))
			_ = e.store.ReleaseExecution(context.WithoutCancel(ctx), exec.ExecutionID, e.cfg.NodeID)
		}
	} else if local && runCtx != nil {
		e.workWaits() // unowned: claim it as soon as a slot is free
	}
	return exec.ExecutionID, nil
}

// newExecutionInput applies Start's options; the id is chosen here, so that
// the caller knows it whatever happens next.
func newExecutionInput(definitionID, version string, input models.JSON, opts []StartOption) repository.NewExecution {
	nx := repository.NewExecution{DefinitionID: definitionID, DefinitionVersion: version, Input: input}
	for _, opt := range opts {
		opt(&nx)
	}
	if nx.ExecutionID == "" {
		nx.ExecutionID = repository.NewID()
	}
	return nx
}

// create stores a new execution. When the id exists with the same
// definition, version and input, it returns a nil execution and no error: the
// start is idempotent. Any other existing execution is ErrAlreadyExists.
func create(ctx context.Context, store repository.WorkflowStorage, nx repository.NewExecution) (*models.WorkflowExecution, error) {
	exec, err := store.CreateExecution(ctx, nx)
	switch {
	case errors.Is(err, repository.ErrAlreadyExists):
		return nil, sameStart(ctx, store, nx)
	case err != nil:
		return nil, fmt.Errorf("starting %s@%s: %w", nx.DefinitionID, nx.DefinitionVersion, err)
	}
	return exec, nil
}

// sameStart checks that the existing execution in.ExecutionID is the one in
// asks for: same definition, version and input (compared as JSON values).
// Anything else is an error matching repository.ErrAlreadyExists.
func sameStart(ctx context.Context, store repository.WorkflowStorage, in repository.NewExecution) error {
	cur, err := store.GetExecution(ctx, in.ExecutionID)
	if err != nil {
		return fmt.Errorf("starting %s: reading the existing execution: %w", in.ExecutionID, err)
	}
	var differs []string
	if cur.DefinitionID != in.DefinitionID || cur.DefinitionVersion != in.DefinitionVersion {
		differs = append(differs, fmt.Sprintf("it runs %s@%s, not %s@%s", cur.DefinitionID, cur.DefinitionVersion, in.DefinitionID, in.DefinitionVersion))
	}
	if !sameJSON(cur.Input, in.Input) {
		differs = append(differs, "its input differs")
	}
	if len(differs) > 0 {
		return fmt.Errorf("starting %s: an execution with this id exists and %s: %w",
			in.ExecutionID, strings.Join(differs, " and "), repository.ErrAlreadyExists)
	}
	return nil
}

// sameJSON reports whether a stored document and a caller's input are the
// same JSON value (key order and spacing aside).
func sameJSON(stored models.JSON, input any) bool {
	raw, err := repository.EncodeJSON("execution input", input)
	if err != nil {
		return false
	}
	if len(raw) == 0 || len(stored) == 0 {
		return len(raw) == 0 && len(stored) == 0
	}
	a, errA := decodeExact(stored)
	b, errB := decodeExact(raw)
	if errA != nil || errB != nil {
		return false
	}
	return sameValue(a, b)
}

// decodeExact decodes a JSON document keeping numbers as their text, so that
// integers beyond float64's precision (2^53) stay apart.
func decodeExact(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// sameValue compares two decoded JSON values; numbers are equal when they
// are the same number, however written (1, 1.0 and 1e0 are one number, as
// PostgreSQL's jsonb may rewrite them).
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		// Compared in 1024 bits: exact for any integer or decimal a JSON
		// document sensibly holds, and bounded for 1e999999999.
		fx, _, errx := big.ParseFloat(string(x), 10, 1024, big.ToNearestEven)
		fy, _, erry := big.ParseFloat(string(y), 10, 1024, big.ToNearestEven)
		return errx == nil && erry == nil && fx.Cmp(fy) == 0
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	default:
		return a == b // string, bool or nil
	}
}

// Run recovers this node's work, then runs executions, heartbeats and sweeps
// for work nobody runs, until ctx ends. Then it drains: it claims nothing
// more, workflows start no new step, steps already running get up to
// Config.DrainTimeout to finish (then their context ends), what completed is
// journaled, and each execution is handed back (unowned) so that another
// node resumes it at once. Heartbeats go on until then. It returns nil once
// every workflow goroutine has returned, on every path.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.cfg.validate(); err != nil {
		return err
	}
	e.mu.Lock()
	if e.runCtx != nil {
		e.mu.Unlock()
		return fmt.Errorf("engine %s is already running: %w", e.cfg.NodeID, ErrInvalidConfig)
	}
	e.runCtx = ctx
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	e.workCtx = work
	regs := make([]*registration, 0, len(e.workflows))
	keys := make([]repository.DefinitionKey, 0, len(e.workflows))
	for key, reg := range e.workflows {
		regs = append(regs, reg)
		keys = append(keys, repository.DefinitionKey{ID: key.id, Version: key.version})
	}
	e.mu.Unlock()
	// Heartbeats outlive ctx too: a draining node still owns what it runs.
	beats, stopBeats := context.WithCancel(context.WithoutCancel(ctx))
	// Every return path stops new resumes, then drains: workflows start no
	// new step, running steps get up to DrainTimeout to finish, then their
	// context ends; completions are journaled and each execution is handed
	// back. Run returns once every workflow goroutine has, including those
	// Start began while Run was still starting up.
	defer func() {
		e.drain(stopWork)
		stopBeats()
	}()
	for _, reg := range regs {
		if err := e.saveDefinition(ctx, reg); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting up
			}
			return fmt.Errorf("saving definition %s@%s: %w", reg.def.ID, reg.def.Version, err)
		}
	}
	defer e.listen(ctx)() // pushed wake-ups while Run goes, drain included (wake.go)
	defer e.retain(ctx)() // background purge when Config.Retention is set (retention.go)
	svc := recovery.NewService(e.store, e.cfg.NodeID,
		recovery.WithResumer(e),
		recovery.WithLogger(e.cfg.Logger),
		recovery.WithHeartbeatInterval(e.cfg.HeartbeatInterval),
		recovery.WithStaleThreshold(e.cfg.StaleThreshold),
		recovery.WithSweepInterval(e.cfg.PollInterval),
		recovery.WithBatchSize(e.cfg.MaxConcurrent),
		recovery.WithCapacity(e.freeSlots),
		recovery.WithHeartbeatHook(e.tel.heartbeatHook(e.cfg.HeartbeatInterval, e.checkOwnership)),
		recovery.WithRunning(e.runningIDs),
		recovery.WithSweepTrigger(e.sweepNow),
		recovery.WithDefinitions(keys...), // claim only what this node can run
		recovery.WithFairShare(),
		// A full claim means more may wait: from then on a finished run
		// sweeps at once, not at the next PollInterval.
		recovery.WithFullClaimHook(func() { e.backlog.Store(true) }),
		recovery.WithClaimHook(func() { e.backlog.Store(false) }),
	)
	if _, err := svc.RecoverOnStartup(ctx, e.cfg.StaleThreshold, e.cfg.HeartbeatInterval); err != nil && ctx.Err() == nil {
		return err
	}
	e.mu.Lock()
	e.startsHere = true
	e.mu.Unlock()
	served := make(chan error, 1)
	go func() { served <- svc.Run(beats) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	e.drain(stopWork) // the heartbeats go on meanwhile
	stopBeats()
	<-served
	return nil
}

// drain ends Run's work: no resume and no claim from now on (no free slot),
// steps already running get DrainTimeout before stopWork ends their
// context, and it returns once every run has returned (journaled what
// completed and handed its execution back).
func (e *Engine) drain(stopWork context.CancelFunc) {
	e.mu.Lock()
	e.runCtx, e.startsHere = nil, false
	e.mu.Unlock()
	deadline := time.AfterFunc(e.cfg.DrainTimeout, stopWork)
	e.wg.Wait()
	deadline.Stop()
	stopWork()
}

// freeSlots is how many more executions a sweep may claim: none for an
// engine with no workflows, which could run nothing it claimed.
func (e *Engine) freeSlots() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.workflows) == 0 || e.runCtx == nil {
		return 0 // nothing to run, or draining
	}
	return e.cfg.MaxConcurrent - len(e.running) - e.reserved
}

// runningIDs are the executions this node beats for: those it runs and those
// it will resume once the storage answers again. Nothing else: what it gave up
// on goes stale, and any node may take it.
func (e *Engine) runningIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.running)+len(e.retrying))
	for id := range e.running {
		ids = append(ids, id)
	}
	for id := range e.retrying {
		if _, dup := e.running[id]; !dup {
			ids = append(ids, id)
		}
	}
	return ids
}

// Resume runs an execution this node owns, unless it already runs here. It
// implements recovery.Resumer; ctx must be Run's context.
func (e *Engine) Resume(ctx context.Context, exec *models.WorkflowExecution) error {
	return e.resume(ctx, exec, false)
}

// resume runs exec here; reserved says Start took a slot for it.
func (e *Engine) resume(ctx context.Context, exec *models.WorkflowExecution, reserved bool) error {
	e.mu.Lock()
	if reserved {
		e.reserved--
	}
	if e.runCtx == nil || ctx == nil || e.runCtx.Err() != nil {
		e.mu.Unlock()
		// Stopping (or stopped): hand back what a claim just gave this
		// node, so that another node runs it at once.
		if !reserved && ctx != nil {
			_ = e.store.ReleaseExecution(context.WithoutCancel(ctx), exec.ExecutionID, e.cfg.NodeID)
		}
		return fmt.Errorf("resuming %s: engine %s is not running: %w", exec.ExecutionID, e.cfg.NodeID, ErrInvalidConfig)
	}
	if cur, dup := e.running[exec.ExecutionID]; dup {
		if !reserved {
			// Claimed while its run here is still returning: that run
			// parked, and this claim is its wake-up. Run it again once the
			// old run has returned, or nobody would until it went stale.
			cur.reclaimed = exec
		}
		e.mu.Unlock()
		return nil
	}
	if !reserved && len(e.running)+e.reserved >= e.cfg.MaxConcurrent {
		e.mu.Unlock()
		// A sweep claimed it while racing Starts filled the slots: hand it
		// back rather than run more than MaxConcurrent.
		_ = e.store.ReleaseExecution(context.WithoutCancel(ctx), exec.ExecutionID, e.cfg.NodeID)
		return fmt.Errorf("resuming %s: engine %s has no free slot", exec.ExecutionID, e.cfg.NodeID)
	}
	defer e.mu.Unlock()
	x := newExecution(e, e.runCtx, e.workCtx, exec, reserved)
	e.running[exec.ExecutionID] = x
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		retry := x.run()
		if !retry && x.parent.Err() != nil && !x.isParked() {
			// The engine is stopping: hand the execution back, whichever path
			// the run took (one that started as Run ended stops at once). If it
			// has ended, the write changes nothing.
			x.release()
		}
		e.mu.Lock()
		if retry {
			e.retrying[exec.ExecutionID] = true
			e.resumeLater(exec.ExecutionID, e.cfg.PollInterval)
		} else {
			delete(e.carried, exec.ExecutionID)
		}
		delete(e.running, exec.ExecutionID)
		done := e.finished[exec.ExecutionID]
		delete(e.finished, exec.ExecutionID)
		delete(e.signals, exec.ExecutionID)
		again := x.reclaimed
		e.mu.Unlock()
		if done != nil {
			done.result = x.result
			close(done.ch)
		}
		if again != nil {
			// This node owns it again: run it, or hand it back if the
			// engine is stopping, whatever ended the old run (it parked, or
			// its timeout fired meanwhile and its fenced finish missed).
			_ = e.resume(x.parent, again, false)
		}
		if e.backlog.Load() {
			e.triggerSweep() // a slot is free and work may wait: look now, not at the next tick
		}
	}()
	return nil
}

// resumeLaterMax caps the wait between attempts to resume an execution
// whose storage calls failed.
const resumeLaterMax = 30 * time.Second

// resumeLater resumes an execution this node still owns after a pause: its
// run stopped because the storage failed (a database restart, say), and
// nobody else will take it over while this node keeps heartbeating it.
func (e *Engine) resumeLater(executionID string, after time.Duration) {
	time.AfterFunc(after, func() {
		e.mu.Lock()
		ctx := e.runCtx
		e.mu.Unlock()
		giveUp := func() {
			e.mu.Lock()
			delete(e.retrying, executionID)
			delete(e.carried, executionID)
			e.mu.Unlock()
		}
		if ctx == nil {
			giveUp() // stopped: it goes stale, and any node takes it
			return
		}
		exec, err := e.store.GetExecution(ctx, executionID)
		if err != nil {
			if ctx.Err() == nil {
				e.resumeLater(executionID, min(2*after, resumeLaterMax))
			} else {
				giveUp()
			}
			return
		}
		if exec.Status.Terminal() || exec.NodeID == nil || *exec.NodeID != e.cfg.NodeID {
			giveUp()
			return
		}
		// Unmark first: a run that fails again marks it anew.
		e.mu.Lock()
		delete(e.retrying, executionID)
		e.mu.Unlock()
		if err := e.Resume(ctx, exec); err != nil {
			giveUp()
		}
	})
}

// carry keeps completions for the next run of an execution here.
func (e *Engine) carry(executionID string, pending []repository.FinishStepParams) {
	if len(pending) == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.carried[executionID] = append(e.carried[executionID], pending...)
}

func (e *Engine) takeCarried(executionID string) []repository.FinishStepParams {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.carried[executionID]
	delete(e.carried, executionID)
	return p
}

// parked notes that an execution waits in the database until (zero: until a
// signal), due no sooner than after atLeast: the next sweeps claim it when it
// is due, and a local timer sweeps at that time so that this node need not
// wait for its next poll.
func (e *Engine) parked(until time.Time, atLeast time.Duration) {
	// A signal may have come while the park was answering, unseen by a run
	// that was still waiting here: the run's end sweeps.
	e.backlog.Store(true)
	if until.IsZero() {
		return
	}
	if d := max(time.Until(until), atLeast); d < parkTimerMax {
		time.AfterFunc(max(d, 0), e.workWaits)
	}
}

// parkTimerMax bounds the local wake-up timers of parked executions; later
// ones are found by the regular sweeps.
const parkTimerMax = time.Hour

// workWaits notes that work may wait for a slot here and sweeps now: if no
// slot is free, the next finished run sweeps.
func (e *Engine) workWaits() {
	e.backlog.Store(true)
	e.triggerSweep()
}

func (e *Engine) triggerSweep() {
	select {
	case e.sweepNow <- struct{}{}:
	default:
	}
}

// checkOwnership stops local executions that the last heartbeat no longer
// covers: cancelled, finished elsewhere or taken over. It re-reads each before
// stopping it, since one started after the heartbeat began is not covered yet.
func (e *Engine) checkOwnership(ctx context.Context, owned []string) {
	e.mu.Lock()
	var missing []*execution
	for id, x := range e.running {
		if !slices.Contains(owned, id) {
			missing = append(missing, x)
		}
	}
	e.mu.Unlock()
	for _, x := range missing {
		if cause := e.lostCause(ctx, x.id); cause != nil {
			x.stop(cause)
		}
	}
}

// lostCause reads an execution and tells why this node may no longer run it,
// or nil if it still may.
func (e *Engine) lostCause(ctx context.Context, executionID string) error {
	cur, err := e.store.GetExecution(ctx, executionID)
	switch {
	case errors.Is(err, repository.ErrNotFound):
		return ErrOwnershipLost
	case err != nil:
		return nil // cannot tell; the next checkpoint will
	case cur.Status == models.ExecutionCancelled:
		return ErrCancelled
	case cur.Status.Terminal() || cur.NodeID == nil || *cur.NodeID != e.cfg.NodeID:
		return ErrOwnershipLost
	}
	return nil
}

// ending is how Await hears of the end of a run here: ch closes when the run
// returns, and result is then the execution as the run ended it, or nil if
// the run did not end it (or does not know its labels).
type ending struct {
	ch     chan struct{}
	result *models.WorkflowExecution
}

// Await waits until the execution is terminal and returns it, whatever its
// status. Its error is only for ctx or the storage.
func (e *Engine) Await(ctx context.Context, executionID string) (*models.WorkflowExecution, error) {
	ticker := time.NewTicker(e.cfg.PollInterval)
	defer ticker.Stop()
	for {
		// An execution running here announces its end, and if the run
		// ended it, says how: no read. Others are polled.
		e.mu.Lock()
		_, local := e.running[executionID]
		var end *ending
		if local {
			end = e.finished[executionID]
			if end == nil {
				end = &ending{ch: make(chan struct{})}
				e.finished[executionID] = end
			}
		}
		e.mu.Unlock()
		if end != nil {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("awaiting execution %s: %w", executionID, contextError(ctx))
			case <-end.ch:
			}
			if end.result != nil {
				ended := *end.result
				ended.Labels = maps.Clone(ended.Labels)
				return &ended, nil
			}
			continue // parked, handed back or lost: see where it is now
		}
		done := e.remoteEnd(executionID, nil) // an "ended" event, or PollInterval (wake.go)
		exec, err := e.store.GetExecution(ctx, executionID)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("awaiting execution %s: %w", executionID, contextError(ctx))
			}
			return nil, fmt.Errorf("awaiting execution %s: %w", executionID, err)
		}
		if exec.Status.Terminal() {
			return exec, nil
		}
		poll := ticker.C
		if done != nil {
			poll = nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("awaiting execution %s: %w", executionID, contextError(ctx))
		case <-done: // nil unless it runs here
		case <-poll:
		}
	}
}

// contextError is why ctx ended: ctx.Err() as it is, and the cause too when
// ctx has one of its own.
func contextError(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != ctx.Err() {
		return fmt.Errorf("%w: %w", ctx.Err(), cause)
	}
	return ctx.Err()
}

// Signal sends a signal to an execution; AwaitSignal receives it. A signal to
// an execution that has ended returns ErrExecutionEnded, and one to an unknown
// id ErrNotFound: nobody would ever receive it.
func (e *Engine) Signal(ctx context.Context, executionID, name string, payload any) error {
	// The insert itself checks that the execution exists and is live.
	if err := e.store.SendSignal(ctx, executionID, name, payload); err != nil {
		return fmt.Errorf("signalling execution %s: %w", executionID, err)
	}
	if !e.notifySignal(executionID) {
		// Not waiting here: if it is parked for this signal, this node's
		// sweep claims it now rather than at its next poll.
		e.workWaits()
	}
	return nil
}

// signalWaiter returns a channel that is closed at the next local Signal to
// the execution.
func (e *Engine) signalWaiter(executionID string) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch := e.signals[executionID]
	if ch == nil {
		ch = make(chan struct{})
		e.signals[executionID] = ch
	}
	return ch
}

// notifySignal wakes a local AwaitSignal of the execution, and reports
// whether the execution runs here.
func (e *Engine) notifySignal(executionID string) bool {
	e.mu.Lock()
	ch := e.signals[executionID]
	delete(e.signals, executionID)
	x, running := e.running[executionID]
	// A run that parked and is returning waits for nothing here: a sweep
	// must claim the execution.
	running = running && !x.isParked()
	e.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	return running
}

// Cancel marks a live execution CANCELLED at once; its node stops it at its
// next step, waking it from Sleep or AwaitSignal. Cancelling a terminal
// execution changes nothing.
func (e *Engine) Cancel(ctx context.Context, executionID string) error {
	if err := repository.CancelExecution(ctx, e.store, executionID); err != nil {
		return err
	}
	e.mu.Lock()
	x := e.running[executionID]
	e.mu.Unlock()
	if x != nil {
		x.stop(ErrCancelled)
	}
	return nil
}
