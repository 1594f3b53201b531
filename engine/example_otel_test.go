package engine_test

import (
	"context"
	"fmt"
	"log"
	"slices"
	"strings"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
)

// Example_tracing wires the OpenTelemetry SDK into an engine: the quick
// start's order workflow, traced and measured. It is the README's "Tracing
// and metrics" sample.
func Example_tracing() {
	ctx := context.Background()
	spans := tracetest.NewInMemoryExporter() // in an app: otlptracegrpc.New(ctx) or stdouttrace.New()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(ctx)
	metrics := sdkmetric.NewManualReader() // in an app: sdkmetric.NewPeriodicReader(exporter)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(metrics))
	defer mp.Shutdown(ctx)

	store, err := repository.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	// Without these two fields the engine uses otel.GetTracerProvider() and
	// otel.GetMeterProvider(), so an app that set up OpenTelemetry needs none.
	e := engine.New(store, engine.Config{NodeID: "node-1", TracerProvider: tp, MeterProvider: mp})
	if err := e.Register(processOrder); err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()

	// The trace context of Start's ctx is stored with the execution: the
	// first run is its child, later runs (on any node) link to it.
	reqCtx, req := tp.Tracer("app").Start(ctx, "POST /orders")
	order, err := processOrder.Start(reqCtx, e, Order{ID: 7, Cents: 500})
	req.End()
	if err != nil {
		log.Fatal(err)
	}
	if _, err := order.Result(ctx); err != nil {
		log.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	for _, s := range spans.GetSpans() {
		if s.InstrumentationScope.Name == "github.com/plexspaces/workflow/engine" {
			fmt.Println(s.Name, s.Parent.SpanID() == req.SpanContext().SpanID() || len(s.Links) > 0)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := metrics.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	var names []string
	for _, m := range rm.ScopeMetrics[0].Metrics {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	fmt.Println(strings.Join(names, "\n"))
	// Output:
	// step reserve false
	// step charge false
	// step ship false
	// run order true
	// workflow.executions.finished
	// workflow.executions.running
	// workflow.executions.started
	// workflow.step.duration
	// workflow.steps
}
