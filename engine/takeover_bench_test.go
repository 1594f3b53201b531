package engine_test

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// BenchmarkTakeover measures, with the default Config, the time from SIGKILL
// of the node running a workflow to the first step another node runs for it.
// It reports seconds per takeover; one takeover takes about StaleThreshold +
// PollInterval, so the benchmark runs once.
func BenchmarkTakeover(b *testing.B) {
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		b.Run(dialect, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				total += measureTakeover(b, dialect)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/takeover")
		})
	}
}

func measureTakeover(b *testing.B, dialect string) time.Duration {
	ctx := context.Background()
	dsn := "sqlite://" + b.TempDir() + "/takeover.db"
	if dialect == testutil.Postgres {
		dsn = testutil.PostgresSchemaDSN(b)
	}
	s, err := repository.Open(ctx, dsn)
	require.NoError(b, err)
	b.Cleanup(func() { _ = s.Close() })
	for _, stmt := range crashTables {
		require.NoError(b, s.DB().Exec(stmt).Error)
	}
	defaults := engine.Config{}
	victim := exec.Command(os.Args[0], "-test.run=^TestHelperCrashNode$", "-test.count=1")
	victim.Env = append(os.Environ(), "CRASH_HELPER_DSN="+dsn, "CRASH_HELPER_NODE=victim",
		"CRASH_HELPER_STALE="+engine.StaleThresholdDefault.String(), "CRASH_HELPER_HEARTBEAT="+engine.HeartbeatIntervalDefault.String(),
		"CRASH_HELPER_PAUSE=1s")
	require.NoError(b, victim.Start())
	b.Cleanup(func() { _ = victim.Process.Kill(); _ = victim.Wait() })

	client := engine.New(s, defaults)
	require.NoError(b, client.Register(engine.Dynamic(def("crash"), crashWorkflow(nil, 0, 0))))
	_, err = client.Start(ctx, "crash", "v1", 0)
	require.NoError(b, err)
	ranOn := func(node string) bool {
		var n int64
		require.NoError(b, s.DB().Table("step_runs").Where("node_id = ?", node).Count(&n).Error)
		return n > 0
	}
	require.Eventually(b, func() bool { return ranOn("victim") }, time.Minute, 10*time.Millisecond, "the victim never ran a step")
	require.NoError(b, victim.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	_ = victim.Wait()

	survivor := engine.New(s, engine.Config{NodeID: "survivor"})
	require.NoError(b, survivor.Register(engine.Dynamic(def("crash"), crashWorkflow(s, 0, 0))))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- survivor.Run(runCtx) }()
	defer func() { stop(); require.NoError(b, <-done) }()
	require.Eventually(b, func() bool { return ranOn("survivor") }, time.Minute, 10*time.Millisecond, "no takeover")
	return time.Since(killed)
}
