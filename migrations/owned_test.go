package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/migrations"
)

// TestOwnedIndex_IndexesLiveExecutionsOnly: migration 012 replaces the index
// of every execution by node with one of the live executions by node, and its
// rollback puts the old one back.
func TestOwnedIndex_IndexesLiveExecutionsOnly(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dialect string) {
		ctx := context.Background()
		db, _ := open(t, dialect)
		require.NoError(t, migrations.Migrate(ctx, db))
		require.Contains(t, applied(t, db), migrations.IDOwnedIndex)
		require.True(t, db.Migrator().HasIndex("workflow_executions", "idx_workflow_executions_owned"))
		require.False(t, db.Migrator().HasIndex("workflow_executions", "idx_workflow_executions_node_id"))
		var definition string
		if dialect == "postgres" {
			require.NoError(t, db.Raw(`SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_workflow_executions_owned'`).Scan(&definition).Error)
		} else {
			require.NoError(t, db.Raw(`SELECT sql FROM sqlite_master WHERE name = 'idx_workflow_executions_owned'`).Scan(&definition).Error)
		}
		require.Contains(t, definition, "WHERE")
		require.Contains(t, definition, "RUNNING")

		for applied(t, db)[len(applied(t, db))-1] != migrations.IDOwnedIndex {
			require.NoError(t, migrations.RollbackLast(ctx, db)) // the later ones first
		}
		require.NoError(t, migrations.RollbackLast(ctx, db))
		require.NotContains(t, applied(t, db), migrations.IDOwnedIndex)
		require.True(t, db.Migrator().HasIndex("workflow_executions", "idx_workflow_executions_node_id"))
		require.False(t, db.Migrator().HasIndex("workflow_executions", "idx_workflow_executions_owned"))
		require.NoError(t, migrations.Migrate(ctx, db))
		require.Contains(t, applied(t, db), migrations.IDOwnedIndex)
	})
}
