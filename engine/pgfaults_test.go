package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// pgFaultRun runs 50 five-step workflows on a PostgreSQL pool of its own and
// calls fault while they run; all complete and no step function runs twice.
func pgFaultRun(t *testing.T, fault func(t *testing.T, admin *repository.Storage, app string)) {
	dsn := testutil.PostgresSchemaDSN(t)
	app := fmt.Sprintf("wf_fault_%d", time.Now().UnixNano())
	s, err := repository.NewPostgres(context.Background(), dsn+"&application_name="+app, repository.WithMaxOpenConns(6))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	admin := testutil.NewPostgresStorage(t)

	var runs runCounter
	e := engine.New(s, fast("pgfault"))
	require.NoError(t, e.Register(engine.Dynamic(def("pgfault"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
		for i := range 5 {
			id := fmt.Sprintf("s%d", i)
			if _, err := engine.Step(ctx, id, func(context.Context) (bool, error) {
				runs.ran(ctx.ExecutionID() + "/" + id)
				time.Sleep(10 * time.Millisecond) // a step that takes a moment, so faults land mid-run
				return true, nil
			}); err != nil {
				return nil, err
			}
		}
		return "done", nil
	})))
	run(t, e)
	ids := make([]string, 50)
	for i := range ids {
		ids[i], err = e.Start(t.Context(), "pgfault", "v1", i)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return len(runs.snapshot()) > 20 }, time.Minute, 5*time.Millisecond)
	fault(t, admin, app)
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var exec *models.WorkflowExecution
		for ctx.Err() == nil { // Await itself may meet the fault; ask again
			if exec, err = e.Await(ctx, id); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCompleted, exec.Status, "execution %s: %v", id, exec.Error)
	}
	for key, n := range runs.snapshot() {
		require.Equal(t, 1, n, "step %s ran %d times", key, n)
	}
	require.Len(t, runs.snapshot(), 250)
}

// TestEngine_PostgresKilledConnections: every connection of the engine's
// pool is killed (pg_terminate_backend), three times, while 50 workflows run.
func TestEngine_PostgresKilledConnections(t *testing.T) {
	t.Parallel()
	pgFaultRun(t, func(t *testing.T, admin *repository.Storage, app string) {
		for range 3 {
			var killed []bool
			require.NoError(t, admin.DB().Raw(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?`, app).Scan(&killed).Error)
			t.Logf("killed %d connections", len(killed))
			time.Sleep(100 * time.Millisecond) // the pace of the faults, not a wait for an event
		}
	})
}

// TestEngine_PostgresServerRestart restarts the PostgreSQL server while 50
// workflows run. It disturbs every other test on the server, so it runs only
// when WORKFLOW_TEST_PG_RESTART names the cluster to restart, as
// `make restart-test` does ("15 main").
func TestEngine_PostgresServerRestart(t *testing.T) {
	cluster := os.Getenv("WORKFLOW_TEST_PG_RESTART")
	if cluster == "" {
		t.Skip("restarting the server disturbs other tests: set WORKFLOW_TEST_PG_RESTART (make restart-test)")
	}
	pgFaultRun(t, func(t *testing.T, _ *repository.Storage, _ string) {
		args := append([]string{"--skip-systemctl-redirect"}, strings.Fields(cluster)...)
		out, err := exec.Command("pg_ctlcluster", append(args, "restart")...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	})
}
