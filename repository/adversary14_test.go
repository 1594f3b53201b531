package repository_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Adversary 14: PostgreSQL's written-out and grouped checkpoints run on the
// pgx connection itself outside a transaction (queryPgx, with its own retry
// of a connection that failed before the statement was sent); SQLite's step
// start and creation build their returned rows in Go (boundTime) and a step
// start of a RUNNING execution does not assign its status.

func adv14Ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// adv14Stored is the execution as GetExecution reads it.
func adv14Stored(t *testing.T, s *repository.Storage, id string) models.WorkflowExecution {
	t.Helper()
	x, err := s.GetExecution(context.Background(), id)
	require.NoError(t, err)
	return *x
}

// adv14StoredStep is the step execution as the history reads it.
func adv14StoredStep(t *testing.T, s *repository.Storage, executionID, stepExecutionID string) models.StepExecution {
	t.Helper()
	for _, h := range history(t, s, executionID) {
		if h.StepExecutionID == stepExecutionID {
			return h
		}
	}
	t.Fatalf("step execution %s of %s not in the history", stepExecutionID, executionID)
	return models.StepExecution{}
}

// adv14Counts is how many executions, steps and labels the storage holds.
func adv14Counts(t *testing.T, s *repository.Storage) [3]int64 {
	t.Helper()
	var out [3]int64
	for i, table := range []string{"workflow_executions", "step_executions", "workflow_execution_labels"} {
		require.NoError(t, s.DB().Raw("SELECT count(*) FROM "+table).Scan(&out[i]).Error)
	}
	return out
}

// TestAdversary14_ReturnedRowsAreStoredRows: what CreateExecution and
// StartStep return (built in Go from the bound values on SQLite, read back
// with RETURNING on PostgreSQL) is exactly, field for field, what
// GetExecution and GetStepExecutionHistory read afterwards: with and without
// input and metadata, owner, Running, labels; after a claim-like PENDING
// start, of a RUNNING one; alone, grouped, and inside a caller's transaction.
func TestAdversary14_ReturnedRowsAreStoredRows(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv14Ctx(t)
		inputs := []any{nil, "x", map[string]any{"k": []any{1, "é", nil, true}, "emoji": "🙂", "q": `"\`}, strings.Repeat("y", 70000)}
		variants := []repository.NewExecution{
			{},
			{NodeID: "n1"},
			{NodeID: "n1", Running: true},
			{Input: inputs[2], Metadata: map[string]string{"traceparent": "00-abc"}, NodeID: "n1", Running: true},
			{Input: inputs[3], Labels: map[string]string{"tenant": "t1"}, NodeID: "n1"},
			{Input: inputs[1], Metadata: "m", Definition: &models.WorkflowDefinition{ID: "fresh", Version: "v9", Name: "fresh", Spec: models.JSON(`{"a":1}`)}},
		}
		check := func(label string, in repository.NewExecution, create func(repository.NewExecution) (*models.WorkflowExecution, error)) *models.WorkflowExecution {
			if in.DefinitionID == "" && in.Definition == nil {
				in.DefinitionID, in.DefinitionVersion = "order", "v1"
			}
			got, err := create(in)
			require.NoError(t, err, label)
			stored := adv14Stored(t, s, got.ExecutionID)
			require.Equal(t, stored, *got, "%s: CreateExecution returned a row unlike the stored one", label)
			return got
		}
		alone := func(in repository.NewExecution) (*models.WorkflowExecution, error) { return s.CreateExecution(ctx, in) }
		inTx := func(in repository.NewExecution) (x *models.WorkflowExecution, err error) {
			err = s.Transaction(ctx, func(tx *repository.Storage) error {
				x, err = tx.CreateExecution(ctx, in)
				return err
			})
			return x, err
		}
		var owned []*models.WorkflowExecution
		for i, v := range variants {
			if i == len(variants)-1 {
				v2 := v
				v2.Definition = &models.WorkflowDefinition{ID: "fresh2", Version: "v9", Name: "fresh2", Spec: models.JSON(`{"a":2}`)}
				check(fmt.Sprint("variant ", i, " in tx"), v2, inTx)
			} else {
				check(fmt.Sprint("variant ", i, " in tx"), v, inTx)
			}
			x := check(fmt.Sprint("variant ", i), v, alone)
			if v.NodeID != "" {
				owned = append(owned, x)
			}
		}

		// Grouped creations (SQLite: one transaction; PostgreSQL: one
		// statement over arrays).
		release, grouped := repository.HoldCheckpoints(s)
		got := make([]*models.WorkflowExecution, 4)
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Input: inputs[i], NodeID: "n1", Running: i%2 == 0}
				if i == 3 {
					in.Metadata = inputs[2]
				}
				got[i], errs[i] = s.CreateExecution(ctx, in)
			}()
		}
		if grouped {
			require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == len(got) }, 20*time.Second, time.Millisecond)
		}
		release()
		wg.Wait()
		for i := range got {
			require.NoError(t, errs[i])
			require.Equal(t, adv14Stored(t, s, got[i].ExecutionID), *got[i], "grouped creation %d", i)
			owned = append(owned, got[i])
		}

		// Step starts: the first of each owned execution (PENDING or
		// RUNNING), then a second one of a RUNNING execution, alone, in a
		// transaction and grouped.
		for i, x := range owned {
			p := repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1, Input: inputs[i%len(inputs)]}
			var st *models.StepExecution
			var err error
			if i%2 == 0 {
				st, err = s.StartStep(ctx, p)
			} else {
				err = s.Transaction(ctx, func(tx *repository.Storage) error {
					st, err = tx.StartStep(ctx, p)
					return err
				})
			}
			require.NoError(t, err)
			require.Equal(t, adv14StoredStep(t, s, x.ExecutionID, st.StepExecutionID), *st, "first step start of execution %d", i)
			e := adv14Stored(t, s, x.ExecutionID)
			require.Equal(t, models.ExecutionRunning, e.Status)
			require.NotNil(t, e.StartedAt)
			if x.StartedAt != nil {
				require.Equal(t, *x.StartedAt, *e.StartedAt, "a RUNNING execution's start moved")
			}
			require.Equal(t, "a", deref(e.CurrentStepID))
		}
		release, grouped = repository.HoldCheckpoints(s)
		steps := make([]*models.StepExecution, len(owned))
		serrs := make([]error, len(owned))
		for i, x := range owned {
			wg.Add(1)
			go func() {
				defer wg.Done()
				steps[i], serrs[i] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 2,
					Input: inputs[(i+1)%len(inputs)]})
			}()
		}
		if grouped {
			require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == len(owned) }, 20*time.Second, time.Millisecond)
		}
		release()
		wg.Wait()
		for i, x := range owned {
			require.NoError(t, serrs[i])
			require.Equal(t, adv14StoredStep(t, s, x.ExecutionID, steps[i].StepExecutionID), *steps[i], "grouped second step start %d", i)
			require.Equal(t, "b", deref(adv14Stored(t, s, x.ExecutionID).CurrentStepID))
		}
	})
}

// TestAdversary14_RefusedWritesNothing: a duplicate execution id, a missing
// definition, a step start by a node that does not own the execution (or of
// one ended or cancelled, or PENDING and owned by another), and a
// duplicate attempt outside a transaction, each give their error and leave
// every row as it was (execution rows compared whole, counts of every table).
func TestAdversary14_RefusedWritesNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv14Ctx(t)
		x := create(t, s, repository.NewExecution{NodeID: "n1", Running: true, Labels: map[string]string{"a": "b"}})
		_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)
		pendingTheirs := create(t, s, repository.NewExecution{NodeID: "n2"})
		runningTheirs := create(t, s, repository.NewExecution{NodeID: "n2", Running: true})
		unowned := create(t, s, repository.NewExecution{})
		ended := create(t, s, repository.NewExecution{NodeID: "n1", Running: true})
		require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: ended.ExecutionID, NodeID: "n1", Status: models.ExecutionFailed, Error: "e"}))
		cancelled := create(t, s, repository.NewExecution{NodeID: "n1", Running: true})
		require.NoError(t, repository.CancelExecution(ctx, s, cancelled.ExecutionID))
		all := []string{x.ExecutionID, pendingTheirs.ExecutionID, runningTheirs.ExecutionID, unowned.ExecutionID, ended.ExecutionID, cancelled.ExecutionID}
		snapshot := func() (map[string]models.WorkflowExecution, [3]int64) {
			m := map[string]models.WorkflowExecution{}
			for _, id := range all {
				m[id] = adv14Stored(t, s, id)
			}
			return m, adv14Counts(t, s)
		}
		before, counts := snapshot()
		same := func(label string) {
			t.Helper()
			after, c := snapshot()
			require.Equal(t, counts, c, "%s: rows written", label)
			for id, b := range before {
				require.Equal(t, b, after[id], "%s: execution %s changed", label, id)
			}
		}
		for _, tx := range []bool{false, true} {
			do := func(fn func(s *repository.Storage) error) error {
				if !tx {
					return fn(s)
				}
				var inner error
				err := s.Transaction(ctx, func(txs *repository.Storage) error {
					inner = fn(txs)
					return nil // commit whatever a refused call left
				})
				require.NoError(t, err)
				return inner
			}
			label := fmt.Sprintf("tx=%v", tx)
			err := do(func(s *repository.Storage) error {
				_, err := s.CreateExecution(ctx, repository.NewExecution{ExecutionID: x.ExecutionID, DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1"})
				return err
			})
			require.ErrorIs(t, err, repository.ErrAlreadyExists, label)
			same(label + " duplicate id")
			if s.Dialect() != "postgres" || !tx {
				// (On PostgreSQL a failed statement costs the caller's
				// transaction; these do not fail a statement there.)
				err = do(func(s *repository.Storage) error {
					_, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "nope", DefinitionVersion: "v1", NodeID: "n1", Running: true, Input: "i"})
					return err
				})
				require.ErrorIs(t, err, repository.ErrNotFound, label)
				same(label + " missing definition")
			}
			for _, id := range all[1:] {
				for _, node := range []string{"n1", "n3"} {
					err = do(func(s *repository.Storage) error {
						_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "z", NodeID: node, Attempt: 1, Input: "q"})
						return err
					})
					require.ErrorIs(t, err, repository.ErrConcurrentUpdate, "%s %s by %s", label, id, node)
					same(fmt.Sprintf("%s step start of %s by %s", label, id, node))
				}
			}
			if !tx {
				// Inside a transaction the README allows a duplicate attempt
				// to have written the current step (the caller rolls back).
				_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
				require.ErrorIs(t, err, repository.ErrAlreadyExists)
				same("duplicate attempt")
				_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n2", Attempt: 1})
				require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
				same("duplicate attempt by a non-owner")
			}
		}
	})
}

// TestAdversary14_GroupedAttemptIsTheAttemptAsked: a step start's attempt
// is stored as asked, or the call fails; it is never stored as another
// number. An attempt beyond PostgreSQL's integer is refused before any SQL,
// alone or beside others (grouped, it used to be stored wrapped around).
func TestAdversary14_GroupedAttemptIsTheAttemptAsked(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv14Ctx(t)
		attempts := []int{1 << 32, 1<<32 + 1, math.MaxInt32 + 1}
		check := func(label string, x *models.WorkflowExecution, attempt int, st *models.StepExecution, err error) {
			t.Helper()
			h := history(t, s, x.ExecutionID)
			if attempt > math.MaxInt32 {
				// Refused before any SQL: the journal's attempt is a 32-bit
				// integer on PostgreSQL, and the range is the same on SQLite.
				require.ErrorIs(t, err, repository.ErrInvalidArgument, "%s: attempt %d", label, attempt)
			}
			if err != nil {
				require.Empty(t, h, "%s: refused start of attempt %d wrote %v", label, attempt, h)
				return
			}
			require.Equal(t, attempt, st.Attempt, "%s: returned attempt", label)
			require.Len(t, h, 1)
			require.Equal(t, attempt, h[0].Attempt, "%s: asked attempt %d, stored attempt %d", label, attempt, h[0].Attempt)
		}
		for _, a := range attempts {
			x := create(t, s, repository.NewExecution{NodeID: "n1", Running: true})
			st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: a})
			check("alone", x, a, st, err)
		}
		// Grouped: each odd attempt in a group with one ordinary start (a
		// group of which one row is refused by the server is written alone).
		for _, a := range attempts {
			xs := []*models.WorkflowExecution{create(t, s, repository.NewExecution{NodeID: "n1", Running: true}),
				create(t, s, repository.NewExecution{NodeID: "n1", Running: true})}
			release, grouped := repository.HoldCheckpoints(s)
			steps := make([]*models.StepExecution, len(xs))
			errs := make([]error, len(xs))
			var wg sync.WaitGroup
			for i, x := range xs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					attempt := 1
					if i == 0 {
						attempt = a
					}
					steps[i], errs[i] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: attempt})
				}()
			}
			if grouped {
				// The odd attempt is refused before it queues.
				require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == len(xs)-1 }, 20*time.Second, time.Millisecond)
			}
			release()
			wg.Wait()
			check("grouped", xs[0], a, steps[0], errs[0])
			require.NoError(t, errs[1])
		}
	})
}

// adv14PgStorage opens a PostgreSQL storage whose connections carry a unique
// application_name, plus extra DSN parameters, and returns it with the
// name.
func adv14PgStorage(t *testing.T, params string, opts ...repository.Option) (*repository.Storage, string) {
	s, app, _ := adv14PgStorages(t, params, opts...)
	return s, app
}

// adv14PgStorages is adv14PgStorage and a second storage on the same schema,
// with a pool of its own, to read what the first wrote without touching its
// connections.
func adv14PgStorages(t *testing.T, params string, opts ...repository.Option) (*repository.Storage, string, *repository.Storage) {
	t.Helper()
	dsn := testutil.PostgresSchemaDSN(t)
	app := fmt.Sprintf("adv14_%d", time.Now().UnixNano())
	s, err := repository.NewPostgres(context.Background(), dsn+"&application_name="+app+params, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	seedDefinition(t, s, "order", "v1")
	reader, err := repository.NewPostgres(context.Background(), dsn, repository.WithMaxOpenConns(2))
	require.NoError(t, err)
	t.Cleanup(func() { _ = reader.Close() })
	return s, app, reader
}

// adv14Admin is a plain pgx pool on the test server, for killing and
// locking.
func adv14Admin(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", testutil.PostgresDSN(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// adv14Kill terminates every connection of app and returns how many.
func adv14Kill(t *testing.T, admin *sql.DB, app string) int {
	t.Helper()
	rows, err := admin.Query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app)
	require.NoError(t, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	require.NoError(t, rows.Err())
	return n
}

// adv14WarmPool makes the storage's pool hold n live connections (a dead
// one met on the way is dropped).
func adv14WarmPool(t *testing.T, s *repository.Storage, n int) {
	t.Helper()
	pool, err := s.DB().DB()
	require.NoError(t, err)
	var conns []*sql.Conn
	for tries := 0; len(conns) < n; tries++ {
		require.Less(t, tries, 10*n)
		c, err := pool.Conn(context.Background())
		require.NoError(t, err)
		if c.PingContext(context.Background()) != nil {
			_ = c.Raw(func(any) error { return driver.ErrBadConn })
			_ = c.Close()
			continue
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		require.NoError(t, c.Close())
	}
}

// adv14Journal is what a checkpoint may have written of an execution.
type adv14Journal struct {
	status, current string
	version         int64
	steps           []string // step id/attempt/status
}

func adv14Read(t *testing.T, s *repository.Storage, id string) adv14Journal {
	t.Helper()
	x := adv14Stored(t, s, id)
	j := adv14Journal{status: string(x.Status), current: deref(x.CurrentStepID), version: int64(x.Version)}
	for _, h := range history(t, s, id) {
		j.steps = append(j.steps, fmt.Sprintf("%s/%d/%s", h.StepID, h.Attempt, h.Status))
	}
	return j
}

// TestAdversary14_PgKilledIdleConnections: every pooled connection of the
// storage is terminated between checkpoints; the next step start (with the
// previous step's outcome), grouped starts and the end (with the last
// outcome) each either succeed, or fail having written nothing, and the same
// call made again then succeeds: in the end each step is journaled once,
// COMPLETED, and what the calls returned is what is stored.
func TestAdversary14_PgKilledIdleConnections(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"", "&default_query_exec_mode=exec", "&default_query_exec_mode=simple_protocol"} {
		t.Run(strings.TrimPrefix(mode, "&default_query_exec_mode="), func(t *testing.T) {
			s, app, reader := adv14PgStorages(t, mode, repository.WithMaxOpenConns(3))
			admin := adv14Admin(t)
			ctx := adv14Ctx(t)
			ids := make([]string, 3)
			prev := make([]*models.StepExecution, 3)
			for i := range ids {
				ids[i] = create(t, s, repository.NewExecution{NodeID: "n1", Running: true}).ExecutionID
				var err error
				prev[i], err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: ids[i], StepID: "s0", NodeID: "n1", Attempt: 1, Input: i})
				require.NoError(t, err)
			}
			failures := 0
			// retry runs call until it succeeds (at most 5 times), checking
			// after each failure that the journal is as before it.
			retry := func(label, id string, before adv14Journal, call func() error) {
				t.Helper()
				for try := 1; ; try++ {
					err := call()
					if err == nil {
						return
					}
					failures++
					t.Logf("%s try %d: %v", label, try, err)
					require.NotErrorIs(t, err, repository.ErrAlreadyExists, "%s: a failed try was written after all", label)
					require.NotErrorIs(t, err, repository.ErrConcurrentUpdate, "%s", label)
					require.Equal(t, before, adv14Read(t, reader, id), "%s: a failed call wrote", label)
					require.Less(t, try, 5, "%s: still failing", label)
				}
			}
			for step := 1; step <= 3; step++ {
				sid := fmt.Sprint("s", step)
				before := adv14Read(t, reader, ids[0])
				adv14WarmPool(t, s, 3)
				t.Logf("killed %d", adv14Kill(t, admin, app))
				// Alone: execution 0.
				retry(sid+" alone", ids[0], before, func() error {
					st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: ids[0], StepID: sid, NodeID: "n1", Attempt: 1, Input: "é🙂",
						Previous: &repository.FinishStepParams{ExecutionID: ids[0], StepExecutionID: prev[0].StepExecutionID, NodeID: "n1",
							Status: models.StepCompleted, Output: map[string]any{"step": step, "nil": nil}}})
					if err == nil {
						require.Equal(t, adv14StoredStep(t, reader, ids[0], st.StepExecutionID), *st)
						prev[0] = st
					}
					return err
				})
				// Grouped: executions 1 and 2.
				pending := []int{1, 2}
				for round := 0; len(pending) > 0; round++ {
					require.Less(t, round, 5, "grouped starts still failing")
					befores := map[int]adv14Journal{}
					for _, i := range pending {
						befores[i] = adv14Read(t, reader, ids[i])
					}
					adv14WarmPool(t, s, 3)
					adv14Kill(t, admin, app)
					release, _ := repository.HoldCheckpoints(s)
					errs := make([]error, 3)
					var wg sync.WaitGroup
					for _, i := range pending {
						wg.Add(1)
						go func() {
							defer wg.Done()
							st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: ids[i], StepID: sid, NodeID: "n1", Attempt: 1, Input: nil,
								Previous: &repository.FinishStepParams{ExecutionID: ids[i], StepExecutionID: prev[i].StepExecutionID, NodeID: "n1",
									Status: models.StepCompleted, Output: "out"}})
							if err == nil {
								prev[i] = st
							}
							errs[i] = err
						}()
					}
					require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == len(pending) }, 20*time.Second, time.Millisecond)
					release()
					wg.Wait()
					var still []int
					for _, i := range pending {
						if errs[i] != nil {
							failures++
							t.Logf("grouped %s of %d: %v", sid, i, errs[i])
							require.NotErrorIs(t, errs[i], repository.ErrAlreadyExists)
							require.Equal(t, befores[i], adv14Read(t, reader, ids[i]), "a failed grouped start wrote")
							still = append(still, i)
						} else {
							require.Equal(t, adv14StoredStep(t, reader, ids[i], prev[i].StepExecutionID), *prev[i])
						}
					}
					pending = still
				}
			}
			for i, id := range ids {
				before := adv14Read(t, reader, id)
				adv14WarmPool(t, s, 3)
				adv14Kill(t, admin, app)
				retry("end", id, before, func() error {
					var fin models.WorkflowExecution
					err := s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n1", Status: models.ExecutionCompleted,
						Output: []any{"done", i}, Finished: &fin, Previous: &repository.FinishStepParams{ExecutionID: id,
							StepExecutionID: prev[i].StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: "last"}})
					if err == nil {
						require.Equal(t, adv14Stored(t, reader, id), fin)
					}
					return err
				})
			}
			t.Logf("%d failed calls", failures)
			for _, id := range ids {
				j := adv14Read(t, reader, id)
				require.Equal(t, "COMPLETED", j.status)
				require.Equal(t, []string{"s0/1/COMPLETED", "s1/1/COMPLETED", "s2/1/COMPLETED", "s3/1/COMPLETED"}, j.steps)
			}
		})
	}
}

// adv14WaitLocked waits (at most 20 s) until a connection of app waits for
// a lock and returns its pid.
func adv14WaitLocked(t *testing.T, admin *sql.DB, app string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var pid int
		err := admin.QueryRow(`SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' LIMIT 1`, app).Scan(&pid)
		if err == nil {
			return pid
		}
		require.ErrorIs(t, err, sql.ErrNoRows)
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no connection of %s waited for a lock", app)
	return 0
}

// TestAdversary14_PgKilledMidCheckpoint: the connection running a
// checkpoint is terminated while its statement waits for a row lock (so it
// cannot have committed): a step start with the previous outcome, a grouped
// pair of step starts, and an end with the last outcome each fail, and
// nothing of them is written; made again they succeed once.
func TestAdversary14_PgKilledMidCheckpoint(t *testing.T) {
	t.Parallel()
	s, app := adv14PgStorage(t, "", repository.WithMaxOpenConns(3))
	admin := adv14Admin(t)
	ctx := adv14Ctx(t)
	lockRow := func(id string) (unlock func()) {
		pool, err := s.DB().DB()
		require.NoError(t, err)
		tx, err := pool.BeginTx(ctx, nil) // a connection of the storage's own pool: same schema
		require.NoError(t, err)
		var got string
		require.NoError(t, tx.QueryRowContext(ctx, `SELECT execution_id FROM workflow_executions WHERE execution_id = $1 FOR UPDATE`, id).Scan(&got))
		// Its connection carries app's name too: it is idle in
		// transaction, not waiting for a lock, so adv14WaitLocked skips it.
		return func() { _ = tx.Rollback() }
	}
	newExec := func() (string, *models.StepExecution) {
		id := create(t, s, repository.NewExecution{NodeID: "n1", Running: true}).ExecutionID
		st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "a", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)
		return id, st
	}
	prevOf := func(id string, st *models.StepExecution) *repository.FinishStepParams {
		return &repository.FinishStepParams{ExecutionID: id, StepExecutionID: st.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: "o"}
	}

	// Alone: step start, then end.
	id, a := newExec()
	for _, kind := range []string{"start", "end"} {
		before := adv14Read(t, s, id)
		unlock := lockRow(id)
		done := make(chan error, 1)
		var b *models.StepExecution
		go func() {
			if kind == "start" {
				var err error
				b, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1, Previous: prevOf(id, a)})
				done <- err
				return
			}
			done <- s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n1", Status: models.ExecutionCompleted, Previous: prevOf(id, a)})
		}()
		pid := adv14WaitLocked(t, admin, app)
		var ok bool
		require.NoError(t, admin.QueryRow(`SELECT pg_terminate_backend($1)`, pid).Scan(&ok))
		require.True(t, ok)
		err := <-done
		unlock()
		require.Error(t, err, "%s: killed while waiting for the lock, yet no error", kind)
		require.NotErrorIs(t, err, repository.ErrConcurrentUpdate)
		require.Equal(t, before, adv14Read(t, s, id), "%s: the killed statement wrote", kind)
		// Again: once.
		if kind == "start" {
			b, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1, Previous: prevOf(id, a)})
			require.NoError(t, err)
			require.Equal(t, adv14StoredStep(t, s, id, b.StepExecutionID), *b)
			a = b
		} else {
			var fin models.WorkflowExecution
			require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n1", Status: models.ExecutionCompleted,
				Previous: prevOf(id, a), Finished: &fin}))
			require.Equal(t, adv14Stored(t, s, id), fin)
		}
	}
	require.Equal(t, []string{"a/1/COMPLETED", "b/1/COMPLETED"}, adv14Read(t, s, id).steps)

	// Grouped: two starts in one statement, one of them locked.
	x1, a1 := newExec()
	x2, a2 := newExec()
	b1, b2 := adv14Read(t, s, x1), adv14Read(t, s, x2)
	unlock := lockRow(x1)
	release, grouped := repository.HoldCheckpoints(s)
	require.True(t, grouped)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, pair := range [][2]any{{x1, a1}, {x2, a2}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, st := pair[0].(string), pair[1].(*models.StepExecution)
			_, errs[i] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1, Previous: prevOf(id, st)})
		}()
	}
	require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 2 }, 20*time.Second, time.Millisecond)
	release()
	pid := adv14WaitLocked(t, admin, app)
	var ok bool
	require.NoError(t, admin.QueryRow(`SELECT pg_terminate_backend($1)`, pid).Scan(&ok))
	wg.Wait()
	unlock()
	for i, b := range []adv14Journal{b1, b2} {
		id := []string{x1, x2}[i]
		require.Error(t, errs[i], "grouped start %d: killed, yet no error", i)
		require.Equal(t, b, adv14Read(t, s, id), "grouped start %d: the killed statement wrote", i)
	}
	for i, pair := range [][2]any{{x1, a1}, {x2, a2}} {
		id, st := pair[0].(string), pair[1].(*models.StepExecution)
		b, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1, Previous: prevOf(id, st)})
		require.NoError(t, err, "grouped start %d again", i)
		require.Equal(t, adv14StoredStep(t, s, id, b.StepExecutionID), *b)
		require.Equal(t, []string{"a/1/COMPLETED", "b/1/RUNNING"}, adv14Read(t, s, id).steps)
	}
}

// TestAdversary14_PgExecModes: the written-out and grouped checkpoints on a
// pgx pool in every default_query_exec_mode a PgBouncer setup may use
// (simple_protocol, exec, cache_describe) and the default: odd values
// (NULLs, quotes, backslashes, braces, whitespace at the edges, the text
// "NULL", unicode, a large document) come back as stored, alone and grouped.
func TestAdversary14_PgExecModes(t *testing.T) {
	t.Parallel()
	odd := []any{nil, "NULL", "null", " a ", "\t{x}\n", `"\`, map[string]any{"a": []any{"{", "}", ",", nil}, "ü": "漢字🙂"},
		strings.Repeat(`{"k":"v"},`, 20000), ""}
	oddErrs := []string{"", "NULL", " edge ", "line\nnext\n", `{"a":1}`, `back\slash "q"`, "漢字"}
	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s, _ := adv14PgStorage(t, "&default_query_exec_mode="+mode, repository.WithMaxOpenConns(4))
			ctx := adv14Ctx(t)
			n := len(odd)
			ids := make([]string, n)
			for i := range ids {
				ids[i] = create(t, s, repository.NewExecution{NodeID: "n1", Running: i%2 == 0, Input: odd[i], Metadata: odd[(i+3)%n]}).ExecutionID
			}
			// Grouped creations too.
			release, _ := repository.HoldCheckpoints(s)
			var wg sync.WaitGroup
			made := make([]*models.WorkflowExecution, n)
			merrs := make([]error, n)
			for i := range made {
				wg.Add(1)
				go func() {
					defer wg.Done()
					made[i], merrs[i] = s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1",
						Running: i%2 == 1, Input: odd[(i+1)%n], Metadata: odd[(i+5)%n]})
				}()
			}
			require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == n }, 20*time.Second, time.Millisecond)
			release()
			wg.Wait()
			for i := range made {
				require.NoError(t, merrs[i])
				require.Equal(t, adv14Stored(t, s, made[i].ExecutionID), *made[i], "grouped creation %d", i)
				ids = append(ids, made[i].ExecutionID)
			}
			prev := make([]*models.StepExecution, len(ids))
			for i, id := range ids {
				st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "a", NodeID: "n1", Attempt: 1, Input: odd[i%n]})
				require.NoError(t, err)
				require.Equal(t, adv14StoredStep(t, s, id, st.StepExecutionID), *st)
				prev[i] = st
			}
			outcome := func(i int) *repository.FinishStepParams {
				p := &repository.FinishStepParams{ExecutionID: ids[i], StepExecutionID: prev[i].StepExecutionID, NodeID: "n1",
					Status: models.StepCompleted, Output: odd[(i+2)%n]}
				if e := oddErrs[i%len(oddErrs)]; e != "" {
					p.Status, p.Error, p.Output = models.StepFailed, e, nil
				}
				return p
			}
			checkPrev := func(i int) {
				t.Helper()
				h := adv14StoredStep(t, s, ids[i], prev[i].StepExecutionID)
				want := outcome(i)
				require.Equal(t, want.Status, h.Status, "step outcome %d", i)
				if want.Error != "" {
					require.Equal(t, want.Error, deref(h.Error), "step error %d", i)
				} else {
					require.Nil(t, h.Error)
				}
			}
			// Second step: first half alone, second half grouped.
			half := len(ids) / 2
			for i := range half {
				st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: ids[i], StepID: "b", NodeID: "n1", Attempt: 1, Input: odd[(i+4)%n], Previous: outcome(i)})
				require.NoError(t, err)
				require.Equal(t, adv14StoredStep(t, s, ids[i], st.StepExecutionID), *st)
				checkPrev(i)
				prev[i] = st
			}
			release, _ = repository.HoldCheckpoints(s)
			serrs := make([]error, len(ids))
			got := make([]*models.StepExecution, len(ids))
			for i := half; i < len(ids); i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i], serrs[i] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: ids[i], StepID: "b", NodeID: "n1", Attempt: 1, Input: odd[(i+4)%n], Previous: outcome(i)})
				}()
			}
			require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == len(ids)-half }, 20*time.Second, time.Millisecond)
			release()
			wg.Wait()
			for i := half; i < len(ids); i++ {
				require.NoError(t, serrs[i], "grouped start %d", i)
				require.Equal(t, adv14StoredStep(t, s, ids[i], got[i].StepExecutionID), *got[i], "grouped start %d", i)
				checkPrev(i)
				prev[i] = got[i]
			}
			// Ends: first half grouped, second half alone.
			fins := make([]models.WorkflowExecution, len(ids))
			ferrs := make([]error, len(ids))
			end := func(i int) error {
				p := repository.FinishExecutionParams{ExecutionID: ids[i], NodeID: "n1", Status: models.ExecutionCompleted, Output: odd[(i+6)%n],
					Finished: &fins[i], Previous: outcome(i)}
				if e := oddErrs[(i+1)%len(oddErrs)]; e != "" {
					p.Status, p.Error, p.Output = models.ExecutionFailed, e, nil
				}
				return s.FinishExecution(ctx, p)
			}
			release, _ = repository.HoldCheckpoints(s)
			for i := range half {
				wg.Add(1)
				go func() { defer wg.Done(); ferrs[i] = end(i) }()
			}
			require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == half }, 20*time.Second, time.Millisecond)
			release()
			wg.Wait()
			for i := half; i < len(ids); i++ {
				ferrs[i] = end(i)
			}
			for i := range ids {
				require.NoError(t, ferrs[i], "end %d", i)
				require.Equal(t, adv14Stored(t, s, ids[i]), fins[i], "end %d", i)
				checkPrev(i)
			}
		})
	}
}

// TestAdversary14_RacingFencing: goroutines race step starts (each with
// the previous step's outcome) and ends of one execution by its owner
// against a takeover (TransferOwnership) or a hand-back (ReleaseExecution).
// A call that began after the takeover returned must fail and write
// nothing; every journaled step was started by a call that succeeded; at
// most one end.
func TestAdversary14_RacingFencing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv14Ctx(t)
		for round := range 6 {
			x := create(t, s, repository.NewExecution{NodeID: "n1", Running: round%3 != 0})
			first, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "s", NodeID: "n1", Attempt: 1})
			require.NoError(t, err)
			var taken atomic.Bool
			var wg sync.WaitGroup
			type result struct {
				afterTake bool
				step      *models.StepExecution
				ended     bool
				err       error
			}
			results := make([]result, 8)
			start := make(chan struct{})
			for g := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					after := taken.Load()
					r := result{afterTake: after}
					prev := &repository.FinishStepParams{ExecutionID: x.ExecutionID, StepExecutionID: first.StepExecutionID, NodeID: "n1",
						Status: models.StepCompleted, Output: g}
					if g == 7 {
						var fin models.WorkflowExecution
						r.err = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: x.ExecutionID, NodeID: "n1",
							Status: models.ExecutionCompleted, Finished: &fin})
						r.ended = r.err == nil
					} else {
						p := repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: fmt.Sprint("g", g), NodeID: "n1", Attempt: 1}
						if g%2 == 0 {
							p.Previous = prev
						}
						r.step, r.err = s.StartStep(ctx, p)
					}
					results[g] = r
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				var err error
				if round%2 == 0 {
					var cur *models.WorkflowExecution
					cur, err = s.GetExecution(ctx, x.ExecutionID)
					if err == nil {
						err = s.TransferOwnership(ctx, x.ExecutionID, "n2", int64(cur.Version))
					}
				} else {
					err = s.ReleaseExecution(ctx, x.ExecutionID, "n1")
				}
				if err == nil {
					taken.Store(true)
				}
			}()
			close(start)
			wg.Wait()
			h := history(t, s, x.ExecutionID)
			ok := map[string]bool{first.StepExecutionID: true}
			ends := 0
			for g, r := range results {
				if r.afterTake {
					require.Error(t, r.err, "round %d call %d began after the takeover returned, yet succeeded", round, g)
				}
				if r.err != nil {
					require.ErrorIs(t, r.err, repository.ErrConcurrentUpdate, "round %d call %d", round, g)
				}
				if r.step != nil {
					ok[r.step.StepExecutionID] = true
				}
				if r.ended {
					ends++
				}
			}
			require.LessOrEqual(t, ends, 1)
			for _, st := range h {
				require.True(t, ok[st.StepExecutionID], "round %d: step %s journaled by no successful call", round, st.StepID)
			}
			require.Len(t, h, len(ok), "round %d: a successful step start left no row", round)
			e := adv14Stored(t, s, x.ExecutionID)
			if taken.Load() && ends == 0 {
				// Taken and never ended: the new state holds.
				if round%2 == 0 {
					require.Equal(t, "n2", deref(e.NodeID))
				} else {
					require.Nil(t, e.NodeID)
				}
			}
		}
	})
}

// adv14Connector is an app's connector: pgx's own, embedded, so that
// Driver() is pgx's driver, with each connection wrapped (as a metrics or
// tracing wrapper may do).
type adv14Connector struct{ driver.Connector }

type adv14Conn struct{ driver.Conn }

func (c adv14Connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return adv14Conn{conn}, nil
}

// TestAdversary14_PgxDriverWithWrappedConns: a pool whose Driver() is pgx's
// but whose connections are the app's wrappers. The checkpoints must work
// (or fail with an error), not panic.
func TestAdversary14_PgxDriverWithWrappedConns(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresSchemaDSN(t)
	base, err := stdlib.GetDefaultDriver().(driver.DriverContext).OpenConnector(dsn)
	require.NoError(t, err)
	pool := sql.OpenDB(adv14Connector{base})
	pool.SetMaxOpenConns(4)
	t.Cleanup(func() { _ = pool.Close() })
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: pool}), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	ctx := adv14Ctx(t)
	s, err := repository.New(ctx, db)
	require.NoError(t, err)
	seedDefinition(t, s, "order", "v1")
	var x *models.WorkflowExecution
	var st *models.StepExecution
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("a checkpoint panicked on a pool of wrapped pgx connections: %v", r)
			}
		}()
		x, err = s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
		require.NoError(t, err)
		st, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1,
			Previous: &repository.FinishStepParams{ExecutionID: x.ExecutionID, StepExecutionID: st.StepExecutionID, NodeID: "n1", Status: models.StepCompleted}})
		require.NoError(t, err)
	}()
	require.Len(t, history(t, s, x.ExecutionID), 2)
}

// TestAdversary14_PgAllPooledConnectionsDead: more pooled connections than
// queryPgx's three tries are dead (terminated while idle). database/sql
// meets the same pool by trying two pooled connections and then a new one
// (alwaysNewConn), so a read through GORM succeeds; queryPgx says it does as
// database/sql does, so a checkpoint must succeed too (or, failing, write
// nothing).
func TestAdversary14_PgAllPooledConnectionsDead(t *testing.T) {
	t.Parallel()
	s, app, reader := adv14PgStorages(t, "", repository.WithMaxOpenConns(8))
	admin := adv14Admin(t)
	ctx := adv14Ctx(t)
	id := create(t, s, repository.NewExecution{NodeID: "n1", Running: true}).ExecutionID
	a, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "a", NodeID: "n1", Attempt: 1})
	require.NoError(t, err)

	// database/sql's own retry, for comparison: a read after the kill.
	adv14WarmPool(t, s, 8)
	require.Equal(t, 8, adv14Kill(t, admin, app))
	_, err = s.GetExecution(ctx, id)
	require.NoError(t, err, "a read through database/sql after every pooled connection died")

	before := adv14Read(t, reader, id)
	adv14WarmPool(t, s, 8)
	require.Equal(t, 8, adv14Kill(t, admin, app))
	b, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1,
		Previous: &repository.FinishStepParams{ExecutionID: id, StepExecutionID: a.StepExecutionID, NodeID: "n1", Status: models.StepCompleted}})
	if err != nil {
		require.Equal(t, before, adv14Read(t, reader, id), "a failed step start wrote")
	}
	require.NoError(t, err, "a step start after every pooled connection died (database/sql would have tried a new connection)")
	require.Equal(t, adv14StoredStep(t, reader, id, b.StepExecutionID), *b)
}
