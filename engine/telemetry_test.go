package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// telemetryBundle is one test's OpenTelemetry SDK: spans go to an in-memory
// exporter as they end, metrics to a manual reader.
type telemetryBundle struct {
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTelemetryBundle(t *testing.T) *telemetryBundle {
	t.Helper()
	b := &telemetryBundle{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	b.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(b.spans))
	b.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(b.reader))
	t.Cleanup(func() {
		_ = b.tp.Shutdown(context.Background())
		_ = b.mp.Shutdown(context.Background())
	})
	return b
}

// config is fast(node) reporting to the bundle.
func (b *telemetryBundle) config(node string) engine.Config {
	cfg := fast(node)
	cfg.TracerProvider, cfg.MeterProvider = b.tp, b.mp
	return cfg
}

// request starts the span of the caller of Start, as an app's HTTP handler
// would have one.
func (b *telemetryBundle) request(ctx context.Context) (context.Context, trace.Span) {
	return b.tp.Tracer("app").Start(ctx, "POST /orders")
}

// named returns the ended spans called name, in the order they ended.
func (b *telemetryBundle) named(name string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range b.spans.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// metrics collects the metrics: for each name, the sum (counters) or the
// count (histograms) of each data point, keyed by its status attribute ("" if
// none).
func (b *telemetryBundle) metrics(t *testing.T) map[string]map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, b.reader.Collect(t.Context(), &rm))
	out := map[string]map[string]int64{}
	status := func(set attribute.Set) string {
		for _, k := range []attribute.Key{"workflow.execution.status", "workflow.step.status"} {
			if v, ok := set.Value(k); ok {
				return v.AsString()
			}
		}
		return ""
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			points := map[string]int64{}
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range data.DataPoints {
					points[status(p.Attributes)] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range data.DataPoints {
					points[status(p.Attributes)] += int64(p.Count)
				}
			default:
				t.Fatalf("metric %s has unexpected data %T", m.Name, m.Data)
			}
			out[m.Name] = points
		}
	}
	return out
}

func attrs(s tracetest.SpanStub) map[string]any {
	out := map[string]any{}
	for _, kv := range s.Attributes {
		out[string(kv.Key)] = kv.Value.AsInterface()
	}
	return out
}

// storedTraceParent reads the traceparent Start kept with the execution.
func storedTraceParent(t *testing.T, exec *models.WorkflowExecution) string {
	t.Helper()
	var meta map[string]string
	require.NoError(t, json.Unmarshal(exec.Metadata, &meta), "metadata %s", exec.Metadata)
	return meta["traceparent"]
}

func traceParent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags())
}

// warmUpWorkflow is a trivial workflow, for warmUp; register it before Run.
var warmUpWorkflow = engine.Dynamic(def("tel-warm"), func(*engine.Context, json.RawMessage) (any, error) { return nil, nil })

// warmUp runs one execution of warmUpWorkflow on e, so that e runs what
// Start creates at once from then on (it does once its startup recovery is
// done).
func warmUp(t *testing.T, e *engine.Engine) {
	t.Helper()
	id, err := e.Start(t.Context(), "tel-warm", "v1", nil)
	require.NoError(t, err)
	await(t, e, id)
}

// TestTelemetry_RunSpanTreeAndMetrics: a run of three steps, the second
// failing once, and a short sleep: one run span, child of the Start call's
// span, with its attributes; one span per step attempt under it (two for the
// retried step, the first with error status); a sleep span; the traceparent
// stored with the execution; and the counts of every run and step metric.
func TestTelemetry_RunSpanTreeAndMetrics(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		b := newTelemetryBundle(t)
		e := engine.New(s, b.config("tel-1"))
		var calls atomic.Int32
		flaky := errors.New("flaky")
		require.NoError(t, e.Register(engine.Dynamic(def("tel-three"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			if _, err := engine.Step(ctx, "a", func(context.Context) (int, error) { return 1, nil }); err != nil {
				return nil, err
			}
			_, err := engine.Step(ctx, "b", func(context.Context) (int, error) {
				if calls.Add(1) == 1 {
					return 0, flaky
				}
				return 2, nil
			}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond}))
			if err != nil {
				return nil, err
			}
			if err := engine.Sleep(ctx, "nap", time.Millisecond); err != nil {
				return nil, err
			}
			return engine.Step(ctx, "c", func(context.Context) (int, error) { return 3, nil })
		})))
		require.NoError(t, e.Register(warmUpWorkflow))
		run(t, e)
		warmUp(t, e)
		b.spans.Reset()

		ctx, req := b.request(t.Context())
		id, err := e.Start(ctx, "tel-three", "v1", nil)
		require.NoError(t, err)
		req.End()
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status, deref(exec.Error))
		require.Equal(t, traceParent(req.SpanContext()), storedTraceParent(t, exec))

		runs := b.named("run tel-three")
		require.Len(t, runs, 1)
		r := runs[0]
		require.Equal(t, req.SpanContext().SpanID(), r.Parent.SpanID(), "the first run is a child of the Start call's span")
		require.Equal(t, req.SpanContext().TraceID(), r.SpanContext.TraceID())
		require.Equal(t, map[string]any{
			"workflow.execution.id": id, "workflow.definition.id": "tel-three", "workflow.definition.version": "v1",
			"workflow.node.id": "tel-1", "workflow.resumed": false,
			"workflow.execution.status": "COMPLETED", "workflow.run.outcome": "ended",
		}, attrs(r))
		require.Equal(t, codes.Unset, r.Status.Code)

		var steps []string
		for _, sp := range b.spans.GetSpans() {
			if strings.HasPrefix(sp.Name, "step ") {
				require.Equal(t, r.SpanContext.SpanID(), sp.Parent.SpanID(), "%s is a child of the run", sp.Name)
				a := attrs(sp)
				steps = append(steps, fmt.Sprintf("%s#%d:%s:%s", a["workflow.step.id"], a["workflow.step.attempt"], a["workflow.step.status"], sp.Status.Code))
			}
		}
		require.Equal(t, []string{"a#1:COMPLETED:Unset", "b#1:RETRYING:Error", "b#2:COMPLETED:Unset", "c#1:COMPLETED:Unset"}, steps)
		failed := b.named("step b")[0]
		require.Equal(t, "flaky", failed.Status.Description)
		require.Len(t, failed.Events, 1, "the error is recorded")
		require.Equal(t, "exception", failed.Events[0].Name)

		sleeps := b.named("sleep nap")
		require.Len(t, sleeps, 1)
		require.Equal(t, r.SpanContext.SpanID(), sleeps[0].Parent.SpanID())
		require.Equal(t, map[string]any{"workflow.step.id": "nap", "workflow.sleep.duration": 0.001}, attrs(sleeps[0]))

		m := b.metrics(t)
		require.Equal(t, map[string]int64{"": 2}, m["workflow.executions.started"], "the warm-up and tel-three")
		require.Equal(t, map[string]int64{"COMPLETED": 2}, m["workflow.executions.finished"])
		require.Equal(t, map[string]int64{"": 0}, m["workflow.executions.running"])
		require.Equal(t, map[string]int64{"COMPLETED": 3, "RETRYING": 1}, m["workflow.steps"], "the sleep's own step is not counted")
		require.Equal(t, map[string]int64{"COMPLETED": 3, "RETRYING": 1}, m["workflow.step.duration"])
		require.NotContains(t, m, "workflow.takeovers")
	})
}

// TestTelemetry_ParkedSignalWaitResumesLinked: a run that parks in a signal
// wait ends its span (outcome parked, a signal span marked parked); the run
// that resumes it once the signal comes is a new root span that links to
// the Start call's span, with resumed set.
func TestTelemetry_ParkedSignalWaitResumesLinked(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		b := newTelemetryBundle(t)
		e := engine.New(s, b.config("tel-park"))
		require.NoError(t, e.Register(engine.Dynamic(def("tel-signal"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			if _, err := engine.Step(ctx, "before", func(context.Context) (int, error) { return 1, nil }); err != nil {
				return nil, err
			}
			got, err := engine.AwaitSignal[string](ctx, "go", time.Hour)
			if err != nil {
				return nil, err
			}
			return engine.Step(ctx, "after", func(context.Context) (string, error) { return got, nil })
		})))
		require.NoError(t, e.Register(warmUpWorkflow))
		run(t, e)
		warmUp(t, e)

		ctx, req := b.request(t.Context())
		id, err := e.Start(ctx, "tel-signal", "v1", nil)
		require.NoError(t, err)
		req.End()
		waitParked(t, s, id)
		require.NoError(t, e.Signal(t.Context(), id, "go", "now"))
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status, deref(exec.Error))

		runs := b.named("run tel-signal")
		require.Len(t, runs, 2)
		first, second := runs[0], runs[1]
		require.Equal(t, req.SpanContext().SpanID(), first.Parent.SpanID())
		require.Equal(t, false, attrs(first)["workflow.resumed"])
		require.Equal(t, "parked", attrs(first)["workflow.run.outcome"])

		require.False(t, second.Parent.IsValid(), "a resumed run is a root span")
		require.Equal(t, true, attrs(second)["workflow.resumed"])
		require.Equal(t, "ended", attrs(second)["workflow.run.outcome"])
		require.Len(t, second.Links, 1)
		require.Equal(t, req.SpanContext().TraceID(), second.Links[0].SpanContext.TraceID())
		require.Equal(t, req.SpanContext().SpanID(), second.Links[0].SpanContext.SpanID())

		waits := b.named("signal go")
		require.Len(t, waits, 2)
		require.Equal(t, first.SpanContext.SpanID(), waits[0].Parent.SpanID())
		require.Equal(t, map[string]any{"workflow.signal.name": "go", "workflow.signal.timeout": 3600.0, "workflow.wait.parked": true}, attrs(waits[0]))
		require.Equal(t, second.SpanContext.SpanID(), waits[1].Parent.SpanID())
		require.Equal(t, map[string]any{"workflow.signal.name": "go", "workflow.signal.timeout": 3600.0}, attrs(waits[1]))
		require.Len(t, b.named("step before"), 1, "a replayed step makes no span")
		after := b.named("step after")
		require.Len(t, after, 1)
		require.Equal(t, second.SpanContext.SpanID(), after[0].Parent.SpanID())
	})
}

// TestTelemetry_TakeoverLinksAndCounts: node A's heartbeats fail while a
// step of its run hangs, so node B takes the execution over; B's run links
// to the Start call's span, is marked a takeover, and every workflow.*
// metric has been recorded.
func TestTelemetry_TakeoverLinksAndCounts(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		b := newTelemetryBundle(t)
		entered, release := make(chan struct{}, 1), make(chan struct{})
		t.Cleanup(func() {
			select {
			case <-release:
			default:
				close(release)
			}
		})
		wf := engine.Dynamic(def("tel-takeover"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			node := ctx.NodeID()
			return engine.Step(ctx, "hold", func(c context.Context) (string, error) {
				if node == "tel-a" {
					entered <- struct{}{}
					select { // the node hangs here; B takes over meanwhile
					case <-release:
					case <-c.Done(): // A stops at the test's end
					}
				}
				return node, nil
			})
		})
		// A beats for nothing: its execution goes stale while its step hangs.
		faulty := testutil.NewFaultyStorage(s, testutil.Fault{Method: "HeartbeatExecutions", Fail: true})
		cfgA := b.config("tel-a")
		if os.Getenv("TEL_DEBUG") != "" {
			cfgA.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		a := engine.New(faulty, cfgA)
		require.NoError(t, a.Register(wf, warmUpWorkflow))
		run(t, a)
		warmUp(t, a)
		ctx, req := b.request(t.Context())
		id, err := a.Start(ctx, "tel-takeover", "v1", nil)
		require.NoError(t, err)
		req.End()
		receive(t, entered)

		nodeB := engine.New(s, b.config("tel-b"))
		require.NoError(t, nodeB.Register(wf))
		run(t, nodeB)
		exec := await(t, nodeB, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status, deref(exec.Error))
		require.JSONEq(t, `"tel-b"`, string(exec.Output))

		var taken tracetest.SpanStub
		for _, r := range b.named("run tel-takeover") {
			if attrs(r)["workflow.node.id"] == "tel-b" {
				taken = r
			}
		}
		require.Equal(t, map[string]any{
			"workflow.execution.id": id, "workflow.definition.id": "tel-takeover", "workflow.definition.version": "v1",
			"workflow.node.id": "tel-b", "workflow.resumed": true, "workflow.takeover": true,
			"workflow.execution.status": "COMPLETED", "workflow.run.outcome": "ended",
		}, attrs(taken))
		require.False(t, taken.Parent.IsValid())
		require.Len(t, taken.Links, 1)
		require.Equal(t, req.SpanContext().SpanID(), taken.Links[0].SpanContext.SpanID())

		m := b.metrics(t)
		for _, name := range []string{"workflow.executions.started", "workflow.executions.finished", "workflow.executions.running",
			"workflow.steps", "workflow.step.duration", "workflow.takeovers", "workflow.heartbeat.lag"} {
			require.Contains(t, m, name)
		}
		require.Equal(t, map[string]int64{"": 1}, m["workflow.takeovers"])
		require.Equal(t, map[string]int64{"": 2}, m["workflow.executions.started"], "the warm-up and the execution taken over")
		require.Equal(t, map[string]int64{"COMPLETED": 2}, m["workflow.executions.finished"])
		require.Equal(t, map[string]int64{"COMPLETED": 1}, m["workflow.steps"], "B's attempt; A's still hangs")
		require.Equal(t, map[string]int64{"": 1}, m["workflow.executions.running"], "A's run, still hanging")
		require.Positive(t, m["workflow.heartbeat.lag"][""])
		close(release)
	})
}

// TestTelemetry_StartTxStoresTraceContext: StartTx keeps the trace context
// of its ctx with the execution too, and counts the start.
func TestTelemetry_StartTxStoresTraceContext(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		b := newTelemetryBundle(t)
		e := engine.New(s, b.config("tel-tx"))
		require.NoError(t, e.Register(greet))
		ctx, req := b.request(t.Context())
		defer req.End()
		var h *engine.Handle[reply]
		require.NoError(t, s.DB().WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var err error
			h, err = greet.StartTx(ctx, e, tx, greeting{Name: "tx"})
			return err
		}))
		exec, err := h.Execution(t.Context())
		require.NoError(t, err)
		require.Equal(t, traceParent(req.SpanContext()), storedTraceParent(t, exec))
		require.Equal(t, map[string]int64{"": 1}, b.metrics(t)["workflow.executions.started"])

		// Without a span in ctx nothing is stored.
		plain, err := e.Start(t.Context(), "greet", "v1", greeting{Name: "plain"})
		require.NoError(t, err)
		exec, err = s.GetExecution(t.Context(), plain)
		require.NoError(t, err)
		require.Empty(t, exec.Metadata)
	})
}

// TestTelemetry_ReadmeSampleIsTheExample keeps the README's "Tracing and
// metrics" sample and Example_tracing the same code.
func TestTelemetry_ReadmeSampleIsTheExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	code, err := os.ReadFile("example_otel_test.go")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "### Tracing and metrics")
	require.True(t, ok, "the README has the section")
	_, block, ok := strings.Cut(section, "```go\n")
	require.True(t, ok)
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	for _, line := range strings.Split(block, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			require.Contains(t, string(code), line)
		}
	}
}
