package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/migrations"
)

// TestLeanJournal_DropsAndRestoresTheStepIndexes: migration 011 leaves
// step_executions with its primary key and UNIQUE (execution_id, step_id,
// attempt) only, gives both hot tables room for heap-only updates on
// PostgreSQL, and its rollback puts back exactly what was there.
func TestLeanJournal_DropsAndRestoresTheStepIndexes(t *testing.T) {
	dropped := []string{"idx_step_executions_status", "idx_step_executions_started_at", "idx_step_executions_execution_id"}
	forEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		db, _ := open(t, dialect)
		require.NoError(t, migrations.Migrate(ctx, db))
		for applied(t, db)[len(applied(t, db))-1] != migrations.IDLeanJournal {
			require.NoError(t, migrations.RollbackLast(ctx, db)) // those that come after
		}
		for _, idx := range dropped {
			require.False(t, db.Migrator().HasIndex("step_executions", idx), idx)
		}
		fillfactor := func(table string) string {
			var opts *string
			require.NoError(t, db.Raw(`SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = ?::regclass`, table).Scan(&opts).Error)
			if opts == nil {
				return ""
			}
			return *opts
		}
		if dialect == "postgres" {
			require.Equal(t, "fillfactor=70", fillfactor("workflow_executions"))
			require.Equal(t, "fillfactor=85", fillfactor("step_executions"))
		}

		require.NoError(t, migrations.RollbackLast(ctx, db))
		require.NotContains(t, applied(t, db), migrations.IDLeanJournal)
		for _, idx := range dropped {
			require.True(t, db.Migrator().HasIndex("step_executions", idx), idx)
		}
		if dialect == "postgres" {
			require.Empty(t, fillfactor("workflow_executions"))
			require.Empty(t, fillfactor("step_executions"))
		}
		require.NoError(t, migrations.Migrate(ctx, db))
		require.Contains(t, applied(t, db), migrations.IDLeanJournal)
	})
}
