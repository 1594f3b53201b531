// Command otel shows the engine's OpenTelemetry traces and metrics: it sets up
// the OpenTelemetry SDK the way an app does (the stdout span exporter and a
// metric reader, both made the global providers), runs one order workflow on
// embedded in-memory SQLite, prints each span as JSON as it ends, and then the
// workflow.* metrics. The engine's Config names no provider: it uses the
// global ones.
//
//	go run ./examples/otel
//
// The SDK is this program's dependency, not the library's: the engine and
// repository packages import the OpenTelemetry API modules only.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
)

// deadline bounds the whole program.
const deadline = time.Minute

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "otel example:", err)
		os.Exit(1)
	}
}

// Order is the workflow's input.
type Order struct {
	ID    int `json:"id"`
	Cents int `json:"cents"`
}

// newOrderWorkflow returns a workflow of three steps whose charge fails once
// and is retried, with a short durable sleep before shipping.
func newOrderWorkflow() *engine.Workflow[Order, string] {
	charges := 0
	return engine.Define("order", "v1", func(ctx *engine.Context, o Order) (string, error) {
		if _, err := engine.Step(ctx, "reserve", func(context.Context) (string, error) {
			return fmt.Sprintf("R-%d", o.ID), nil
		}); err != nil {
			return "", err
		}
		payment, err := engine.Step(ctx, "charge", func(context.Context) (string, error) {
			if charges++; charges == 1 {
				return "", errors.New("card network timeout") // the retry policy tries again
			}
			return fmt.Sprintf("P-%d-%d", o.ID, o.Cents), nil
		}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond}))
		if err != nil {
			return "", err
		}
		if err := engine.Sleep(ctx, "cool-off", 20*time.Millisecond); err != nil {
			return "", err
		}
		return engine.Step(ctx, "ship", func(context.Context) (string, error) {
			return "shipped after " + payment, nil
		})
	})
}

// run sets up OpenTelemetry, runs one workflow and writes the spans and the
// metrics to out.
func run(ctx context.Context, out io.Writer) (err error) {
	// What an app's main does once: an exporter, the SDK providers, and
	// making them the global ones.
	exporter, err := stdouttrace.New(stdouttrace.WithWriter(out), stdouttrace.WithPrettyPrint())
	if err != nil {
		return fmt.Errorf("making the span exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	reader := sdkmetric.NewManualReader() // in production: sdkmetric.NewPeriodicReader(an OTLP exporter)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() {
		err = errors.Join(err, tp.Shutdown(context.WithoutCancel(ctx)), mp.Shutdown(context.WithoutCancel(ctx)))
	}()
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)

	store, err := repository.Open(ctx, "sqlite::memory:")
	if err != nil {
		return fmt.Errorf("opening the store: %w", err)
	}
	defer store.Close()
	e := engine.New(store, engine.Config{NodeID: "node-1"}) // the global providers, read here
	order := newOrderWorkflow()
	if err := e.Register(order); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()

	// The request that starts the workflow has a span; the execution keeps
	// its trace context, so the workflow's spans join the request's trace.
	reqCtx, req := otel.Tracer("example").Start(ctx, "POST /orders")
	h, err := order.Start(reqCtx, e, Order{ID: 42, Cents: 1999})
	req.End()
	if err != nil {
		stop()
		return errors.Join(err, <-done)
	}
	result, err := h.Result(ctx)
	stop()
	if err := errors.Join(err, <-done); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nresult: %s\n\nmetrics:\n", result)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return fmt.Errorf("collecting metrics: %w", err)
	}
	for _, line := range metricLines(rm) {
		fmt.Fprintln(out, " ", line)
	}
	return nil
}

// metricLines formats the data points of the engine's metrics, one a line,
// sorted.
func metricLines(rm metricdata.ResourceMetrics) []string {
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range data.DataPoints {
					lines = append(lines, fmt.Sprintf("%s{%s} = %d", m.Name, attributes(p.Attributes), p.Value))
				}
			case metricdata.Histogram[float64]:
				for _, p := range data.DataPoints {
					lines = append(lines, fmt.Sprintf("%s{%s} count=%d sum=%.4f%s", m.Name, attributes(p.Attributes), p.Count, p.Sum, m.Unit))
				}
			}
		}
	}
	sort.Strings(lines)
	return lines
}

func attributes(set attribute.Set) string {
	parts := make([]string, 0, set.Len())
	for _, kv := range set.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	return strings.Join(parts, ",")
}
