package migrations_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/migrations"
	"github.com/plexspaces/workflow/testutil"
)

var tables = []string{"workflow_definitions", "workflow_executions", "workflow_execution_labels", "step_executions", "signals"}

// laterTables are the tables of the migrations after 006.
var laterTables = map[string]string{migrations.IDNodes: "workflow_nodes", migrations.IDRetention: "workflow_leases",
	migrations.IDServedDefinitions: "workflow_node_definitions"}

// sqliteFile is a database file with the pragmas the repository uses.
func sqliteFile(path string) gorm.Dialector {
	return sqlite.Open("file:" + path + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_txlock=immediate")
}

func open(t *testing.T, dialect string) (*gorm.DB, string) {
	t.Helper()
	var d gorm.Dialector
	var dsn string
	switch dialect {
	case "sqlite":
		dsn = t.TempDir() + "/wf.db"
		d = sqliteFile(dsn)
	case "postgres":
		dsn = testutil.PostgresSchemaDSN(t)
		d = postgres.Open(dsn)
	}
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db, dsn
}

func forEachDialect(t *testing.T, fn func(t *testing.T, dialect string)) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

func applied(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	var ids []string
	require.NoError(t, db.Table(migrations.TableName).Order("id").Pluck("id", &ids).Error)
	return ids
}

func TestMigrate_RerunIsNoOpAndRollbackUndoes(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		db, _ := open(t, dialect)
		require.NoError(t, migrations.Migrate(ctx, db))
		require.NoError(t, migrations.Migrate(ctx, db), "rerunning is a no-op")
		want := []string{migrations.IDDefinitions, migrations.IDExecutions, migrations.IDLabels, migrations.IDSteps, migrations.IDSignals, migrations.IDParkedWaits}
		for _, m := range migrations.All()[len(want):] {
			want = append(want, m.ID)
		}
		require.Equal(t, want, applied(t, db))
		for _, table := range tables {
			require.True(t, db.Migrator().HasTable(table), table)
		}
		require.True(t, db.Migrator().HasColumn("workflow_executions", "wait_signal"))

		// The migrations after 006, newest first: each rollback undoes one.
		for len(want) > 6 {
			last := want[len(want)-1]
			require.NoError(t, migrations.RollbackLast(ctx, db))
			if table, ok := laterTables[last]; ok {
				require.False(t, db.Migrator().HasTable(table), "rollback of %s", last)
			}
			want = want[:len(want)-1]
			require.Equal(t, want, applied(t, db))
		}

		// 006 alters a table: its rollback drops the column, keeps the rows.
		require.NoError(t, migrations.RollbackLast(ctx, db))
		require.False(t, db.Migrator().HasColumn("workflow_executions", "wait_signal"))
		require.True(t, db.Migrator().HasTable("workflow_executions"))
		want = want[:len(tables)]
		require.Equal(t, want, applied(t, db))

		for i := len(tables) - 1; i >= 0; i-- {
			require.NoError(t, migrations.RollbackLast(ctx, db))
			require.False(t, db.Migrator().HasTable(tables[i]), "rollback of %s", want[i])
			require.Equal(t, want[:i], applied(t, db))
		}
		require.NoError(t, migrations.Migrate(ctx, db), "migrating again after a full rollback")
		require.Len(t, applied(t, db), len(migrations.All()))
	})
}

func TestAll_OrderAndRollbacks(t *testing.T) {
	t.Parallel()
	all := migrations.All()
	require.Len(t, all, 12)
	for i, id := range []string{"001_workflow_definitions", "002_workflow_executions", "003_workflow_execution_labels", "004_step_executions", "005_signals", "006_parked_waits", "007_workflow_nodes", "008_wake_ups", "010_retention", "011_lean_journal", "012_owned_index", "013_served_definitions"} {
		require.Equal(t, id, all[i].ID)
		require.NotNil(t, all[i].Rollback, id)
	}
}

func TestMigrate_ProperTypes(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		db, _ := open(t, dialect)
		require.NoError(t, migrations.Migrate(context.Background(), db))
		types, err := db.Migrator().ColumnTypes("workflow_executions")
		require.NoError(t, err)
		got := map[string]string{}
		for _, c := range types {
			got[c.Name()] = strings.ToUpper(c.DatabaseTypeName())
		}
		want := map[string]map[string]string{
			"postgres": {"input": "JSONB", "last_heartbeat": "TIMESTAMPTZ", "version": "INT8", "execution_id": "TEXT"},
			"sqlite":   {"input": "TEXT", "last_heartbeat": "DATETIME", "version": "INTEGER", "execution_id": "TEXT"},
		}[dialect]
		for col, typ := range want {
			require.Equal(t, typ, got[col], col)
		}
		for _, idx := range []string{"idx_workflow_executions_stale", "idx_workflow_executions_status", "idx_workflow_executions_owned"} {
			require.True(t, db.Migrator().HasIndex("workflow_executions", idx), idx)
		}
		require.True(t, db.Migrator().HasIndex("signals", "idx_signals_execution_name"))
		require.True(t, db.Migrator().HasIndex("workflow_execution_labels", "idx_workflow_execution_labels_key_value"))
	})
}

// TestMigrate_ConcurrentProcesses starts several OS processes that migrate one
// fresh database at the same moment; all must succeed and the schema must be
// applied once.
func TestMigrate_ConcurrentProcesses(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		db, dsn := open(t, dialect)
		const procs = 4
		start := time.Now().Add(time.Second).UnixNano() // all start together
		var wg sync.WaitGroup
		outputs := make([][]byte, procs)
		errs := make([]error, procs)
		for i := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperMigrateProcess$", "-test.count=1")
				cmd.Env = append(os.Environ(), "MIGRATE_HELPER_DIALECT="+dialect, "MIGRATE_HELPER_DSN="+dsn, fmt.Sprintf("MIGRATE_HELPER_START=%d", start))
				outputs[i], errs[i] = cmd.CombinedOutput()
			}()
		}
		wg.Wait()
		for i := range procs {
			require.NoError(t, errs[i], "process %d: %s", i, outputs[i])
			require.Contains(t, string(outputs[i]), "migrated", "process %d ran the helper", i)
		}
		require.Len(t, applied(t, db), len(migrations.All()))
	})
}

// TestHelperMigrateProcess is the body of one migrating process; it does
// nothing unless started by TestMigrate_ConcurrentProcesses.
func TestHelperMigrateProcess(t *testing.T) {
	dialect := os.Getenv("MIGRATE_HELPER_DIALECT")
	if dialect == "" {
		t.Skip("helper process only")
	}
	var d gorm.Dialector = postgres.Open(os.Getenv("MIGRATE_HELPER_DSN"))
	if dialect == "sqlite" {
		d = sqliteFile(os.Getenv("MIGRATE_HELPER_DSN"))
	}
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	var start int64
	_, _ = fmt.Sscan(os.Getenv("MIGRATE_HELPER_START"), &start)
	time.Sleep(time.Until(time.Unix(0, start))) // line the processes up, not a wait for an event
	require.NoError(t, migrations.Migrate(context.Background(), db))
	fmt.Println("migrated")
}
