package engine

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/plexspaces/workflow/models"
)

// The engine's OpenTelemetry instrumentation: spans of runs, step attempts and
// waits, and the workflow.* metrics. It goes through the OpenTelemetry API
// only; the application picks the SDK (Config.TracerProvider and
// Config.MeterProvider, the global ones by default). Instruments and their
// attribute sets are made once, so that with the no-op providers the hot path
// pays a few calls that do nothing and no allocation per step.

// instrumentationName names the engine's tracer and meter.
const instrumentationName = "github.com/plexspaces/workflow/engine"

// Attribute keys of the engine's spans and metrics.
const (
	attrExecutionID       = attribute.Key("workflow.execution.id")
	attrExecutionStatus   = attribute.Key("workflow.execution.status")
	attrDefinitionID      = attribute.Key("workflow.definition.id")
	attrDefinitionVersion = attribute.Key("workflow.definition.version")
	attrNodeID            = attribute.Key("workflow.node.id")
	attrResumed           = attribute.Key("workflow.resumed")
	attrTakeover          = attribute.Key("workflow.takeover")
	attrRunOutcome        = attribute.Key("workflow.run.outcome")
	attrStepID            = attribute.Key("workflow.step.id")
	attrStepAttempt       = attribute.Key("workflow.step.attempt")
	attrStepStatus        = attribute.Key("workflow.step.status")
	attrSleepDuration     = attribute.Key("workflow.sleep.duration")
	attrSignalName        = attribute.Key("workflow.signal.name")
	attrSignalTimeout     = attribute.Key("workflow.signal.timeout")
	attrSignalTimedOut    = attribute.Key("workflow.signal.timed_out")
	attrWaitParked        = attribute.Key("workflow.wait.parked")
)

// Names of the engine's metrics.
const (
	metricExecutionsStarted  = "workflow.executions.started"
	metricExecutionsFinished = "workflow.executions.finished"
	metricExecutionsRunning  = "workflow.executions.running"
	metricSteps              = "workflow.steps"
	metricStepDuration       = "workflow.step.duration"
	metricTakeovers          = "workflow.takeovers"
	metricHeartbeatLag       = "workflow.heartbeat.lag"
)

// traceParentKey and traceStateKey are the W3C Trace Context fields, kept
// under the same names in an execution's metadata.
const (
	traceParentKey = "traceparent"
	traceStateKey  = "tracestate"
)

// telemetry holds one engine's tracer and instruments.
type telemetry struct {
	tracer       trace.Tracer
	started      metric.Int64Counter
	finished     metric.Int64Counter
	running      metric.Int64UpDownCounter
	steps        metric.Int64Counter
	stepDuration metric.Float64Histogram
	takeovers    metric.Int64Counter
	heartbeatLag metric.Float64Histogram

	mu   sync.Mutex
	defs map[definitionKey]*definitionTelemetry
}

// definitionTelemetry holds the attribute sets of one workflow definition,
// made at its first use.
type definitionTelemetry struct {
	spanAttrs trace.SpanStartOption
	runName   string
	plain     []metric.AddOption
	finished  map[models.ExecutionStatus][]metric.AddOption
	steps     map[models.StepStatus][]metric.AddOption
	durations map[models.StepStatus][]metric.RecordOption
}

// newTelemetry makes the tracer and the instruments from cfg's providers. An
// instrument the provider refuses is logged and replaced by a no-op one.
func newTelemetry(cfg Config, log *slog.Logger) *telemetry {
	meter := cfg.MeterProvider.Meter(instrumentationName)
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	t := &telemetry{tracer: cfg.TracerProvider.Tracer(instrumentationName), defs: map[definitionKey]*definitionTelemetry{}}
	var err error
	t.started, err = meter.Int64Counter(metricExecutionsStarted, metric.WithUnit("{execution}"),
		metric.WithDescription("Executions started (created) through this engine."))
	check(err)
	t.finished, err = meter.Int64Counter(metricExecutionsFinished, metric.WithUnit("{execution}"),
		metric.WithDescription("Executions this engine ended, by the status they ended with."))
	check(err)
	t.running, err = meter.Int64UpDownCounter(metricExecutionsRunning, metric.WithUnit("{execution}"),
		metric.WithDescription("Executions running on this engine now."))
	check(err)
	t.steps, err = meter.Int64Counter(metricSteps, metric.WithUnit("{attempt}"),
		metric.WithDescription("Step attempts this engine ran, by the status they ended with."))
	check(err)
	t.stepDuration, err = meter.Float64Histogram(metricStepDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of step attempts, journal writes included."))
	check(err)
	t.takeovers, err = meter.Int64Counter(metricTakeovers, metric.WithUnit("{execution}"),
		metric.WithDescription("Executions this engine resumed whose previous run stopped mid-step without an outcome (its node died or lost the execution)."))
	check(err)
	t.heartbeatLag, err = meter.Float64Histogram(metricHeartbeatLag, metric.WithUnit("s"),
		metric.WithDescription("How much later than the heartbeat interval each heartbeat followed the previous one."))
	check(err)
	if len(errs) > 0 {
		log.LogAttrs(context.Background(), slog.LevelWarn, "creating metric instruments", slog.String("error", errors.Join(errs...).Error()))
		t.replaceNil()
	}
	return t
}

// replaceNil puts no-op instruments where a provider returned none.
func (t *telemetry) replaceNil() {
	if t.started == nil {
		t.started = metricnoop.Int64Counter{}
	}
	if t.finished == nil {
		t.finished = metricnoop.Int64Counter{}
	}
	if t.running == nil {
		t.running = metricnoop.Int64UpDownCounter{}
	}
	if t.steps == nil {
		t.steps = metricnoop.Int64Counter{}
	}
	if t.stepDuration == nil {
		t.stepDuration = metricnoop.Float64Histogram{}
	}
	if t.takeovers == nil {
		t.takeovers = metricnoop.Int64Counter{}
	}
	if t.heartbeatLag == nil {
		t.heartbeatLag = metricnoop.Float64Histogram{}
	}
}

// definition returns the attribute sets of definition id@version.
func (t *telemetry) definition(id, version string) *definitionTelemetry {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := definitionKey{id, version}
	if d, ok := t.defs[key]; ok {
		return d
	}
	// The statuses an execution and a step attempt end with.
	terminalStatuses := []models.ExecutionStatus{models.ExecutionCompleted, models.ExecutionFailed, models.ExecutionCancelled, models.ExecutionTimedOut}
	attemptStatuses := []models.StepStatus{models.StepCompleted, models.StepRetrying, models.StepFailed, models.StepCancelled}
	base := []attribute.KeyValue{attrDefinitionID.String(id), attrDefinitionVersion.String(version)}
	d := &definitionTelemetry{
		spanAttrs: trace.WithAttributes(base...),
		runName:   "run " + id,
		plain:     []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(base...))},
		finished:  make(map[models.ExecutionStatus][]metric.AddOption, len(terminalStatuses)),
		steps:     make(map[models.StepStatus][]metric.AddOption, len(attemptStatuses)),
		durations: make(map[models.StepStatus][]metric.RecordOption, len(attemptStatuses)),
	}
	for _, s := range terminalStatuses {
		set := attribute.NewSet(append(base[:2:2], attrExecutionStatus.String(string(s)))...)
		d.finished[s] = []metric.AddOption{metric.WithAttributeSet(set)}
	}
	for _, s := range attemptStatuses {
		set := metric.WithAttributeSet(attribute.NewSet(append(base[:2:2], attrStepStatus.String(string(s)))...))
		d.steps[s] = []metric.AddOption{set}
		d.durations[s] = []metric.RecordOption{set}
	}
	t.defs[key] = d
	return d
}

// traceMetadata returns the execution metadata that keeps the trace context
// of ctx ({"traceparent": ..., "tracestate": ...}), or nil when ctx carries
// no valid span context.
func traceMetadata(ctx context.Context) models.JSON {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	doc, err := json.Marshal(carrier)
	if err != nil {
		return nil // a map of strings always encodes
	}
	return doc
}

// storedSpanContext reads the span context traceMetadata stored; it is
// invalid when there is none.
func storedSpanContext(metadata models.JSON) trace.SpanContext {
	if len(metadata) == 0 {
		return trace.SpanContext{}
	}
	var fields map[string]any
	if err := json.Unmarshal(metadata, &fields); err != nil {
		return trace.SpanContext{}
	}
	carrier := propagation.MapCarrier{}
	for _, k := range []string{traceParentKey, traceStateKey} {
		if v, ok := fields[k].(string); ok {
			carrier[k] = v
		}
	}
	if carrier[traceParentKey] == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
}

// startedExecution counts an execution Start or StartTx created.
func (t *telemetry) startedExecution(ctx context.Context, exec *models.WorkflowExecution) {
	if exec == nil {
		return // an idempotent repeat: nothing new started
	}
	t.started.Add(ctx, 1, t.definition(exec.DefinitionID, exec.DefinitionVersion).plain...)
}

// runTelemetry is the telemetry of one run of an execution on this node.
type runTelemetry struct {
	def *definitionTelemetry
	// span is the run's span while it records, else nil: steps and waits
	// make spans only under a recording run span.
	span trace.Span
	// status is how the run ended the execution; empty if it did not.
	status  models.ExecutionStatus
	failure string
	// parked: the run parked the execution (the context's cause may be
	// another: a heartbeat that saw it unowned may stop the run first).
	parked bool
}

// beginRun starts the span of a run of exec on this node and counts it as
// running; it returns the context the run goes on in. The first run of an
// execution, on the node that started it, is a child of the trace context
// stored by Start (first); any later run (a resume after a crash, a
// takeover, a park or a hand-back, or a first run on another node) is a new
// root that links to it.
func (t *telemetry) beginRun(work context.Context, exec *models.WorkflowExecution, nodeID string, first bool) (context.Context, runTelemetry) {
	d := t.definition(exec.DefinitionID, exec.DefinitionVersion)
	t.running.Add(work, 1, d.plain...)
	r := runTelemetry{def: d}
	resumed := !first
	stored := storedSpanContext(exec.Metadata)
	parent := work
	opts := make([]trace.SpanStartOption, 0, 3)
	opts = append(opts, d.spanAttrs)
	switch {
	case !resumed && stored.IsValid():
		parent = trace.ContextWithRemoteSpanContext(work, stored)
	case stored.IsValid():
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: stored}))
	default:
		opts = append(opts, trace.WithNewRoot())
	}
	ctx, span := t.tracer.Start(parent, d.runName, opts...)
	if span.IsRecording() {
		span.SetAttributes(attrExecutionID.String(exec.ExecutionID), attrNodeID.String(nodeID), attrResumed.Bool(resumed))
		r.span = span
	}
	if !span.SpanContext().IsValid() {
		return work, r // no trace to carry into the steps
	}
	return ctx, r
}

// finishedRun records that the run ended the execution with status; stored
// is false when the write failed (the run is tried again).
func (x *execution) finishedRun(status models.ExecutionStatus, failure string, stored bool) {
	if !stored {
		return
	}
	r := &x.tel
	x.engine.tel.finished.Add(x.ctx, 1, r.def.finished[status]...)
	r.status, r.failure = status, failure
}

// noteJournal counts a takeover when the journal a resumed run read holds an
// attempt that never ended: the run that made it stopped mid-step without an
// outcome, because its node died or lost the execution.
func (x *execution) noteJournal(history []models.StepExecution) {
	for _, h := range history {
		if h.Status == models.StepRunning {
			x.engine.tel.takeovers.Add(x.ctx, 1, x.tel.def.plain...)
			if x.tel.span != nil {
				x.tel.span.SetAttributes(attrTakeover.Bool(true))
			}
			return
		}
	}
}

// endRun ends the run's span and counts it as no longer running. retry says
// the run stopped on a storage failure and is tried again later.
func (x *execution) endRun(retry bool) {
	r := &x.tel
	x.engine.tel.running.Add(x.ctx, -1, r.def.plain...)
	if r.span == nil {
		return
	}
	switch {
	case r.status != "":
		r.span.SetAttributes(attrExecutionStatus.String(string(r.status)), attrRunOutcome.String("ended"))
		if r.status != models.ExecutionCompleted {
			r.span.SetStatus(codes.Error, r.failure)
		}
	case retry:
		r.span.SetAttributes(attrRunOutcome.String("retry"))
	case r.parked:
		r.span.SetAttributes(attrRunOutcome.String("parked"))
	default:
		r.span.SetAttributes(attrRunOutcome.String("stopped"))
		if cause := context.Cause(x.ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			r.span.RecordError(cause)
		}
	}
	r.span.End()
}

// stepTrace is the telemetry of one step attempt.
type stepTrace struct {
	span  trace.Span // nil unless the run's span records
	start time.Time
	skip  bool // the engine's own steps (Sleep's, AwaitSignal's) are not measured
}

// beginStep starts the span of an attempt of stepID and returns the Context
// the attempt runs with: c itself, or, under a recording run span, a copy
// whose context holds the step's span (the step function's own spans and
// outgoing calls become its children).
func (c *Context) beginStep(stepID string, attempt int, own bool) (*Context, stepTrace) {
	if own {
		return c, stepTrace{skip: true}
	}
	st := stepTrace{start: time.Now()}
	if c.x.tel.span == nil {
		return c, st
	}
	ctx, span := c.x.engine.tel.tracer.Start(c.Context, "step "+stepID,
		trace.WithAttributes(attrStepID.String(stepID), attrStepAttempt.Int(attempt)))
	st.span = span
	cp := *c
	cp.Context = ctx
	return &cp, st
}

// endStep records how an attempt ended: status is what the journal holds
// (empty when the attempt has no outcome: the run stopped, the engine is
// stopping, or it lost the execution), failure the step's error.
func (c *Context) endStep(st stepTrace, status models.StepStatus, failure error) {
	if st.skip {
		return
	}
	if status == "" && errors.Is(failure, errShutdown) {
		status = models.StepCancelled // journaled so by attempt
	}
	t, def := c.x.engine.tel, c.x.tel.def
	if status != "" {
		t.steps.Add(c, 1, def.steps[status]...)
		t.stepDuration.Record(c, time.Since(st.start).Seconds(), def.durations[status]...)
	}
	if st.span == nil {
		return
	}
	if status != "" {
		st.span.SetAttributes(attrStepStatus.String(string(status)))
	}
	if failure != nil && status != models.StepCancelled {
		st.span.RecordError(failure)
		st.span.SetStatus(codes.Error, failure.Error())
	}
	st.span.End()
}

// beginSleep starts the span of Sleep's wait, under a recording run span.
func (c *Context) beginSleep(stepID string, d time.Duration) (*Context, trace.Span) {
	if c.x.tel.span == nil {
		return c, nil // the name and attributes would allocate
	}
	return c.beginWait("sleep "+stepID, attrStepID.String(stepID), attrSleepDuration.Float64(d.Seconds()))
}

// beginSignal starts the span of AwaitSignal's wait, under a recording run
// span.
func (c *Context) beginSignal(name string, timeout time.Duration) (*Context, trace.Span) {
	if c.x.tel.span == nil {
		return c, nil
	}
	return c.beginWait("signal "+name, attrSignalName.String(name), attrSignalTimeout.Float64(timeout.Seconds()))
}

// beginWait starts a wait's span under the run's recording span.
func (c *Context) beginWait(name string, attrs ...attribute.KeyValue) (*Context, trace.Span) {
	ctx, span := c.x.engine.tel.tracer.Start(c.Context, name, trace.WithAttributes(attrs...))
	cp := *c
	cp.Context = ctx
	return &cp, span
}

// endWait ends a wait's span: a wait that parked the execution, timed out or
// stopped with the engine is no error.
func endWait(span trace.Span, err error) {
	if span == nil {
		return
	}
	switch {
	case err == nil:
	case errors.Is(err, errParked):
		span.SetAttributes(attrWaitParked.Bool(true))
	case errors.Is(err, ErrSignalTimeout):
		span.SetAttributes(attrSignalTimedOut.Bool(true))
	case errors.Is(err, errShutdown):
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// heartbeatHook wraps the engine's heartbeat hook: it records how much later
// than interval each successful heartbeat followed the previous one (zero
// when on time), then calls next.
func (t *telemetry) heartbeatHook(interval time.Duration, next func(context.Context, []string)) func(context.Context, []string) {
	var mu sync.Mutex
	var last time.Time
	return func(ctx context.Context, owned []string) {
		now := time.Now()
		mu.Lock()
		prev := last
		last = now
		mu.Unlock()
		if !prev.IsZero() {
			t.heartbeatLag.Record(ctx, max(now.Sub(prev)-interval, 0).Seconds())
		}
		next(ctx, owned)
	}
}
