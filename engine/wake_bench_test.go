package engine_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// BenchmarkWake measures pushed wake-ups on PostgreSQL between two engines on
// two stores (two pools, two listeners, one schema), each polling every 30 s,
// so that every latency below comes from an event. Each op is one wake-up;
// the metrics are the median and the 90th percentile, in milliseconds:
//
//	start:  Start on A (which does not run the workflow) until its first step runs on B
//	signal: Signal on A until the workflow parked for it on B has its payload
//	await:  FinishExecution's commit on B until Await on A returns
//	cancel: Cancel on A until the running step's ctx is done on B
func BenchmarkWake(b *testing.B) {
	b.Run("start", func(b *testing.B) {
		ran := make(chan time.Time, 1)
		wf := engine.Define("bench-wake-start", "v1", func(ctx *engine.Context, _ int) (bool, error) {
			return engine.Step(ctx, "run", func(context.Context) (bool, error) {
				ran <- time.Now()
				return true, nil
			})
		})
		a, _, _, _ := benchWakeNodes(b, wf)
		var lat []time.Duration
		for b.Loop() {
			start := time.Now()
			if _, err := wf.Start(b.Context(), a, 1); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, benchReceive(b, ran).Sub(start))
		}
		reportLatencies(b, lat)
	})

	b.Run("signal", func(b *testing.B) {
		resumed := make(chan time.Time, 1)
		wf := engine.Define("bench-wake-signal", "v1", func(ctx *engine.Context, _ int) (string, error) {
			got, err := engine.AwaitSignal[string](ctx, "go", 0)
			if err == nil {
				resumed <- time.Now()
			}
			return got, err
		})
		a, b2, sb, _ := benchWakeNodes(b, wf)
		var lat []time.Duration
		for b.Loop() {
			b.StopTimer()
			h, err := wf.Start(b.Context(), b2, 1)
			if err != nil {
				b.Fatal(err)
			}
			benchParked(b, sb, h.ID())
			b.StartTimer()
			start := time.Now()
			if err := a.Signal(b.Context(), h.ID(), "go", "x"); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, benchReceive(b, resumed).Sub(start))
		}
		reportLatencies(b, lat)
	})

	b.Run("await", func(b *testing.B) {
		entered, release := make(chan struct{}, 1), make(chan struct{})
		wf := engine.Define("bench-wake-await", "v1", func(ctx *engine.Context, _ int) (bool, error) {
			return engine.Step(ctx, "work", func(context.Context) (bool, error) {
				entered <- struct{}{}
				<-release
				return true, nil
			})
		})
		a, b2, _, ended := benchWakeNodes(b, wf)
		var lat []time.Duration
		for b.Loop() {
			b.StopTimer()
			h, err := wf.Start(b.Context(), b2, 1)
			if err != nil {
				b.Fatal(err)
			}
			benchReceive(b, entered)
			awaited := make(chan time.Time, 1)
			go func() {
				_, err := a.Await(b.Context(), h.ID())
				if err != nil {
					b.Error(err)
				}
				awaited <- time.Now()
			}()
			time.Sleep(5 * time.Millisecond) // Await has looked and waits
			b.StartTimer()
			release <- struct{}{}
			end := benchReceive(b, ended)
			lat = append(lat, benchReceive(b, awaited).Sub(end))
		}
		reportLatencies(b, lat)
	})

	b.Run("cancel", func(b *testing.B) {
		entered, stopped := make(chan struct{}, 1), make(chan time.Time, 1)
		wf := engine.Define("bench-wake-cancel", "v1", func(ctx *engine.Context, _ int) (bool, error) {
			return engine.Step(ctx, "long", func(sctx context.Context) (bool, error) {
				entered <- struct{}{}
				<-sctx.Done()
				stopped <- time.Now()
				return false, sctx.Err()
			})
		})
		a, b2, _, _ := benchWakeNodes(b, wf)
		var lat []time.Duration
		for b.Loop() {
			b.StopTimer()
			h, err := wf.Start(b.Context(), b2, 1)
			if err != nil {
				b.Fatal(err)
			}
			benchReceive(b, entered)
			b.StartTimer()
			start := time.Now()
			if err := a.Cancel(b.Context(), h.ID()); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, benchReceive(b, stopped).Sub(start))
		}
		reportLatencies(b, lat)
	})
}

// finishClock is B's storage: it tells when each FinishExecution committed.
type finishClock struct {
	*repository.Storage
	ended chan time.Time
}

// FinishExecution records when the end committed.
func (f *finishClock) FinishExecution(ctx context.Context, p repository.FinishExecutionParams) error {
	err := f.Storage.FinishExecution(ctx, p)
	select {
	case f.ended <- time.Now():
	default:
	}
	return err
}

// benchWakeNodes runs engine A (no workflow) and engine B (running wf) on
// two stores of one PostgreSQL schema, and returns them with B's storage and
// the times B's FinishExecution calls returned.
func benchWakeNodes(b *testing.B, wf engine.Registrable) (a, b2 *engine.Engine, sb *repository.Storage, ended <-chan time.Time) {
	b.Helper()
	dsn := testutil.PostgresSchemaDSN(b)
	open := func() *repository.Storage {
		s, err := repository.Open(context.Background(), dsn, repository.WithMaxOpenConns(4))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	sa, sb := open(), open()
	a = engine.New(sa, wakeConfig("A"))
	clock := &finishClock{Storage: sb, ended: make(chan time.Time, 1)}
	b2 = engine.New(clock, wakeConfig("B"))
	if err := b2.Register(wf); err != nil {
		b.Fatal(err)
	}
	for _, e := range []*engine.Engine{a, b2} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		b.Cleanup(func() {
			cancel()
			<-done
		})
	}
	time.Sleep(200 * time.Millisecond) // both listening
	return a, b2, sb, clock.ended
}

func benchReceive[T any](b *testing.B, ch <-chan T) T {
	b.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wakeBound):
		b.Fatalf("nothing within %s", wakeBound)
	}
	var zero T
	return zero
}

// benchParked waits until the execution is parked.
func benchParked(b *testing.B, s *repository.Storage, id string) {
	b.Helper()
	deadline := time.Now().Add(wakeBound)
	for time.Now().Before(deadline) {
		exec, err := s.GetExecution(b.Context(), id)
		if err != nil {
			b.Fatal(err)
		}
		if exec.NodeID == nil && exec.Status == models.ExecutionRunning {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("execution %s did not park within %s", id, wakeBound)
}

// reportLatencies reports the median and 90th percentile in milliseconds.
func reportLatencies(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "median-ms")
	b.ReportMetric(ms(lat[len(lat)*9/10]), "p90-ms")
	b.ReportMetric(0, "ns/op") // the wall time per op includes setup between ops
	b.Logf("%d wake-ups: median %.2f ms, p90 %.2f ms, max %s", len(lat), ms(lat[len(lat)/2]), ms(lat[len(lat)*9/10]), fmt.Sprint(lat[len(lat)-1]))
}
