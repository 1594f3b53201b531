package engine_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Adversary 14: the PostgreSQL checkpoints run on the pgx connection itself
// (queryPgx) outside a transaction; SQLite's step starts and creations
// build their returned rows in Go.

// TestAdversary14_KilledBetweenCheckpoints: ten four-step workflows whose
// second and third steps, on their first run, terminate every connection of
// the engine's pool (PostgreSQL) from inside the step function, so the
// next checkpoint (the step start carrying the previous step's outcome, or
// the end carrying the last) meets dead connections. Every workflow
// completes, every step is journaled COMPLETED exactly once, no step
// function runs twice, and what Await returns is the stored row.
func TestAdversary14_KilledBetweenCheckpoints(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			var s *repository.Storage
			kill := func() {}
			if dialect == testutil.Postgres {
				dsn := testutil.PostgresSchemaDSN(t)
				app := fmt.Sprintf("adv14_engine_%d", time.Now().UnixNano())
				var err error
				s, err = repository.NewPostgres(context.Background(), dsn+"&application_name="+app, repository.WithMaxOpenConns(4))
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				admin, err := sql.Open("pgx", testutil.PostgresDSN(t))
				require.NoError(t, err)
				t.Cleanup(func() { _ = admin.Close() })
				kill = func() {
					_, err := admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app)
					require.NoError(t, err)
				}
			} else {
				s = testutil.NewSQLiteStorage(t)
			}
			var runs runCounter
			e := engine.New(s, fast("adv14"))
			require.NoError(t, e.Register(engine.Dynamic(def("adv14kill"), func(ctx *engine.Context, in json.RawMessage) (any, error) {
				var out []any
				for i := range 4 {
					id := fmt.Sprintf("s%d", i)
					v, err := engine.Step(ctx, id, func(context.Context) (map[string]any, error) {
						key := ctx.ExecutionID() + "/" + id
						runs.ran(key)
						if (i == 1 || i == 2) && runs.snapshot()[key] == 1 {
							kill()
						}
						return map[string]any{"step": id, "in": json.RawMessage(in), "u": "é🙂", "nil": nil}, nil
					})
					if err != nil {
						return nil, err
					}
					out = append(out, v)
				}
				return out, nil
			})))
			stop := run(t, e)
			defer stop()
			ids := make([]string, 10)
			for i := range ids {
				var err error
				for try := 0; ; try++ { // a Start may itself meet a killed connection
					ids[i], err = e.Start(t.Context(), "adv14kill", "v1", map[string]any{"n": i, "s": "漢字"})
					if err == nil || try == 5 {
						break
					}
				}
				require.NoError(t, err)
			}
			for _, id := range ids {
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				var exec *models.WorkflowExecution
				var err error
				for ctx.Err() == nil {
					if exec, err = e.Await(ctx, id); err == nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				cancel()
				require.NoError(t, err)
				require.Equal(t, models.ExecutionCompleted, exec.Status, "execution %s: %v", id, exec.Error)
				// The test's own reads may meet a connection a step of a
				// workflow still running killed: they try again, as an
				// app would.
				stored := adv14Read(t, func() (*models.WorkflowExecution, error) { return s.GetExecution(context.Background(), id) })
				require.Equal(t, *stored, *exec, "Await returned a row unlike the stored one")
				h := adv14Read(t, func() ([]models.StepExecution, error) { return s.GetStepExecutionHistory(context.Background(), id) })
				require.Len(t, h, 4, "execution %s: %v", id, statuses(h))
				for i, st := range h {
					require.Equal(t, fmt.Sprint("s", i), st.StepID)
					require.Equal(t, models.StepCompleted, st.Status)
				}
			}
			for key, n := range runs.snapshot() {
				require.Equal(t, 1, n, "step %s ran %d times", key, n)
			}
			require.Len(t, runs.snapshot(), 40)
		})
	}
}

// adv14Read runs read until it succeeds, at most 5 times: a read that met a
// connection the test killed fails once, and the pool drops that
// connection.
func adv14Read[T any](t *testing.T, read func() (T, error)) T {
	t.Helper()
	var v T
	var err error
	for range 5 {
		if v, err = read(); err == nil {
			return v
		}
	}
	require.NoError(t, err)
	return v
}
