package repository_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Adversary 13: PostgreSQL's step start and end with the previous step's
// outcome run written out on the connection (statements_postgres.go: bind,
// queryOn, scanStep, scanExecution); SQLite's step outcome is a written-out
// UPDATE (stepOutcome.update); one-row statements read into a slice of cap 1.

func adv13Ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func adv13Time(t *testing.T, what string, want, got *time.Time) {
	t.Helper()
	if want == nil || got == nil {
		require.Equal(t, want == nil, got == nil, "%s: nil-ness (stored %v, returned %v)", what, want, got)
		return
	}
	require.True(t, want.Equal(*got), "%s: stored %v, returned %v", what, *want, *got)
	require.Equal(t, time.UTC, got.Location(), "%s returned not in UTC: %v", what, *got)
}

// adv13SameStep: the step a call returned is the one stored.
func adv13SameStep(t *testing.T, s *repository.Storage, got *models.StepExecution) {
	t.Helper()
	stored, err := s.GetStepExecution(context.Background(), got.StepExecutionID)
	require.NoError(t, err)
	require.Equal(t, stored.StepExecutionID, got.StepExecutionID)
	require.Equal(t, stored.ExecutionID, got.ExecutionID)
	require.Equal(t, stored.StepID, got.StepID)
	require.Equal(t, stored.Status, got.Status)
	require.Equal(t, string(stored.Input), string(got.Input), "input")
	require.Equal(t, string(stored.Output), string(got.Output), "output")
	require.Equal(t, stored.Error, got.Error, "error")
	require.Equal(t, stored.Attempt, got.Attempt)
	require.Equal(t, string(stored.Metadata), string(got.Metadata), "metadata")
	adv13Time(t, "step started_at", stored.StartedAt, got.StartedAt)
	adv13Time(t, "step completed_at", stored.CompletedAt, got.CompletedAt)
}

// adv13SameExecution: FinishExecutionParams.Finished is the row stored.
func adv13SameExecution(t *testing.T, s *repository.Storage, got *models.WorkflowExecution) {
	t.Helper()
	stored, err := s.GetExecution(context.Background(), got.ExecutionID)
	require.NoError(t, err)
	require.Equal(t, stored.DefinitionID, got.DefinitionID)
	require.Equal(t, stored.DefinitionVersion, got.DefinitionVersion)
	require.Equal(t, stored.Status, got.Status)
	require.Equal(t, stored.CurrentStepID, got.CurrentStepID)
	require.Equal(t, string(stored.Input), string(got.Input), "input")
	require.Equal(t, string(stored.Output), string(got.Output), "output")
	require.Equal(t, stored.Error, got.Error, "error")
	require.Equal(t, stored.NodeID, got.NodeID)
	require.Equal(t, stored.Version, got.Version, "version")
	require.Equal(t, string(stored.Metadata), string(got.Metadata), "metadata")
	require.Equal(t, stored.WaitSignal, got.WaitSignal)
	adv13Time(t, "last_heartbeat", stored.LastHeartbeat, got.LastHeartbeat)
	adv13Time(t, "created_at", &stored.CreatedAt, &got.CreatedAt)
	adv13Time(t, "updated_at", &stored.UpdatedAt, &got.UpdatedAt)
	adv13Time(t, "started_at", stored.StartedAt, got.StartedAt)
	adv13Time(t, "completed_at", stored.CompletedAt, got.CompletedAt)
}

// adv13Owned creates an execution n1 owns with step "a" attempt 1 started
// (outside any transaction) and returns it and the step.
func adv13Owned(t *testing.T, s *repository.Storage, id, node string) (*models.WorkflowExecution, *models.StepExecution) {
	t.Helper()
	e := create(t, s, repository.NewExecution{ExecutionID: id, NodeID: node, Running: true})
	st, err := s.StartStep(context.Background(), repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "a", NodeID: node, Attempt: 1,
		Input: map[string]string{"in": "a"}})
	require.NoError(t, err)
	return e, st
}

var adv13Rollback = errors.New("adv13: roll back")

// TestAdversary13_InTransaction: StartStep and FinishExecution, both with
// Previous, inside Storage.Transaction: what they return is what is stored
// once committed; a rolled-back transaction leaves nothing; a lost owner is
// ErrConcurrentUpdate and the transaction goes on; a duplicate attempt is
// ErrAlreadyExists.
func TestAdversary13_InTransaction(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv13Ctx(t)
		node := "n1"

		// Rolled back: nothing of either call remains.
		e, a := adv13Owned(t, s, "", node)
		before, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		err = s.Transaction(ctx, func(tx *repository.Storage) error {
			b, err := tx.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "b", NodeID: node, Attempt: 1,
				Input: "bin", Previous: &repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: a.StepExecutionID,
					NodeID: node, Status: models.StepCompleted, Output: "aout"}})
			require.NoError(t, err)
			require.Equal(t, models.StepRunning, b.Status)
			var fin models.WorkflowExecution
			require.NoError(t, tx.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: node,
				Status: models.ExecutionCompleted, Output: "done", Finished: &fin, Previous: &repository.FinishStepParams{
					ExecutionID: e.ExecutionID, StepExecutionID: b.StepExecutionID, NodeID: node, Status: models.StepFailed, Error: "e"}}))
			require.Equal(t, models.ExecutionCompleted, fin.Status)
			return adv13Rollback
		})
		require.ErrorIs(t, err, adv13Rollback)
		after, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, before.Status, after.Status)
		require.Equal(t, before.Version, after.Version)
		require.Equal(t, before.CurrentStepID, after.CurrentStepID)
		require.Empty(t, after.Output)
		h := history(t, s, e.ExecutionID)
		require.Len(t, h, 1, "rolled-back step start left a row")
		require.Equal(t, models.StepRunning, h[0].Status, "rolled-back outcome of a left")
		require.Nil(t, h[0].CompletedAt)

		// Committed: the returned models are the stored rows.
		var b *models.StepExecution
		var fin models.WorkflowExecution
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			var err error
			b, err = tx.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "b", NodeID: node, Attempt: 1,
				Input: map[string]any{"k": []int{1, 2}}, Previous: &repository.FinishStepParams{ExecutionID: e.ExecutionID,
					StepExecutionID: a.StepExecutionID, NodeID: node, Status: models.StepCompleted, Output: "aout"}})
			return err
		}))
		adv13SameStep(t, s, b)
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			return tx.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: node,
				Status: models.ExecutionFailed, Error: "boom", Finished: &fin, Previous: &repository.FinishStepParams{
					ExecutionID: e.ExecutionID, StepExecutionID: b.StepExecutionID, NodeID: node, Status: models.StepFailed, Error: "b failed"}})
		}))
		adv13SameExecution(t, s, &fin)
		require.Equal(t, before.Version+1, fin.Version)
		h = history(t, s, e.ExecutionID)
		require.Len(t, h, 2)
		require.Equal(t, models.StepCompleted, h[0].Status)
		require.JSONEq(t, `"aout"`, string(h[0].Output))
		require.Equal(t, models.StepFailed, h[1].Status)
		require.Equal(t, "b failed", *h[1].Error)

		// A lost owner: refused, nothing written, and the transaction goes
		// on and commits what it writes next.
		lost, la := adv13Owned(t, s, "", node)
		res := s.DB().Exec(`UPDATE workflow_executions SET node_id = 'n2' WHERE execution_id = ?`, lost.ExecutionID)
		require.NoError(t, res.Error)
		fresh, fa := adv13Owned(t, s, "", node)
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			_, err := tx.StartStep(ctx, repository.StartStepParams{ExecutionID: lost.ExecutionID, StepID: "b", NodeID: node, Attempt: 1,
				Previous: &repository.FinishStepParams{ExecutionID: lost.ExecutionID, StepExecutionID: la.StepExecutionID, NodeID: node, Status: models.StepCompleted}})
			require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
			err = tx.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: lost.ExecutionID, NodeID: node, Status: models.ExecutionCompleted,
				Previous: &repository.FinishStepParams{ExecutionID: lost.ExecutionID, StepExecutionID: la.StepExecutionID, NodeID: node, Status: models.StepCompleted}})
			require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
			st, err := tx.StartStep(ctx, repository.StartStepParams{ExecutionID: fresh.ExecutionID, StepID: "b", NodeID: node, Attempt: 1,
				Previous: &repository.FinishStepParams{ExecutionID: fresh.ExecutionID, StepExecutionID: fa.StepExecutionID, NodeID: node, Status: models.StepCompleted}})
			require.NoError(t, err, "the transaction after a refused write")
			require.Equal(t, "b", st.StepID)
			return nil
		}))
		lh := history(t, s, lost.ExecutionID)
		require.Len(t, lh, 1)
		require.Equal(t, models.StepRunning, lh[0].Status)
		require.Len(t, history(t, s, fresh.ExecutionID), 2)

		// A duplicate attempt: ErrAlreadyExists inside the transaction
		// (which the caller then rolls back: documented as possibly
		// half-written) and outside it, where nothing of it is written.
		dup, da := adv13Owned(t, s, "", node)
		prev := &repository.FinishStepParams{ExecutionID: dup.ExecutionID, StepExecutionID: da.StepExecutionID, NodeID: node, Status: models.StepCompleted, Output: 1}
		err = s.Transaction(ctx, func(tx *repository.Storage) error {
			_, err := tx.StartStep(ctx, repository.StartStepParams{ExecutionID: dup.ExecutionID, StepID: "a", NodeID: node, Attempt: 1, Previous: prev})
			require.ErrorIs(t, err, repository.ErrAlreadyExists)
			return err
		})
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: dup.ExecutionID, StepID: "a", NodeID: node, Attempt: 1, Previous: prev})
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		dh := history(t, s, dup.ExecutionID)
		require.Len(t, dh, 1)
		require.Equal(t, models.StepRunning, dh[0].Status, "a refused duplicate start wrote the previous step's outcome")
	})
}

// TestAdversary13_OddValues: odd ids, inputs, outputs and errors through
// the step start and end with Previous; what is returned is what is stored.
func TestAdversary13_OddValues(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv13Ctx(t)
		big := strings.Repeat("x🙂?$1", 4<<20/8)
		odd := []struct {
			name   string
			id     string
			node   string
			input  any
			output any
			err    string
		}{
			{"escaped-nul", "", "n1", models.JSON(`{"s":"\\u0000 and \\\\u0000"}`), models.JSON(`"\\u0000"`), ""},
			{"runes", "", "n1", "🙂𝄞𠜎", map[string]string{"🙂": "𝄞"}, "🙂 failed 𠜎"},
			{"placeholders", "ex?$1'\"", "node?$2", "a ? b $1 $2 ?? '?'", []string{"?", "$1", "?::jsonb"}, "why? $1 '\"\n\t; -- ? $2 \\"},
			{"nil-output", "", "n1", nil, nil, "only an error"},
			{"big", "", "n1", "in", big, strings.Repeat("?", 1000)},
		}
		for _, o := range odd {
			e, a := adv13Owned(t, s, o.id, o.node)
			b, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "b?$1", NodeID: o.node, Attempt: 2,
				Input: o.input, Previous: &repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: a.StepExecutionID,
					NodeID: o.node, Status: models.StepCompleted, Output: o.output, Error: o.err}})
			require.NoError(t, err, o.name)
			require.Equal(t, "b?$1", b.StepID, o.name)
			require.Equal(t, 2, b.Attempt, o.name)
			adv13SameStep(t, s, b)
			stA, err := s.GetStepExecution(ctx, a.StepExecutionID)
			require.NoError(t, err)
			if o.output == nil {
				require.Empty(t, stA.Output, o.name)
			} else {
				want, err := repository.MarshalJSON("x", o.output)
				require.NoError(t, err)
				require.JSONEq(t, string(want), string(stA.Output), o.name)
			}
			if o.err == "" {
				require.Nil(t, stA.Error, o.name)
			} else {
				require.NotNil(t, stA.Error, o.name)
				require.Equal(t, o.err, *stA.Error, o.name)
			}
			var fin models.WorkflowExecution
			require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: o.node,
				Status: models.ExecutionCompleted, Output: o.output, Error: o.err, Finished: &fin, Previous: &repository.FinishStepParams{
					ExecutionID: e.ExecutionID, StepExecutionID: b.StepExecutionID, NodeID: o.node, Status: models.StepCompleted, Output: o.output, Error: o.err}}), o.name)
			adv13SameExecution(t, s, &fin)
			if o.err == "" {
				require.Nil(t, fin.Error, o.name)
			} else {
				require.Equal(t, o.err, *fin.Error, o.name)
			}
			stB, err := s.GetStepExecution(ctx, b.StepExecutionID)
			require.NoError(t, err)
			require.Equal(t, models.StepCompleted, stB.Status, o.name)
			require.Equal(t, string(stA.Output), string(stB.Output), o.name)
		}
		// A real NUL escape is refused before anything is written.
		e, a := adv13Owned(t, s, "", "n1")
		_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1,
			Input: models.JSON(`"\u0000"`)})
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1,
			Previous: &repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: a.StepExecutionID, NodeID: "n1",
				Status: models.StepCompleted, Output: models.JSON(`["\\\u0000"]`)}})
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		err = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n1", Status: models.ExecutionFailed,
			Previous: &repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: a.StepExecutionID, NodeID: "n1",
				Status: models.StepFailed, Error: "nul\x00byte"}})
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		h := history(t, s, e.ExecutionID)
		require.Len(t, h, 1)
		require.Equal(t, models.StepRunning, h[0].Status)
	})
}

// TestAdversary13_Cancel: a context cancelled before the call, or while
// its statement waits for the execution's row lock (PostgreSQL), alone and
// inside the caller's transaction: the call returns the context's error and
// nothing of it is written, also once the lock is released; or, for a write
// begun outside a transaction, the call reports what was written.
//
// On PostgreSQL outside a transaction, a write the caller gives up on while
// it waits for the lock goes on and reports its true outcome (it used to
// report context.Canceled and commit once the lock was free: pgx's default
// closes the connection without cancelling the statement).
func TestAdversary13_Cancel(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ops := []struct {
			name string
			op   func(ctx context.Context, s *repository.Storage, id, step string) error
		}{
			{"StartStepWithPrevious", func(ctx context.Context, s *repository.Storage, id, step string) error {
				_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1,
					Previous: &repository.FinishStepParams{ExecutionID: id, StepExecutionID: step, NodeID: "n1", Status: models.StepCompleted, Output: "o"}})
				return err
			}},
			{"StartStep", func(ctx context.Context, s *repository.Storage, id, _ string) error {
				_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1})
				return err
			}},
			{"FinishExecutionWithPrevious", func(ctx context.Context, s *repository.Storage, id, step string) error {
				return s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n1", Status: models.ExecutionCompleted,
					Output: "x", Previous: &repository.FinishStepParams{ExecutionID: id, StepExecutionID: step, NodeID: "n1", Status: models.StepCompleted}})
			}},
		}
		for _, op := range ops {
			for _, inTx := range []bool{false, true} {
				for _, during := range []bool{false, true} {
					if during && s.Dialect() != "postgres" {
						continue
					}
					name := fmt.Sprintf("%s/tx=%v/during=%v", op.name, inTx, during)
					id, step := adv12State(t, s, "owned")
					row, steps, sigs := adv12Snapshot(t, s, id)
					ctx, cancel := context.WithCancel(adv13Ctx(t))
					defer cancel()
					var b *adv12Blocker
					if during {
						b = adv12Lock(t, s, id)
					} else {
						cancel()
					}
					run := func() error {
						if !inTx {
							return op.op(ctx, s, id, step)
						}
						var opErr error
						txErr := s.Transaction(context.Background(), func(tx *repository.Storage) error {
							opErr = op.op(ctx, tx, id, step)
							return opErr
						})
						if opErr == nil && txErr != nil {
							return fmt.Errorf("op succeeded, transaction failed: %w", txErr)
						}
						return opErr
					}
					errc := make(chan error, 1)
					go func() { errc <- run() }()
					var waiting []int64
					if during {
						waiting = adv13Blocked(t, s, b)
						cancel()
					}
					// A write begun outside a transaction reports its true
					// outcome, whenever its caller gives up: the lock is
					// released first, and the answer must match the rows.
					begun := during && !inTx
					if begun {
						require.NoError(t, b.tx.Rollback().Error)
					}
					var err error
					select {
					case err = <-errc:
					case <-time.After(30 * time.Second):
						t.Fatalf("%s: no answer within 30 s of the cancel", name)
					}
					if during && !begun {
						require.NoError(t, b.tx.Rollback().Error)
					}
					if during {
						adv13Settle(t, s, waiting)
					}
					row2, steps2, sigs2 := adv12Snapshot(t, s, id)
					if begun && err == nil {
						assert.NotEqual(t, row, row2, "%s: reported written, but the execution is as it was", name)
						continue
					}
					require.ErrorIs(t, err, context.Canceled, name)
					assert.Equal(t, row, row2, "%s: the cancelled call wrote the execution", name)
					assert.Equal(t, steps, steps2, "%s: the cancelled call wrote the journal", name)
					assert.Equal(t, sigs, sigs2, name)
				}
			}
		}
	})
}

// adv13Blocked waits (at most 10 s) for backends blocked by b and returns
// their pids.
func adv13Blocked(t *testing.T, s *repository.Storage, b *adv12Blocker) []int64 {
	t.Helper()
	for i := 0; i < 1000; i++ {
		var pids []int64
		require.NoError(t, s.DB().Raw(`SELECT pid FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid))`, b.pid).Scan(&pids).Error)
		if len(pids) > 0 {
			return pids
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no statement waited for the row lock within 10 s")
	return nil
}

// adv13Settle waits (at most 10 s) until the backends that waited for the
// lock run no statement any more (or are gone): the cancelled call's
// statement has then ended, one way or the other.
func adv13Settle(t *testing.T, s *repository.Storage, pids []int64) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		var n int64
		require.NoError(t, s.DB().Raw(`SELECT count(*) FROM pg_stat_activity WHERE pid IN ? AND pid <> pg_backend_pid() AND state = 'active'`, pids).Scan(&n).Error)
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the cancelled statement still runs 10 s after the lock was released")
}

// adv13Recorder is a sqlmock matcher that accepts any statement and records
// its text.
type adv13Recorder struct {
	mu  sync.Mutex
	sql []string
}

func (r *adv13Recorder) Match(_, actual string) error {
	r.mu.Lock()
	r.sql = append(r.sql, actual)
	r.mu.Unlock()
	return nil
}

// adv13Arg records one argument.
type adv13Arg struct{ v *driver.Value }

func (a adv13Arg) Match(v driver.Value) bool { *a.v = v; return true }

func adv13Args(n int) ([]driver.Value, []driver.Value) {
	vals := make([]driver.Value, n)
	ms := make([]driver.Value, n)
	for i := range vals {
		ms[i] = adv13Arg{&vals[i]}
	}
	return vals, ms
}

// adv13CheckNumbered: the statement has $1..$n in order of first use, no
// ?, and now() inlined k times.
func adv13CheckNumbered(t *testing.T, q string, n, nows int) {
	t.Helper()
	require.NotContains(t, q, "?", "a ? left in %s", q)
	require.Equal(t, nows, strings.Count(q, "now()"), "now() inlined in %s", q)
	found := regexp.MustCompile(`\$(\d+)`).FindAllStringSubmatch(q, -1)
	require.Len(t, found, n, "placeholders of %s", q)
	for i, m := range found {
		require.Equal(t, fmt.Sprint(i+1), m[1], "placeholder %d of %s", i, q)
	}
}

// TestAdversary13_MockStatementText: on sqlmock with GORM's PostgreSQL
// dialect, a step start and an end with Previous are one statement each,
// numbered $1..$n with now() inlined, and their arguments go separately, a
// ? or $1 inside one untouched.
func TestAdversary13_MockStatementText(t *testing.T) {
	t.Parallel()
	for _, inTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("tx=%v", inTx), func(t *testing.T) {
			rec := &adv13Recorder{}
			sqlDB, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherFunc(rec.Match)))
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, mock.ExpectationsWereMet()); _ = sqlDB.Close() })
			db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
			require.NoError(t, err)
			s, err := repository.New(context.Background(), db, repository.WithoutMigrations())
			require.NoError(t, err)
			now := time.Date(2026, 12, 5, 14, 0, 0, 123000, time.UTC)
			errText := "why? $1 '\"\n ?"
			startVals, startMatch := adv13Args(15)
			endVals, endMatch := adv13Args(12)
			if inTx {
				mock.ExpectBegin()
			}
			mock.ExpectQuery("start").WithArgs(startMatch...).WillReturnRows(sqlmock.NewRows([]string{"step_execution_id", "execution_id", "step_id",
				"status", "input", "output", "error", "attempt", "metadata", "started_at", "completed_at"}).
				AddRow("s-2", "e-1", "b", "RUNNING", `{"k":"?"}`, nil, nil, 3, nil, now, nil))
			mock.ExpectQuery("end").WithArgs(endMatch...).WillReturnRows(sqlmock.NewRows([]string{"execution_id", "definition_id",
				"definition_version", "status", "current_step_id", "input", "output", "error", "node_id", "version", "last_heartbeat",
				"metadata", "created_at", "updated_at", "started_at", "completed_at", "wait_signal"}).
				AddRow("e-1", "order", "v1", "FAILED", "b", nil, `"o"`, errText, "n1", 4, now, nil, now, now, now, now, nil))
			if inTx {
				mock.ExpectCommit()
			}
			var st *models.StepExecution
			var fin models.WorkflowExecution
			work := func(s *repository.Storage) error {
				var err error
				st, err = s.StartStep(context.Background(), repository.StartStepParams{ExecutionID: "e-1", StepID: "b", NodeID: "n1", Attempt: 3,
					Input: map[string]string{"k": "?"}, Previous: &repository.FinishStepParams{ExecutionID: "e-1", StepExecutionID: "s-1",
						NodeID: "n1", Status: models.StepFailed, Output: "$1", Error: errText}})
				if err != nil {
					return err
				}
				return s.FinishExecution(context.Background(), repository.FinishExecutionParams{ExecutionID: "e-1", NodeID: "n1",
					Status: models.ExecutionFailed, Output: "o", Error: errText, Finished: &fin, Previous: &repository.FinishStepParams{
						ExecutionID: "e-1", StepExecutionID: "s-2", NodeID: "n1", Status: models.StepCompleted, Output: nil}})
			}
			if inTx {
				require.NoError(t, s.Transaction(context.Background(), work))
			} else {
				require.NoError(t, work(s))
			}
			require.Len(t, rec.sql, 2, "statements: %q", rec.sql)
			start, end := rec.sql[0], rec.sql[1]
			adv13CheckNumbered(t, start, 15, 3)
			adv13CheckNumbered(t, end, 12, 4)
			// Previous outcome, then the start.
			require.Equal(t, []driver.Value{"FAILED", `"$1"`, errText, "s-1", "e-1", "e-1", "n1"}, startVals[:7])
			require.Equal(t, []driver.Value{"b", "e-1", "n1"}, startVals[7:10])
			require.Equal(t, []driver.Value{"b", "RUNNING", `{"k":"?"}`, int64(3)}, startVals[11:])
			require.Equal(t, []driver.Value{"COMPLETED", nil, nil, "s-2", "e-1", "e-1", "n1", "FAILED", `"o"`, errText, "e-1", "n1"}, endVals)
			require.Equal(t, "s-2", st.StepExecutionID)
			require.Equal(t, models.StepRunning, st.Status)
			require.Equal(t, 3, st.Attempt)
			require.Equal(t, `{"k":"?"}`, string(st.Input))
			require.True(t, now.Equal(*st.StartedAt))
			require.Equal(t, models.ExecutionFailed, fin.Status)
			require.Equal(t, errText, *fin.Error)
			require.EqualValues(t, 4, fin.Version)
		})
	}
}

// TestAdversary13_AppGormSettings (PostgreSQL): an app's *gorm.DB with
// prepared statements (GORM's PreparedStmtDB as the ConnPool the written-out
// statements run on) or pgx's simple protocol (arguments interpolated by the
// client: a ? or $1 inside one must stay text) runs the step start and end
// with Previous alone and in Storage.Transaction, returning what is stored.
func TestAdversary13_AppGormSettings(t *testing.T) {
	t.Parallel()
	for _, cfg := range []struct {
		name    string
		prepare bool
		simple  bool
	}{{"prepare", true, false}, {"simple", false, true}, {"prepare+simple", true, true}} {
		t.Run(cfg.name, func(t *testing.T) {
			t.Parallel()
			dsn := testutil.PostgresSchemaDSN(t)
			db, err := gorm.Open(postgres.New(postgres.Config{DSN: dsn, PreferSimpleProtocol: cfg.simple}),
				&gorm.Config{Logger: logger.Discard, PrepareStmt: cfg.prepare})
			require.NoError(t, err)
			if pool, err := db.DB(); err == nil {
				t.Cleanup(func() { _ = pool.Close() })
			}
			ctx := adv13Ctx(t)
			s, err := repository.New(ctx, db)
			require.NoError(t, err)
			seedDefinition(t, s, "order", "v1")
			errText := "why? $1 '\"\n ?? $2 \\ 🙂"
			for _, inTx := range []bool{false, true} {
				e, a := adv13Owned(t, s, "", "n?$1")
				var b *models.StepExecution
				var fin models.WorkflowExecution
				start := func(s *repository.Storage) error {
					var err error
					b, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "b?", NodeID: "n?$1", Attempt: 1,
						Input: map[string]string{"q": "?$1'"}, Previous: &repository.FinishStepParams{ExecutionID: e.ExecutionID,
							StepExecutionID: a.StepExecutionID, NodeID: "n?$1", Status: models.StepFailed, Output: "$1?", Error: errText}})
					return err
				}
				end := func(s *repository.Storage) error {
					return s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n?$1",
						Status: models.ExecutionFailed, Output: []string{"?"}, Error: errText, Finished: &fin, Previous: &repository.FinishStepParams{
							ExecutionID: e.ExecutionID, StepExecutionID: b.StepExecutionID, NodeID: "n?$1", Status: models.StepCompleted}})
				}
				if inTx {
					require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error { return start(tx) }), cfg.name)
				} else {
					require.NoError(t, start(s), cfg.name)
				}
				adv13SameStep(t, s, b)
				stA, err := s.GetStepExecution(ctx, a.StepExecutionID)
				require.NoError(t, err)
				require.Equal(t, errText, *stA.Error)
				require.JSONEq(t, `"$1?"`, string(stA.Output))
				if inTx {
					require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error { return end(tx) }), cfg.name)
				} else {
					require.NoError(t, end(s), cfg.name)
				}
				adv13SameExecution(t, s, &fin)
				require.Equal(t, errText, *fin.Error)
				// A lost owner and a duplicate attempt keep their errors.
				_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "c", NodeID: "n?$1", Attempt: 1})
				require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
				d, da := adv13Owned(t, s, "", "n1")
				_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: d.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1,
					Previous: &repository.FinishStepParams{ExecutionID: d.ExecutionID, StepExecutionID: da.StepExecutionID, NodeID: "n1", Status: models.StepCompleted}})
				require.ErrorIs(t, err, repository.ErrAlreadyExists)
			}
		})
	}
}
