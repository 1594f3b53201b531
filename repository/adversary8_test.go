package repository_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	glebarez "github.com/glebarez/sqlite"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/plugins/optimisticlock"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Adversarial tests of issue 8 ("Native to a GORM app").

func adv8Ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// adv8Openers are ways an app may open its database that the registered
// drivers do not cover: glebarez on a plain file with TranslateError, and
// gorm.io/driver/postgres from a DSN with TranslateError.
var adv8Openers = map[string]func(t *testing.T) *gorm.DB{
	"adv8-glebarez-file-translate": func(t *testing.T) *gorm.DB {
		db, err := gorm.Open(glebarez.Open(filepath.Join(t.TempDir(), "app.db")), &gorm.Config{Logger: logger.Discard, TranslateError: true})
		require.NoError(t, err)
		t.Cleanup(func() { sqlDB, _ := db.DB(); _ = sqlDB.Close() })
		return db
	},
	"adv8-postgres-translate": func(t *testing.T) *gorm.DB {
		db, err := gorm.Open(postgres.Open(testutil.PostgresSchemaDSN(t)), &gorm.Config{Logger: logger.Discard, TranslateError: true})
		require.NoError(t, err)
		t.Cleanup(func() { sqlDB, _ := db.DB(); _ = sqlDB.Close() })
		return db
	},
}

// adv8ForEachDriver runs fn on every registered driver and on adv8Openers.
func adv8ForEachDriver(t *testing.T, fn func(t *testing.T, s *repository.Storage)) {
	t.Helper()
	t.Parallel()
	testutil.ForEachDriver(t, fn)
	for name, open := range adv8Openers {
		t.Run(name, func(t *testing.T) {
			s, err := repository.New(adv8Ctx(t), open(t))
			require.NoError(t, err)
			fn(t, s)
		})
	}
}

// The same errors on every driver for every expected refusal.
func TestAdversary8_SameErrorsOnEveryDriver(t *testing.T) {
	adv8ForEachDriver(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		seedDefinition(t, s, "order", "v1")
		exec, err := s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e1", DefinitionID: "order", DefinitionVersion: "v1", Labels: map[string]string{"a": "1"}})
		require.NoError(t, err)

		_, err = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e1", DefinitionID: "order", DefinitionVersion: "v1"})
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		_, err = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e1", DefinitionID: "order", DefinitionVersion: "v1", Labels: map[string]string{"b": "2"}})
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		_, err = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e1", Definition: &models.WorkflowDefinition{ID: "other", Version: "v1", Name: "other"}})
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		_, err = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e2", DefinitionID: "nobody", DefinitionVersion: "v1", Labels: map[string]string{"a": "1"}})
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = s.GetExecution(ctx, "e2")
		require.ErrorIs(t, err, repository.ErrNotFound, "nothing half-written")

		stale := int64(exec.Version)
		require.NoError(t, s.UpdateExecutionStatusWithVersion(ctx, "e1", models.ExecutionRunning, &stale))
		require.ErrorIs(t, s.UpdateExecutionStatusWithVersion(ctx, "e1", models.ExecutionRunning, &stale), repository.ErrConcurrentUpdate)
		require.ErrorIs(t, s.UpdateExecutionStatusWithVersion(ctx, "missing", models.ExecutionRunning, &stale), repository.ErrNotFound)
		require.ErrorIs(t, s.UpdateExecutionStatus(ctx, "missing", models.ExecutionRunning), repository.ErrNotFound)
		require.ErrorIs(t, s.TransferOwnership(ctx, "e1", "n2", stale), repository.ErrConcurrentUpdate)
		require.ErrorIs(t, s.TransferOwnership(ctx, "missing", "n2", stale), repository.ErrNotFound)
		require.ErrorIs(t, s.UpdateExecutionOutput(ctx, "e1", 1, &stale), repository.ErrConcurrentUpdate)

		cur, err := s.GetExecution(ctx, "e1")
		require.NoError(t, err)
		require.NoError(t, s.TransferOwnership(ctx, "e1", "n1", int64(cur.Version)))
		require.NoError(t, s.UpdateHeartbeat(ctx, "e1", "n1"))
		require.ErrorIs(t, s.UpdateHeartbeat(ctx, "e1", "n2"), repository.ErrConcurrentUpdate)
		require.ErrorIs(t, s.UpdateHeartbeat(ctx, "missing", "n1"), repository.ErrNotFound)

		_, err = s.CreateStepExecution(ctx, "missing", "s", nil, 1)
		require.ErrorIs(t, err, repository.ErrNotFound)
		step, err := s.CreateStepExecution(ctx, "e1", "s", nil, 1)
		require.NoError(t, err)
		_, err = s.CreateStepExecution(ctx, "e1", "s", nil, 1)
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		require.ErrorIs(t, s.CompleteStepExecution(ctx, "missing", models.StepCompleted, nil, ""), repository.ErrNotFound)
		require.NoError(t, s.CompleteStepExecution(ctx, step.StepExecutionID, models.StepCompleted, 1, ""))

		require.ErrorIs(t, s.SendSignal(ctx, "missing", "x", nil), repository.ErrNotFound)
		require.NoError(t, s.SendSignal(ctx, "e1", "x", nil))

		require.ErrorIs(t, s.DeleteDefinition(ctx, "order", "v1"), repository.ErrInUse)
		require.ErrorIs(t, s.DeleteDefinition(ctx, "order", ""), repository.ErrInUse)
		require.ErrorIs(t, s.DeleteDefinition(ctx, "nobody", "v1"), repository.ErrNotFound)
		_, err = s.GetDefinition(ctx, "order", "v1")
		require.NoError(t, err, "a referenced definition stays")

		require.NoError(t, s.UpdateExecutionStatus(ctx, "e1", models.ExecutionCompleted))
		require.ErrorIs(t, s.SendSignal(ctx, "e1", "x", nil), repository.ErrExecutionEnded)

		// Inside the app's transaction: the same errors, and the transaction
		// stays usable on PostgreSQL after each of them.
		require.NoError(t, s.DB().WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			in, err := repository.InTransaction(tx)
			require.NoError(t, err)
			_, err = in.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e1", DefinitionID: "order", DefinitionVersion: "v1"})
			require.ErrorIs(t, err, repository.ErrAlreadyExists)
			_, err = in.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e3", DefinitionID: "nobody", DefinitionVersion: "v1"})
			require.ErrorIs(t, err, repository.ErrNotFound)
			require.ErrorIs(t, in.SendSignal(ctx, "e1", "x", nil), repository.ErrExecutionEnded)
			require.ErrorIs(t, in.SendSignal(ctx, "missing", "x", nil), repository.ErrNotFound)
			_, err = in.GetExecution(ctx, "missing")
			require.ErrorIs(t, err, repository.ErrNotFound)
			require.ErrorIs(t, in.DeleteDefinition(ctx, "order", "v1"), repository.ErrInUse)
			require.ErrorIs(t, in.UpdateHeartbeat(ctx, "e1", "n2"), repository.ErrConcurrentUpdate)
			_, err = in.CreateExecution(ctx, repository.NewExecution{ExecutionID: "e4", DefinitionID: "order", DefinitionVersion: "v1"})
			return err
		}))
		_, err = s.GetExecution(ctx, "e4")
		require.NoError(t, err, "the transaction committed after the refusals")
	})
}

// A plain integer Version (int, int64, uint) of an app's model behaves
// exactly as without the plugin after repository.New: Create with 0, Save,
// stale Save, Updates, Update, Delete.
type adv8PlainInt struct {
	ID      int64
	Text    string
	Version int
}

type adv8PlainUint struct {
	ID      int64
	Text    string
	Version uint
}

type adv8PlainNamedCol struct {
	ID  int64
	Txt string
	Rev int64 `gorm:"column:version"`
}

func TestAdversary8_PlainVersionFieldsUntouched(t *testing.T) {
	adv8ForEachDriver(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		db := s.DB().WithContext(ctx)
		require.NoError(t, db.AutoMigrate(&adv8PlainInt{}, &adv8PlainUint{}, &adv8PlainNamedCol{}))

		a := adv8PlainInt{Text: "a"}
		require.NoError(t, db.Create(&a).Error)
		require.Zero(t, a.Version, "Create with Version 0 stays 0")
		var got adv8PlainInt
		require.NoError(t, db.First(&got, a.ID).Error)
		require.Zero(t, got.Version)
		stale := a
		a.Text = "b"
		require.NoError(t, db.Save(&a).Error)
		require.Zero(t, a.Version)
		stale.Text = "c"
		stale.Version = 42
		require.NoError(t, db.Save(&stale).Error, "a stale Save is no error without opting in")
		require.NoError(t, db.First(&got, a.ID).Error)
		require.Equal(t, adv8PlainInt{ID: a.ID, Text: "c", Version: 42}, got)
		res := db.Model(&got).Updates(map[string]any{"text": "d"})
		require.NoError(t, res.Error)
		require.EqualValues(t, 1, res.RowsAffected)
		require.NoError(t, db.First(&got, a.ID).Error)
		require.Equal(t, 42, got.Version, "Updates does not bump")
		got.Version = 1
		res = db.Model(&got).Update("text", "e")
		require.NoError(t, res.Error)
		require.EqualValues(t, 1, res.RowsAffected, "Update checks no version")
		res = db.Delete(&adv8PlainInt{ID: a.ID, Version: 7})
		require.NoError(t, res.Error)
		require.EqualValues(t, 1, res.RowsAffected, "Delete checks no version")

		// A Save of a new row with an id is an upsert, as without the plugin.
		n := adv8PlainInt{ID: 99, Text: "new", Version: 5}
		require.NoError(t, db.Save(&n).Error)
		got = adv8PlainInt{}
		require.NoError(t, db.First(&got, 99).Error)
		require.Equal(t, n, got)

		u := adv8PlainUint{Text: "a"}
		require.NoError(t, db.Create(&u).Error)
		require.Zero(t, u.Version)
		u.Version = 3
		require.NoError(t, db.Save(&u).Error)
		var gotU adv8PlainUint
		require.NoError(t, db.First(&gotU, u.ID).Error)
		require.EqualValues(t, 3, gotU.Version)

		c := adv8PlainNamedCol{Txt: "a"}
		require.NoError(t, db.Create(&c).Error)
		require.Zero(t, c.Rev)
		staleC := c
		c.Txt = "b"
		require.NoError(t, db.Save(&c).Error)
		staleC.Txt = "c"
		require.NoError(t, db.Save(&staleC).Error)

		// Batches too.
		batch := []adv8PlainInt{{Text: "x"}, {Text: "y"}}
		require.NoError(t, db.Create(&batch).Error)
		for _, b := range batch {
			require.Zero(t, b.Version)
		}
	})
}

// Models that opt in are guarded on every driver, whatever the field's name,
// column or pointer-ness; every write path checks and bumps.
type adv8Guarded struct {
	ID    int64
	Total int64
	Rev   optimisticlock.Version `gorm:"column:rev"`
}

type adv8GuardedPtr struct {
	ID      int64
	Total   int64
	Version *optimisticlock.Version
}

func TestAdversary8_OptedInModelsAreGuarded(t *testing.T) {
	adv8ForEachDriver(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		db := s.DB().WithContext(ctx)
		require.NoError(t, db.AutoMigrate(&adv8Guarded{}, &adv8GuardedPtr{}))

		g := adv8Guarded{Total: 1}
		require.NoError(t, db.Create(&g).Error)
		require.EqualValues(t, 1, g.Rev)
		stale := g
		require.NoError(t, db.Model(&g).Updates(map[string]any{"total": 2}).Error)
		require.ErrorIs(t, db.Model(&stale).Updates(map[string]any{"total": 3}).Error, optimisticlock.ErrConcurrentUpdate)
		require.ErrorIs(t, db.Model(&stale).Update("total", 4).Error, repository.ErrConcurrentUpdate)
		stale.Total = 5
		require.ErrorIs(t, db.Save(&stale).Error, optimisticlock.ErrConcurrentUpdate)
		require.ErrorIs(t, db.Delete(&stale).Error, optimisticlock.ErrConcurrentUpdate)
		var got adv8Guarded
		require.NoError(t, db.First(&got, g.ID).Error)
		require.EqualValues(t, 2, got.Total)
		require.EqualValues(t, 2, got.Rev)
		var count int64
		require.NoError(t, db.Model(&adv8Guarded{}).Count(&count).Error)
		require.EqualValues(t, 1, count, "a stale Save never falls back to an insert")

		// Bump by hand beside UpdateColumns.
		require.NoError(t, db.Model(&got).UpdateColumns(map[string]any{"total": 6, "rev": optimisticlock.Bump("rev")}).Error)
		require.NoError(t, db.First(&got, g.ID).Error)
		require.EqualValues(t, 3, got.Rev)
		require.NoError(t, db.Delete(&got).Error)

		p := adv8GuardedPtr{Total: 1}
		require.NoError(t, db.Create(&p).Error)
		require.NotNil(t, p.Version)
		require.EqualValues(t, 1, *p.Version)
		v := *p.Version
		staleP := adv8GuardedPtr{ID: p.ID, Total: 9, Version: &v}
		p.Total = 2
		require.NoError(t, db.Save(&p).Error)
		require.ErrorIs(t, db.Save(&staleP).Error, optimisticlock.ErrConcurrentUpdate)
	})
}

// models.WorkflowExecution's version is a JSON number, and reads back.
func TestAdversary8_ExecutionJSONShape(t *testing.T) {
	exec := models.WorkflowExecution{ExecutionID: "e1", Version: 3}
	b, err := json.Marshal(exec)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	var version any
	for k, v := range m {
		if k == "version" || k == "Version" {
			version = v
		}
	}
	require.Equal(t, float64(3), version, "in %s", b)
	var back models.WorkflowExecution
	require.NoError(t, json.Unmarshal(b, &back))
	require.EqualValues(t, 3, back.Version)
}

// Times are UTC on an app's PostgreSQL *sql.DB whose session runs in another
// time zone, and equal to what GetExecution reads again.
func TestAdversary8_UTCOnAppPostgresInAnotherZone(t *testing.T) {
	t.Parallel()
	ctx := adv8Ctx(t)
	dsn := testutil.PostgresSchemaDSN(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Set("timezone", "Pacific/Kiritimati") // UTC+14
	u.RawQuery = q.Encode()
	sqlDB, err := sql.Open("pgx", u.String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	var zone string
	require.NoError(t, db.Raw("SHOW TIME ZONE").Scan(&zone).Error)
	require.Equal(t, "Pacific/Kiritimati", zone)
	s, err := repository.New(ctx, db)
	require.NoError(t, err)
	seedDefinition(t, s, "order", "v1")
	before := time.Now()
	exec, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1"})
	require.NoError(t, err)
	require.Equal(t, time.UTC, exec.CreatedAt.Location())
	require.WithinDuration(t, before, exec.CreatedAt, time.Minute)
	require.NoError(t, s.UpdateExecutionStatus(ctx, exec.ExecutionID, models.ExecutionRunning))
	got, err := s.GetExecution(ctx, exec.ExecutionID)
	require.NoError(t, err)
	require.Equal(t, time.UTC, got.CreatedAt.Location())
	require.True(t, exec.CreatedAt.Equal(got.CreatedAt))
	require.NotNil(t, got.StartedAt)
	require.Equal(t, time.UTC, got.StartedAt.Location())
	require.WithinDuration(t, before, *got.StartedAt, time.Minute)
	require.NotNil(t, got.LastHeartbeat)
	require.Equal(t, time.UTC, got.LastHeartbeat.Location())
	stale, err := s.ListStaleExecutions(ctx, time.Hour, nil)
	require.NoError(t, err)
	require.Empty(t, stale, "a fresh heartbeat is not an hour old, whatever the zone")
}

// New warns of a SQLite file without WAL, on both drivers, and not of one
// with WAL or of an in-memory database.
func TestAdversary8_WALWarning(t *testing.T) {
	t.Parallel()
	ctx := adv8Ctx(t)
	for name, dialector := range map[string]func(dir string) gorm.Dialector{
		"mattn rollback journal":    func(dir string) gorm.Dialector { return sqlite.Open(filepath.Join(dir, "a.db")) },
		"glebarez rollback journal": func(dir string) gorm.Dialector { return glebarez.Open(filepath.Join(dir, "a.db")) },
		"mattn WAL":                 func(dir string) gorm.Dialector { return sqlite.Open(filepath.Join(dir, "a.db") + "?_journal_mode=WAL") },
		"glebarez WAL": func(dir string) gorm.Dialector {
			return glebarez.Open(filepath.Join(dir, "a.db") + "?_pragma=journal_mode(WAL)")
		},
		"mattn memory": func(string) gorm.Dialector { return sqlite.Open(":memory:") },
	} {
		t.Run(name, func(t *testing.T) {
			db, err := gorm.Open(dialector(t.TempDir()), &gorm.Config{Logger: logger.Discard})
			require.NoError(t, err)
			t.Cleanup(func() { sqlDB, _ := db.DB(); _ = sqlDB.Close() })
			if name == "mattn memory" {
				sqlDB, _ := db.DB()
				sqlDB.SetMaxOpenConns(1)
			}
			var buf bytes.Buffer
			_, err = repository.New(ctx, db, repository.WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
			require.NoError(t, err)
			wantWarning := name == "mattn rollback journal" || name == "glebarez rollback journal"
			require.Equal(t, wantWarning, bytes.Contains(buf.Bytes(), []byte("WAL")), "log: %s", buf.String())
		})
	}
}

// InTransaction refuses what is not an open transaction, and a transaction
// that ended.
func TestAdversary8_InTransactionRefusesNonTransactions(t *testing.T) {
	t.Parallel()
	s := testutil.NewSQLiteStorage(t)
	ctx := adv8Ctx(t)
	_, err := repository.InTransaction(nil)
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
	_, err = repository.InTransaction(s.DB())
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
	tx := s.DB().WithContext(ctx).Begin()
	require.NoError(t, tx.Error)
	in, err := repository.InTransaction(tx)
	require.NoError(t, err)
	require.NoError(t, tx.Commit().Error)
	_, err = in.GetExecution(ctx, "x")
	require.Error(t, err, "a committed transaction cannot be used")
	require.False(t, errors.Is(err, repository.ErrNotFound), "not a silent answer from outside the transaction: %v", err)
}
