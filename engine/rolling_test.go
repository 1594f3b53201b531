package engine_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// TestRollingRestart_HandsOverAtOnce: three node processes are replaced one
// by one by nodes with new ids (the new one starts, then the old one gets
// SIGTERM), while 100 five-step workflows run. The stale threshold is a
// minute, so only the graceful hand-over can keep the workflows moving: every
// workflow completes, no step that returned success runs again, and the
// longest pause between two steps of one workflow is reported.
func TestRollingRestart_HandsOverAtOnce(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		t.Run(dialect, func(t *testing.T) { rollingRestart(t, dialect) })
	}
}

func rollingRestart(t *testing.T, dialect string) {
	const workflows, stale = 100, time.Minute
	ctx := context.Background()
	dsn := "sqlite://" + t.TempDir() + "/rolling.db"
	if dialect == testutil.Postgres {
		dsn = testutil.PostgresSchemaDSN(t)
	}
	s, err := repository.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	for _, stmt := range crashTables {
		require.NoError(t, s.DB().Exec(stmt).Error)
	}
	client := engine.New(s, engine.Config{NodeID: "client"})
	require.NoError(t, client.Register(engine.Dynamic(def("crash"), crashWorkflow(nil, 0, 0))))

	nodes := map[string]*exec.Cmd{}
	startNode := func(id string) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashNode$", "-test.count=1")
		cmd.Env = append(os.Environ(), "CRASH_HELPER_DSN="+dsn, "CRASH_HELPER_NODE="+id,
			"CRASH_HELPER_STALE="+stale.String(), "CRASH_HELPER_HEARTBEAT=200ms", "CRASH_HELPER_PAUSE=100ms")
		require.NoError(t, cmd.Start())
		nodes[id] = cmd
	}
	t.Cleanup(func() {
		for _, cmd := range nodes {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	for i := range 3 {
		startNode(fmt.Sprintf("old-%d", i))
	}
	ids := make([]string, workflows)
	for i := range ids {
		ids[i], err = client.Start(ctx, "crash", "v1", i)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		var n int64
		require.NoError(t, s.DB().Table("step_runs").Count(&n).Error)
		return n > 0
	}, time.Minute, 5*time.Millisecond, "no node started working")

	// The rolling deploy: each old node is replaced by a new one.
	for i := range 3 {
		startNode(fmt.Sprintf("new-%d", i))
		old := fmt.Sprintf("old-%d", i)
		require.NoError(t, nodes[old].Process.Signal(syscall.SIGTERM))
		_ = nodes[old].Wait()
		delete(nodes, old)
		time.Sleep(300 * time.Millisecond) // the pace of the deploy, not a wait for an event
	}

	awaitCtx, cancel := context.WithTimeout(ctx, stale/2)
	defer cancel()
	for _, id := range ids {
		exec, err := client.Await(awaitCtx, id)
		require.NoError(t, err, "a workflow waited for the stale threshold: the hand-over failed")
		require.Equal(t, models.ExecutionCompleted, exec.Status)
	}

	var runs []struct {
		ExecutionID, StepID, NodeID string
		StartedAt                   int64
		EndedAt                     *int64
	}
	require.NoError(t, s.DB().Raw(`SELECT execution_id, step_id, node_id, started_at, ended_at FROM step_runs ORDER BY started_at`).Scan(&runs).Error)
	returned := map[string]int{}
	byExecution := map[string][][2]int64{}
	for _, r := range runs {
		if r.EndedAt == nil {
			continue
		}
		returned[r.ExecutionID+"/"+r.StepID]++
		byExecution[r.ExecutionID] = append(byExecution[r.ExecutionID], [2]int64{r.StartedAt, *r.EndedAt})
	}
	for key, n := range returned {
		require.Equal(t, 1, n, "step %s returned success %d times: no SIGKILL here, so it ran again after a hand-over", key, n)
	}
	var longest time.Duration
	for _, spans := range byExecution {
		slices.SortFunc(spans, func(a, b [2]int64) int { return int(a[0] - b[0]) })
		for i := 1; i < len(spans); i++ {
			longest = max(longest, time.Duration(spans[i][0]-spans[i-1][1]))
		}
	}
	t.Logf("%s: %d workflows through a rolling restart of 3 nodes; longest pause between two steps of a workflow: %s", dialect, workflows, longest)
}
