package recovery_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/recovery"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// TestFairShare_CountsOnlyNodesThatRunTheWork: a node that runs other
// definitions cannot take this node's backlog, so it does not shrink this
// node's share: with one such node alive, a node with 8 free slots claims
// all 6 executions of its definition in its first recovery, not half.
func TestFairShare_CountsOnlyNodesThatRunTheWork(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		require.NoError(t, s.SaveDefinition(t.Context(), &models.WorkflowDefinition{ID: "invoice", Version: "v1", Name: "invoice"}))
		order := []repository.DefinitionKey{{ID: "order", Version: "v1"}}
		recover := func(node string, defs []repository.DefinitionKey) int {
			svc := recovery.NewService(s, node, recovery.WithFairShare(), recovery.WithBatchSize(8),
				recovery.WithCapacity(func() int { return 8 }), recovery.WithStaleThreshold(time.Minute),
				recovery.WithDefinitions(defs...))
			report, err := svc.RecoverOnStartup(t.Context(), time.Minute, time.Second)
			require.NoError(t, err)
			return report.Claimed
		}
		// A node alive that runs invoices only (it records so as it starts).
		require.Zero(t, recover("invoices", []repository.DefinitionKey{{ID: "invoice", Version: "v1"}}))
		for range 6 {
			create(t, s, "", models.ExecutionPending, 0)
		}
		require.Equal(t, 6, recover("orders", order), "the invoice node was counted in the order node's share")
	})
}
