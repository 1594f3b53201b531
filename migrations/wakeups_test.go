package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/migrations"
)

// TestMigrate_WakeUpTriggers: 008 adds three NOTIFY triggers and their
// functions on PostgreSQL and nothing on SQLite; its rollback drops them all,
// and migrating again brings them back.
func TestMigrate_WakeUpTriggers(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		db, _ := open(t, dialect)
		require.NoError(t, migrations.Migrate(ctx, db))
		want := map[string]int{"postgres": 3, "sqlite": 0}[dialect]
		require.Equal(t, want, wakeUpTriggers(t, db))

		// Roll back the migrations after 008, then 008.
		for ids := applied(t, db); len(ids) > 0 && ids[len(ids)-1] != migrations.IDWakeUps; ids = applied(t, db) {
			require.NoError(t, migrations.RollbackLast(ctx, db))
			require.Equal(t, want, wakeUpTriggers(t, db), "rolling back %s keeps 008's triggers", ids[len(ids)-1])
		}
		require.NoError(t, migrations.RollbackLast(ctx, db))
		require.Zero(t, wakeUpTriggers(t, db))
		ids := applied(t, db)
		require.NotContains(t, ids, migrations.IDWakeUps)

		require.NoError(t, migrations.Migrate(ctx, db))
		require.Equal(t, want, wakeUpTriggers(t, db))
	})
}

// wakeUpTriggers counts the triggers of migration 008 and checks that their
// functions exist exactly when they do.
func wakeUpTriggers(t *testing.T, db *gorm.DB) int {
	t.Helper()
	if db.Dialector.Name() != "postgres" {
		var n int64
		require.NoError(t, db.Raw(`SELECT count(*) FROM sqlite_master WHERE type = 'trigger'`).Scan(&n).Error)
		return int(n)
	}
	var triggers, functions int64
	require.NoError(t, db.Raw(`SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal `+
		`AND tgrelid IN (to_regclass('workflow_executions'), to_regclass('signals'))`).Scan(&triggers).Error)
	require.NoError(t, db.Raw(`SELECT count(*) FROM pg_proc WHERE pronamespace = current_schema()::regnamespace `+
		`AND proname IN ('workflow_events_channel', 'workflow_notify_execution', 'workflow_notify_signal')`).Scan(&functions).Error)
	require.Equal(t, triggers, functions, "every trigger has its function, and no function outlives them")
	return int(triggers)
}
