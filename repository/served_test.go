package repository_test

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/migrations"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// TestBacklog_LiveNodesThatRunTheDefinitions: Backlog counts the live nodes
// that could run some of the due work: those that recorded the definition of
// a due execution, and those that recorded none (they run every
// definition); not one that runs other definitions, even one the claim also
// runs. A node records again what it runs, replacing what it had; bad keys
// are refused and change nothing; pruning a node drops its definitions.
func TestBacklog_LiveNodesThatRunTheDefinitions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		seedDefinition(t, s, "invoice", "v1")
		order, invoice := repository.DefinitionKey{ID: "order", Version: "v1"}, repository.DefinitionKey{ID: "invoice", Version: "v1"}
		for _, n := range []string{"orders", "invoices", "anything", "both"} {
			require.NoError(t, s.BeatNode(ctx, n))
		}
		require.NoError(t, s.ServeDefinitions(ctx, "orders", []repository.DefinitionKey{order, order}))
		require.NoError(t, s.ServeDefinitions(ctx, "invoices", []repository.DefinitionKey{invoice}))
		require.NoError(t, s.ServeDefinitions(ctx, "both", []repository.DefinitionKey{invoice, order}))
		create(t, s, repository.NewExecution{})
		create(t, s, repository.NewExecution{}) // two orders wait
		backlog := func(defs ...repository.DefinitionKey) (int, int) {
			t.Helper()
			due, live, err := s.Backlog(ctx, repository.ClaimParams{NodeID: "both", StaleThreshold: time.Minute, Definitions: defs, Limit: 8})
			require.NoError(t, err)
			return due, live
		}
		live := func(defs ...repository.DefinitionKey) int {
			t.Helper()
			_, n := backlog(defs...)
			return n
		}
		due, n := backlog(order)
		require.Equal(t, 2, due)
		require.Equal(t, 3, n, "orders, anything and both")
		require.Equal(t, 3, live(order, invoice), "the invoice node runs none of the waiting orders")
		require.Equal(t, 3, live(), "a claim of every definition: the nodes that run orders")
		require.Equal(t, 1, live(invoice), "no invoice waits: only the node that runs everything")

		create(t, s, repository.NewExecution{DefinitionID: "invoice", DefinitionVersion: "v1"})
		require.Equal(t, 3, live(invoice), "invoices, anything and both")
		require.Equal(t, 4, live(order, invoice))

		// Recorded again: it replaces.
		require.NoError(t, s.ServeDefinitions(ctx, "invoices", []repository.DefinitionKey{order}))
		require.Equal(t, 4, live(order))
		require.Equal(t, 2, live(invoice))
		require.NoError(t, s.ServeDefinitions(ctx, "invoices", nil))
		require.Equal(t, 3, live(invoice), "none recorded: it runs every definition")

		require.ErrorIs(t, s.ServeDefinitions(ctx, "orders", []repository.DefinitionKey{{ID: "", Version: "v1"}}), repository.ErrInvalidArgument)
		require.ErrorIs(t, s.ServeDefinitions(ctx, "", []repository.DefinitionKey{order}), repository.ErrInvalidArgument)
		require.Equal(t, 4, live(order), "a refused call changed nothing")

		// A node gone for long is pruned with its definitions.
		require.NoError(t, s.DB().Exec(`UPDATE workflow_nodes SET last_seen = ? WHERE node_id = 'orders'`, time.Now().UTC().Add(-30*24*time.Hour)).Error)
		pruned, err := s.PruneNodes(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 1, pruned)
		var left int64
		require.NoError(t, s.DB().Table("workflow_node_definitions").Where("node_id = ?", "orders").Count(&left).Error)
		require.Zero(t, left)
	})
}

// TestServedDefinitions_BeforeMigration013: a storage opened
// WithoutMigrations on a database that has not run migration 013 yet (an
// app that upgraded the library before migrating) sweeps as before: fair
// shares count every live node, recording definitions is a no-op, pruning
// works.
func TestServedDefinitions_BeforeMigration013(t *testing.T) {
	t.Parallel()
	dsns := map[string]string{"sqlite": "sqlite://" + t.TempDir() + "/old.db"}
	if os.Getenv(testutil.EnvPostgresDSN) != "" || os.Getenv(testutil.EnvRequirePostgres) == "1" {
		dsns["postgres"] = testutil.PostgresSchemaDSN(t)
	}
	for dialect, dsn := range dsns {
		t.Run(dialect, func(t *testing.T) {
			ctx := t.Context()
			migrated, err := repository.Open(ctx, dsn)
			require.NoError(t, err)
			require.NoError(t, migrations.RollbackLast(ctx, migrated.DB()))
			require.NoError(t, migrated.Close())
			require.False(t, func() bool {
				s, err := repository.Open(ctx, dsn, repository.WithoutMigrations())
				require.NoError(t, err)
				defer s.Close()
				return s.DB().Migrator().HasTable("workflow_node_definitions")
			}(), "013 rolled back")

			s, err := repository.Open(ctx, dsn, repository.WithoutMigrations())
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			for _, n := range []string{"a", "b"} {
				require.NoError(t, s.BeatNode(ctx, n))
			}
			order := repository.DefinitionKey{ID: "order", Version: "v1"}
			require.NoError(t, s.ServeDefinitions(ctx, "a", []repository.DefinitionKey{order}))
			_, live, err := s.Backlog(ctx, repository.ClaimParams{NodeID: "a", StaleThreshold: time.Minute, Definitions: []repository.DefinitionKey{order}, Limit: 4})
			require.NoError(t, err)
			require.Equal(t, 2, live)
			_, err = s.PruneNodes(ctx)
			require.NoError(t, err)
		})
	}
}

// TestServeDefinitions_RacingRecordsLeaveOneSet: processes that record the
// definitions of one node id at once (a restart while the old process still
// runs) all succeed, and one of their sets stands, never a mix.
func TestServeDefinitions_RacingRecordsLeaveOneSet(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		require.NoError(t, s.BeatNode(ctx, "n"))
		sets := make([][]repository.DefinitionKey, 8)
		for i := range sets {
			for j := range 3 {
				sets[i] = append(sets[i], repository.DefinitionKey{ID: fmt.Sprintf("d%d-%d", i, j), Version: "v1"})
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, len(sets))
		for i := range sets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.ServeDefinitions(ctx, "n", sets[i])
			}()
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		var got []string
		require.NoError(t, s.DB().Table("workflow_node_definitions").Where("node_id = ?", "n").
			Order("definition_id").Pluck("definition_id", &got).Error)
		require.Len(t, got, 3, "a mix of sets: %v", got)
		require.Equal(t, got[0][:3], got[2][:3], "a mix of sets: %v", got)
	})
}
