package engine_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/testutil"
)

// BenchmarkParkedWaits is issue 9's scale: one node with MaxConcurrent 8
// parks PARK_N (default 10,000) executions waiting for a signal and as many
// sleeping 5 s. It reports the goroutines while they wait, the statements per
// second the node sends with nothing parked and with the signal waiters
// parked, how late the sleepers end after their due time (p50, p99, max),
// and how long PARK_N signals take to complete every waiter. Run it alone:
//
//	go test -run '^$' -bench ParkedWaits -benchtime 1x ./engine/
func BenchmarkParkedWaits(b *testing.B) {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("PARK_N")); err == nil && v > 0 {
		n = v
	}
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		b.Run(dialect, func(b *testing.B) {
			for range b.N {
				parkedWaits(b, dialect, n)
			}
		})
	}
}

func parkedWaits(b *testing.B, dialect string, n int) {
	const nap = 5 * time.Second
	s := benchStorage(b, dialect, 8)
	cfg := engine.Config{NodeID: "park", MaxConcurrent: 8}
	e := engine.New(s, cfg)
	require.NoError(b, e.Register(napper, waiter))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); require.NoError(b, <-done) }()
	stmts := testutil.CountStatements(b, s.DB())
	rate := func(window time.Duration) float64 {
		before := stmts.Load()
		time.Sleep(window)
		return float64(stmts.Load()-before) / window.Seconds()
	}
	idle := rate(3 * time.Second)

	waiting := make([]*engine.Handle[string], n)
	sleeping := make([]*engine.Handle[string], n)
	startedAt := time.Now()
	for i := range n {
		var err error
		waiting[i], err = waiter.Start(ctx, e, 0)
		require.NoError(b, err)
		sleeping[i], err = napper.Start(ctx, e, nap)
		require.NoError(b, err)
	}
	startTime := time.Since(startedAt)
	// Every waiter parked (the last one started has).
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var parked int64
		require.NoError(b, s.DB().Model(&models.WorkflowExecution{}).
			Where("node_id IS NULL AND status = ? AND wait_signal IS NOT NULL", models.ExecutionRunning).Count(&parked).Error)
		if parked == int64(n) {
			break
		}
		require.True(b, time.Now().Before(deadline), "only %d of %d waiters parked", parked, n)
		time.Sleep(100 * time.Millisecond)
	}
	goroutines := runtime.NumGoroutine()

	// Sleepers: how late each ended after its journaled wake-up time.
	var late []time.Duration
	for _, h := range sleeping {
		_, err := h.Result(ctx)
		require.NoError(b, err)
		exec, err := h.Execution(ctx)
		require.NoError(b, err)
		steps, err := s.GetStepExecutionHistory(ctx, h.ID())
		require.NoError(b, err)
		var due time.Time
		require.NoError(b, steps[0].Output.Unmarshal(&due))
		late = append(late, exec.CompletedAt.Sub(due))
	}
	slices.Sort(late)
	parkedRate := rate(3 * time.Second) // n waiters parked, every sleeper done

	signalled := time.Now()
	for i, h := range waiting {
		require.NoError(b, e.Signal(ctx, h.ID(), "go", fmt.Sprint(i)))
	}
	for _, h := range waiting {
		_, err := h.Result(ctx)
		require.NoError(b, err)
	}
	signalTime := time.Since(signalled)

	b.ReportMetric(float64(goroutines), "goroutines-parked")
	b.ReportMetric(idle, "stmts/s-idle")
	b.ReportMetric(parkedRate, "stmts/s-parked")
	b.ReportMetric(late[len(late)/2].Seconds(), "s-late-p50")
	b.ReportMetric(late[len(late)*99/100].Seconds(), "s-late-p99")
	b.ReportMetric(late[len(late)-1].Seconds(), "s-late-max")
	b.ReportMetric(startTime.Seconds(), "s-to-start")
	b.ReportMetric(signalTime.Seconds(), "s-signals-done")
}
