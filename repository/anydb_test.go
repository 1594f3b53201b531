package repository_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	glebarez "github.com/glebarez/sqlite"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Tests that the repository gives the same guarantees and errors on every
// driver an app may open its *gorm.DB with, whatever its connection settings.

func TestSignal_ToEndedExecutionIsRefused(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		for _, st := range []models.ExecutionStatus{models.ExecutionCompleted, models.ExecutionFailed, models.ExecutionCancelled, models.ExecutionTimedOut} {
			exec := create(t, s, repository.NewExecution{})
			require.NoError(t, s.UpdateExecutionStatus(ctx, exec.ExecutionID, st))
			err := s.SendSignal(ctx, exec.ExecutionID, "approve", nil)
			require.ErrorIs(t, err, repository.ErrExecutionEnded, st)
			require.NotErrorIs(t, err, repository.ErrNotFound)
			_, ok, err := s.CheckSignal(ctx, exec.ExecutionID, "approve")
			require.NoError(t, err)
			require.False(t, ok, "nothing stored for %s", st)
		}
		running := create(t, s, repository.NewExecution{})
		require.NoError(t, s.UpdateExecutionStatus(ctx, running.ExecutionID, models.ExecutionRunning))
		require.NoError(t, s.SendSignal(ctx, running.ExecutionID, "approve", nil))
		require.ErrorIs(t, s.SendSignal(ctx, "missing", "approve", nil), repository.ErrNotFound)
	})
}

func TestCreate_WithDefinition(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		def := &models.WorkflowDefinition{ID: "fresh", Version: "v1", Name: "fresh workflow", Spec: models.JSON(`{"a":1}`)}
		exec, err := s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e1", Definition: def, Labels: map[string]string{"k": "v"}})
		require.NoError(t, err)
		require.Equal(t, "fresh", exec.DefinitionID)
		require.Equal(t, "v1", exec.DefinitionVersion)
		stored, err := s.GetDefinition(ctx, "fresh", "v1")
		require.NoError(t, err)
		require.Equal(t, "fresh workflow", stored.Name)
		require.JSONEq(t, `{"a":1}`, string(stored.Spec))

		// A stored definition is never overwritten.
		other := &models.WorkflowDefinition{ID: "fresh", Version: "v1", Name: "renamed", Spec: models.JSON(`{"b":2}`)}
		_, err = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e2", DefinitionID: "fresh", DefinitionVersion: "v1", Definition: other})
		require.NoError(t, err)
		stored, err = s.GetDefinition(ctx, "fresh", "v1")
		require.NoError(t, err)
		require.Equal(t, "fresh workflow", stored.Name)

		// An existing id is still ErrAlreadyExists, and the definition stays.
		_, err = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e1", Definition: other})
		require.ErrorIs(t, err, repository.ErrAlreadyExists)

		// The definition must be the one the execution names.
		_, err = s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Definition: other})
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		_, err = s.CreateExecution(ctx, repository.NewExecution{Definition: &models.WorkflowDefinition{ID: "noname", Version: "v1"}})
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		_, err = s.GetDefinition(ctx, "noname", "v1")
		require.ErrorIs(t, err, repository.ErrNotFound)
	})
}

func TestCreate_DefinitionRollsBackWithTheTransaction(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		def := &models.WorkflowDefinition{ID: "tx", Version: "v1", Name: "tx workflow"}
		err := s.Transaction(ctx, func(tx *repository.Storage) error {
			if _, err := tx.CreateExecution(ctx, repository.NewExecution{ExecutionID: "tx-1", Definition: def}); err != nil {
				return err
			}
			return fmt.Errorf("app fails")
		})
		require.Error(t, err)
		_, err = s.GetDefinition(ctx, "tx", "v1")
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = s.GetExecution(ctx, "tx-1")
		require.ErrorIs(t, err, repository.ErrNotFound)
	})
}

// recorder is a GORM logger that keeps every failed statement and every
// warning or error message.
type recorder struct {
	mu     sync.Mutex
	failed []string
}

func (r *recorder) LogMode(logger.LogLevel) logger.Interface { return r }
func (r *recorder) Info(context.Context, string, ...any)     {}
func (r *recorder) Warn(_ context.Context, msg string, args ...any) {
	r.add("warn: " + fmt.Sprintf(msg, args...))
}
func (r *recorder) Error(_ context.Context, msg string, args ...any) {
	r.add("error: " + fmt.Sprintf(msg, args...))
}
func (r *recorder) Trace(_ context.Context, _ time.Time, fc func() (string, int64), err error) {
	if err != nil {
		sql, _ := fc()
		r.add(fmt.Sprintf("failed: %s: %v", sql, err))
	}
}
func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, s)
}
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.failed
	r.failed = nil
	return out
}

// appDBs opens, for each driver, a database the way an app does, with its
// own GORM logger.
func appDBs(t *testing.T, log logger.Interface) map[string]*gorm.DB {
	t.Helper()
	dir := t.TempDir()
	glebarezDB, err := gorm.Open(glebarez.Open(filepath.Join(dir, "glebarez.db")), &gorm.Config{Logger: log})
	require.NoError(t, err)
	pg := testutil.NewPostgresConnDB(t)
	pg.Logger = log
	dbs := map[string]*gorm.DB{
		"glebarez":            glebarezDB,
		mattn:                 openMattnFile(t, filepath.Join(dir, "mattn.db"), &gorm.Config{Logger: log}),
		mattnTranslate:        openMattnFile(t, filepath.Join(dir, "mattn-tr.db"), &gorm.Config{Logger: log, TranslateError: true}),
		testutil.PostgresConn: pg,
	}
	t.Cleanup(func() {
		if sqlDB, err := glebarezDB.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return dbs
}

// The library's expected outcomes (an existing id, a missing one) are
// answers, not failing statements in the app's SQL log.
func TestExpectedOutcomesAreNotErrorsInTheAppLog(t *testing.T) {
	t.Parallel()
	for name, db := range appDBs(t, &recorder{}) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			log := db.Logger.(*recorder)
			s, err := repository.New(ctx, db)
			require.NoError(t, err)
			seedDefinition(t, s, "order", "v1")
			log.take() // New may warn of a file without WAL; that is another test

			in := repository.NewExecution{ExecutionID: "e1", DefinitionID: "order", DefinitionVersion: "v1"}
			_, err = s.CreateExecution(ctx, in)
			require.NoError(t, err)
			_, err = s.CreateExecution(ctx, in)
			require.ErrorIs(t, err, repository.ErrAlreadyExists)
			_, err = s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "nope", DefinitionVersion: "v1"})
			require.ErrorIs(t, err, repository.ErrNotFound)
			_, err = s.GetExecution(ctx, "missing")
			require.ErrorIs(t, err, repository.ErrNotFound)
			_, err = s.GetDefinition(ctx, "nope", "v1")
			require.ErrorIs(t, err, repository.ErrNotFound)
			require.ErrorIs(t, s.SendSignal(ctx, "missing", "go", nil), repository.ErrNotFound)
			_, err = s.CreateStepExecution(ctx, "missing", "step", nil, 1)
			require.ErrorIs(t, err, repository.ErrNotFound)
			require.ErrorIs(t, s.DeleteDefinition(ctx, "order", "v1"), repository.ErrInUse)
			require.ErrorIs(t, s.DeleteDefinition(ctx, "nope", ""), repository.ErrNotFound)
			require.Empty(t, log.take())
		})
	}
}

func TestNew_WarnsOfSQLiteFileWithoutWAL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	newWarnings := func(t *testing.T, db *gorm.DB, opts ...repository.Option) string {
		t.Helper()
		var buf bytes.Buffer
		opts = append(opts, repository.WithLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))))
		_, err := repository.New(ctx, db, opts...)
		require.NoError(t, err)
		return buf.String()
	}
	t.Run("mattn without WAL", func(t *testing.T) {
		got := newWarnings(t, openMattnFile(t, filepath.Join(dir, "plain.db"), &gorm.Config{}))
		require.Contains(t, got, "level=WARN")
		require.Contains(t, got, "not WAL")
		require.Contains(t, got, "plain.db")
	})
	t.Run("glebarez without WAL", func(t *testing.T) {
		db, err := gorm.Open(glebarez.Open(filepath.Join(dir, "glebarez.db")), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		t.Cleanup(func() { sqlDB, _ := db.DB(); _ = sqlDB.Close() })
		require.Contains(t, newWarnings(t, db), "not WAL")
	})
	t.Run("mattn with WAL", func(t *testing.T) {
		got := newWarnings(t, openMattnFile(t, filepath.Join(dir, "wal.db")+"?_journal_mode=WAL", &gorm.Config{}))
		require.Empty(t, got)
	})
	t.Run("mattn in memory", func(t *testing.T) {
		got := newWarnings(t, openMattnFile(t, "file:mem?mode=memory&cache=shared", &gorm.Config{}))
		require.Empty(t, got)
	})
	t.Run("the app's GORM logger without WithLogger", func(t *testing.T) {
		log := &recorder{}
		_, err := repository.New(ctx, openMattnFile(t, filepath.Join(dir, "gormlog.db"), &gorm.Config{Logger: log}))
		require.NoError(t, err)
		got := log.take()
		require.Len(t, got, 1)
		require.Contains(t, got[0], "not WAL")
	})
	t.Run("repository's own storages", func(t *testing.T) {
		for _, open := range []func(...repository.Option) (*repository.Storage, error){
			func(o ...repository.Option) (*repository.Storage, error) { return repository.NewInMemory(ctx, o...) },
			func(o ...repository.Option) (*repository.Storage, error) {
				return repository.NewSQLite(ctx, filepath.Join(dir, "own.db"), o...)
			},
		} {
			var buf bytes.Buffer
			s, err := open(repository.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
			require.NoError(t, err)
			require.NoError(t, s.Close())
			require.Empty(t, buf.String())
		}
	})
}

// Two nodes, each with its own pool, on one file opened as a typical app
// opens it (gorm.io/driver/sqlite, no WAL, deferred transactions, foreign
// keys off) migrate, create, update, claim and checkpoint concurrently, and
// none of their calls fails with "database is locked".
func TestTwoNodesOnOneSQLiteFileWithoutWAL(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "shared.db")
	const nodes, workers, each = 2, 4, 15
	stores := make([]*repository.Storage, nodes)
	race(t, nodes, func(i int) {
		s, err := repository.New(ctx, openMattnFile(t, path, &gorm.Config{}))
		if err != nil {
			t.Errorf("node %d: New: %v", i, err)
			return
		}
		stores[i] = s
	})
	require.NotContains(t, stores, (*repository.Storage)(nil))
	seedDefinition(t, stores[0], "order", "v1")

	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	race(t, nodes*workers, func(i int) {
		s, node := stores[i%nodes], fmt.Sprintf("node-%d", i%nodes)
		for j := range each {
			// An execution this node owns, which it runs to the end...
			exec, err := s.CreateExecution(ctx, repository.NewExecution{
				ExecutionID: fmt.Sprintf("w%d-%d", i, j), DefinitionID: "order", DefinitionVersion: "v1",
				Labels: map[string]string{"worker": fmt.Sprint(i)}, NodeID: node,
			})
			if err != nil {
				fail("create: %v", err)
				continue
			}
			version := int64(exec.Version)
			if err := s.UpdateExecutionStatusWithVersion(ctx, exec.ExecutionID, models.ExecutionRunning, &version); err != nil {
				fail("update: %v", err)
			}
			if err := s.SendSignal(ctx, exec.ExecutionID, "go", nil); err != nil {
				fail("signal: %v", err)
			}
			if _, _, err := s.ReceiveSignal(ctx, repository.ReceiveSignalParams{ExecutionID: exec.ExecutionID, NodeID: node, SignalName: "go", StepID: "wait"}); err != nil {
				fail("receive signal: %v", err)
			}
			// ...and an unowned one, which any node may claim.
			if _, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1"}); err != nil {
				fail("create unowned: %v", err)
			}
			claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: node, StaleThreshold: time.Hour, Limit: 2})
			if err != nil {
				fail("claim: %v", err)
			}
			for _, c := range append(claimed, *exec) {
				step, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: c.ExecutionID, StepID: "a", NodeID: node, Attempt: 1})
				if err != nil {
					fail("start step: %v", err)
					continue
				}
				if err := s.FinishStep(ctx, repository.FinishStepParams{ExecutionID: c.ExecutionID, StepExecutionID: step.StepExecutionID, NodeID: node, Status: models.StepCompleted}); err != nil {
					fail("finish step: %v", err)
				}
				if err := s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: c.ExecutionID, NodeID: node, Status: models.ExecutionCompleted}); err != nil {
					fail("finish: %v", err)
				}
			}
		}
	})
	require.Empty(t, failures)
	all, err := stores[1].ListExecutionsByStatus(ctx, nil, nil)
	require.NoError(t, err)
	require.Len(t, all, 2*nodes*workers*each)
}

// The storage suite's forEachDialect covers gorm.io/driver/sqlite and an
// app's PostgreSQL pool; this pins that they are in it.
func TestDriversIncludeAppDrivers(t *testing.T) {
	require.Subset(t, testutil.Drivers(), []string{testutil.SQLite, testutil.Postgres, testutil.PostgresConn, mattn, mattnTranslate})
}

var _ = sqlite.Open // gorm.io/driver/sqlite is used through openMattnFile
