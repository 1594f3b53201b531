package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// The crash test runs engine nodes as OS processes (this test binary started
// again with -test.run=TestHelperCrashNode), starts workflows of five steps,
// and SIGKILLs a random node every so often, starting a new one under a new id,
// until every workflow is done. Each step records when and where it ran
// (step_runs) and writes one side effect guarded by its idempotency key
// (ledger). `make test` runs a short version; WORKFLOW_CRASH_FULL=1 runs the
// full one (200 workflows), as `make crash` does.

const crashSteps = 5

var crashTables = []string{
	`CREATE TABLE step_runs (execution_id TEXT NOT NULL, step_id TEXT NOT NULL, node_id TEXT NOT NULL,
		started_at BIGINT NOT NULL, ended_at BIGINT)`,
	`CREATE TABLE ledger (idempotency_key TEXT NOT NULL, node_id TEXT NOT NULL)`,
}

type crashSetup struct {
	workflows     int
	killEvery     time.Duration
	deadline      time.Duration
	stepPause     time.Duration
	nodes         int
	staleAfter    time.Duration
	heartbeatEach time.Duration
}

func crashConfig() crashSetup {
	c := crashSetup{workflows: 40, killEvery: 400 * time.Millisecond, deadline: 2 * time.Minute, stepPause: 30 * time.Millisecond,
		nodes: 3, staleAfter: 2 * time.Second, heartbeatEach: 100 * time.Millisecond}
	if os.Getenv("WORKFLOW_CRASH_FULL") == "1" {
		c.workflows, c.killEvery, c.deadline, c.stepPause = 200, 250*time.Millisecond, 10*time.Minute, 100*time.Millisecond
	}
	return c
}

func TestCrash_SIGKILLNodes(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		t.Run(dialect, func(t *testing.T) { crashTest(t, dialect) })
	}
}

func crashTest(t *testing.T, dialect string) {
	cfg := crashConfig()
	ctx := context.Background()
	var dsn string
	switch dialect {
	case testutil.SQLite:
		dsn = "sqlite://" + t.TempDir() + "/crash.db"
	case testutil.Postgres:
		dsn = testutil.PostgresSchemaDSN(t)
	}
	nodeDSN, app := dsn, ""
	if dialect == testutil.Postgres {
		app = fmt.Sprintf("crash_%d", time.Now().UnixNano())
		nodeDSN += "&application_name=" + app
	}
	s, err := repository.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	for _, stmt := range crashTables {
		require.NoError(t, s.DB().Exec(stmt).Error)
	}

	client := engine.New(s, engine.Config{NodeID: "client"})
	require.NoError(t, client.Register(engine.Dynamic(def("crash"), crashWorkflow(nil, 0, 0))))
	ids := make([]string, cfg.workflows)
	for i := range ids {
		ids[i], err = client.Start(ctx, "crash", "v1", i)
		require.NoError(t, err)
	}

	nodes := map[string]*exec.Cmd{}
	started := 0
	startNode := func() {
		started++
		id := fmt.Sprintf("%s-node-%d", dialect, started)
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashNode$", "-test.count=1")
		cmd.Env = append(os.Environ(), "CRASH_HELPER_DSN="+nodeDSN, "CRASH_HELPER_NODE="+id,
			"CRASH_HELPER_STALE="+cfg.staleAfter.String(), "CRASH_HELPER_HEARTBEAT="+cfg.heartbeatEach.String(),
			"CRASH_HELPER_PAUSE="+cfg.stepPause.String(), "CRASH_HELPER_NAP="+(2*cfg.stepPause+60*time.Millisecond).String())
		require.NoError(t, cmd.Start())
		nodes[id] = cmd
	}
	stopAll := func() {
		for id, cmd := range nodes {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			delete(nodes, id)
		}
	}
	t.Cleanup(stopAll)
	for range cfg.nodes {
		startNode()
	}

	// The first kill lands as soon as the nodes are at work; then one every
	// killEvery until all workflows are done.
	require.Eventually(t, func() bool {
		var n int64
		require.NoError(t, s.DB().Table("step_runs").Count(&n).Error)
		return n > 0
	}, time.Minute, 5*time.Millisecond, "no node started working")
	deadline := time.Now().Add(cfg.deadline)
	kills, terms, connKills := 0, 0, 0
	sigkilled := map[string]int64{} // node -> when it was SIGKILLed
	var connKilledAt []int64
	for time.Now().Before(deadline) {
		if kills > 0 {
			time.Sleep(cfg.killEvery) // the pace of the chaos, not a wait for an event
		}
		live, err := s.ListExecutionsByStatus(ctx, models.LiveExecutionStatuses(), nil)
		require.NoError(t, err)
		if len(live) == 0 {
			break
		}
		names := make([]string, 0, len(nodes))
		for id := range nodes {
			names = append(names, id)
		}
		sort.Strings(names)
		victim := names[rand.IntN(len(names))]
		// Mixed faults: SIGKILL, a graceful stop (SIGTERM, which the node
		// handles), and on PostgreSQL every node connection killed.
		switch fault := kills % 3; {
		case fault == 2 && app != "":
			require.NoError(t, s.DB().Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?`, app).Error)
			connKills++
			connKilledAt = append(connKilledAt, time.Now().UnixNano())
			kills++
			continue
		case fault == 1:
			require.NoError(t, nodes[victim].Process.Signal(syscall.SIGTERM))
			_ = nodes[victim].Wait()
			terms++
		default:
			sigkilled[victim] = time.Now().UnixNano()
			require.NoError(t, nodes[victim].Process.Signal(syscall.SIGKILL))
			_ = nodes[victim].Wait()
		}
		delete(nodes, victim)
		kills++
		startNode()
	}
	stopAll()
	t.Logf("%s: %d workflows, %d nodes started, %d faults: %d SIGTERM, %d connection kills, the rest SIGKILL",
		dialect, cfg.workflows, started, kills, terms, connKills)
	require.Positive(t, kills, "the test killed nobody")

	for _, id := range ids {
		e, err := s.GetExecution(ctx, id)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCompleted, e.Status, "execution %s (error %v)", id, e.Error)
		completed := map[string]int{}
		for _, h := range history(t, s, id) {
			if h.Status == models.StepCompleted {
				completed[h.StepID]++
			}
		}
		for step := range crashSteps {
			require.Equal(t, 1, completed[stepName(step)], "%s %s: one COMPLETED journal row", id, stepName(step))
		}
	}

	var dup []struct {
		Key string `gorm:"column:idempotency_key"`
		N   int
	}
	require.NoError(t, s.DB().Raw(`SELECT idempotency_key, COUNT(*) AS n FROM ledger GROUP BY idempotency_key HAVING COUNT(*) > 1`).Scan(&dup).Error)
	require.Empty(t, dup, "side effects applied twice")
	var effects int64
	require.NoError(t, s.DB().Table("ledger").Count(&effects).Error)
	require.EqualValues(t, cfg.workflows*crashSteps, effects)

	var runs []struct {
		ExecutionID, StepID, NodeID string
		StartedAt                   int64
		EndedAt                     *int64
	}
	require.NoError(t, s.DB().Raw(`SELECT execution_id, step_id, node_id, started_at, ended_at FROM step_runs`).Scan(&runs).Error)
	// A step whose function returned success (ended_at is set just before the
	// return) runs again only if its node was SIGKILLed after that return,
	// before the result reached the journal; never after a graceful stop or a
	// killed connection.
	returned := map[string][]int{}
	for i, r := range runs {
		if r.EndedAt != nil {
			returned[r.ExecutionID+"/"+r.StepID] = append(returned[r.ExecutionID+"/"+r.StepID], i)
		}
	}
	for key, idx := range returned {
		sort.Slice(idx, func(a, b int) bool { return *runs[idx[a]].EndedAt < *runs[idx[b]].EndedAt })
		for _, i := range idx[:len(idx)-1] {
			r := runs[i]
			killedAt, killed := sigkilled[r.NodeID]
			// A connection killed just after the step's own last write may
			// lose that write's answer: the step then failed, and its retry
			// is right.
			connKilled := slices.ContainsFunc(connKilledAt, func(at int64) bool {
				return at > *r.EndedAt && at-*r.EndedAt < int64(5*time.Second)
			})
			require.True(t, (killed && killedAt > *r.EndedAt) || connKilled,
				"step %s returned success on %s and ran again, with no SIGKILL of that node after its return", key, r.NodeID)
		}
	}
	ranOn := map[string]bool{}
	for _, r := range runs {
		ranOn[r.NodeID] = true
	}
	require.Greater(t, len(ranOn), 1, "the work was spread over the live nodes: %v (%d runs)", ranOn, len(runs))
	byStep := map[string][]int{}
	for i, r := range runs {
		byStep[r.ExecutionID+"/"+r.StepID] = append(byStep[r.ExecutionID+"/"+r.StepID], i)
	}
	for key, idx := range byStep {
		for _, i := range idx {
			for _, j := range idx {
				a, b := runs[i], runs[j]
				if i == j || a.NodeID == b.NodeID || a.EndedAt == nil || b.EndedAt == nil {
					continue // a run cut short by SIGKILL ended when its node died
				}
				overlap := a.StartedAt < *b.EndedAt && b.StartedAt < *a.EndedAt
				require.False(t, overlap, "step %s ran on %s and %s at the same time", key, a.NodeID, b.NodeID)
			}
		}
	}
}

func stepName(i int) string { return "step-" + strconv.Itoa(i) }

// crashWorkflow runs crashSteps steps; each records its run and applies its
// side effect once per idempotency key.
func crashWorkflow(s *repository.Storage, pause, nap time.Duration) engine.WorkflowFunc {
	return func(wctx *engine.Context, _ json.RawMessage) (any, error) {
		for i := range crashSteps {
			step := stepName(i)
			if i == crashSteps/2 && nap > 0 {
				// A wait longer than the nodes' PollInterval: the workflow
				// parks, and the faults land on parked executions too.
				if err := engine.Sleep(wctx, "nap", nap); err != nil {
					return nil, err
				}
			}
			_, err := engine.Step(wctx, step, func(c context.Context) (bool, error) {
				db := s.DB().WithContext(c)
				start := time.Now().UnixNano()
				if err := db.Exec(`INSERT INTO step_runs (execution_id, step_id, node_id, started_at) VALUES (?, ?, ?, ?)`,
					wctx.ExecutionID(), step, wctx.NodeID(), start).Error; err != nil {
					return false, err
				}
				time.Sleep(pause) // widen the window a kill can land in
				key := wctx.ExecutionID() + "/" + step
				if err := db.Exec(`INSERT INTO ledger (idempotency_key, node_id) SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE idempotency_key = ?)`,
					key, wctx.NodeID(), key).Error; err != nil {
					return false, err
				}
				// The mark of a successful return must not be cut short by a
				// graceful stop: with it, ended_at is set exactly when the
				// function returns success.
				err := s.DB().WithContext(context.WithoutCancel(c)).Exec(`UPDATE step_runs SET ended_at = ? WHERE execution_id = ? AND step_id = ? AND node_id = ? AND started_at = ?`,
					time.Now().UnixNano(), wctx.ExecutionID(), step, wctx.NodeID(), start).Error
				return err == nil, err
			}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 5, InitialBackoff: 10 * time.Millisecond, BackoffMultiplier: 2}))
			if err != nil {
				return nil, err
			}
		}
		return "done", nil
	}
}

// TestHelperCrashNode is one engine node of the crash test; it does nothing
// unless started by it, and exits by itself after a few minutes at most.
func TestHelperCrashNode(t *testing.T) {
	dsn := os.Getenv("CRASH_HELPER_DSN")
	if dsn == "" {
		t.Skip("helper process only")
	}
	durations := map[string]time.Duration{}
	for _, k := range []string{"STALE", "HEARTBEAT", "PAUSE"} {
		d, err := time.ParseDuration(os.Getenv("CRASH_HELPER_" + k))
		require.NoError(t, err)
		durations[k] = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// SIGTERM is a graceful stop: Run's context ends and Run returns.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	s, err := repository.Open(ctx, dsn, repository.WithMaxOpenConns(8))
	require.NoError(t, err)
	defer s.Close()
	e := engine.New(s, engine.Config{
		NodeID: os.Getenv("CRASH_HELPER_NODE"), HeartbeatInterval: durations["HEARTBEAT"], StaleThreshold: durations["STALE"],
		PollInterval: 50 * time.Millisecond, MaxConcurrent: 4,
	})
	// CRASH_HELPER_NAP, if set, makes the workflow park between its steps.
	nap, _ := time.ParseDuration(os.Getenv("CRASH_HELPER_NAP"))
	require.NoError(t, e.Register(engine.Dynamic(def("crash"), crashWorkflow(s, durations["PAUSE"], nap))))
	require.NoError(t, e.Run(ctx))
}
