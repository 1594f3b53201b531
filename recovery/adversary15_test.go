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

// Adversary 15: fair shares count only the live nodes that run one of the
// claim's definitions (workflow_node_definitions, recorded by
// RecoverOnStartup).

// adv15Recover runs a RecoverOnStartup of node with 8 free slots, fair
// share, the definitions defs, and returns how many it claimed.
func adv15Recover(t *testing.T, s *repository.Storage, node string, defs ...repository.DefinitionKey) int {
	t.Helper()
	svc := recovery.NewService(s, node, recovery.WithFairShare(), recovery.WithBatchSize(8),
		recovery.WithCapacity(func() int { return 8 }), recovery.WithStaleThreshold(time.Minute),
		recovery.WithDefinitions(defs...))
	report, err := svc.RecoverOnStartup(t.Context(), time.Minute, time.Second)
	require.NoError(t, err)
	return report.Claimed
}

var (
	adv15Order   = repository.DefinitionKey{ID: "order", Version: "v1"}
	adv15Invoice = repository.DefinitionKey{ID: "invoice", Version: "v1"}
)

func adv15Setup(t *testing.T, s *repository.Storage) {
	t.Helper()
	setup(t, s)
	require.NoError(t, s.SaveDefinition(t.Context(), &models.WorkflowDefinition{ID: "invoice", Version: "v1", Name: "invoice"}))
}

// TestAdversary15_FairShareWithOverlappingDefinitions: a node that runs
// orders and invoices, beside a live node that runs invoices only, finds 6
// orders waiting and nothing else: the other node cannot take any of them,
// so the first claims all 6 in its startup recovery, not half (the fix of
// TestFairShare_CountsOnlyNodesThatRunTheWork counts a node that runs one of
// the claim's definitions, whether or not any of the waiting work is of
// that definition).
func TestAdversary15_FairShareWithOverlappingDefinitions(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		adv15Setup(t, s)
		require.Zero(t, adv15Recover(t, s, "invoices", adv15Invoice))
		for range 6 {
			create(t, s, "", models.ExecutionPending, 0)
		}
		require.Equal(t, 6, adv15Recover(t, s, "both", adv15Order, adv15Invoice),
			"the invoice node, which can take none of the waiting orders, was counted in the share")
	})
}

// TestAdversary15_RestartWithOtherDefinitions: a node that ran orders
// restarts running invoices only: it records that, replacing what it ran,
// and no longer shrinks an order node's share; restarted once more with no
// definitions (every one) it counts again.
func TestAdversary15_RestartWithOtherDefinitions(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		adv15Setup(t, s)
		require.Zero(t, adv15Recover(t, s, "n", adv15Order))
		require.Zero(t, adv15Recover(t, s, "n", adv15Invoice)) // restarted
		for range 6 {
			create(t, s, "", models.ExecutionPending, 0)
		}
		_, live, err := s.Backlog(t.Context(), repository.ClaimParams{NodeID: "o", StaleThreshold: time.Minute, Definitions: []repository.DefinitionKey{adv15Order}, Limit: 8})
		require.NoError(t, err)
		require.Zero(t, live, "n runs invoices now")
		require.Equal(t, 6, adv15Recover(t, s, "n")) // restarted running every definition: the only live node, it takes all 6
		_, live, err = s.Backlog(t.Context(), repository.ClaimParams{NodeID: "o", StaleThreshold: time.Minute, Definitions: []repository.DefinitionKey{adv15Order}, Limit: 8})
		require.NoError(t, err)
		require.Equal(t, 1, live, "n runs every definition now")
	})
}

// TestAdversary15_SameNodeIDTwoServices: two services under one node id
// (a misconfiguration, or a restart overlapping the old process) record in
// turn; the node runs what the last recorded, and recording fails for
// neither.
func TestAdversary15_SameNodeIDTwoServices(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		adv15Setup(t, s)
		require.Zero(t, adv15Recover(t, s, "dup", adv15Invoice))
		for range 4 {
			create(t, s, "", models.ExecutionPending, 0)
		}
		// The second one runs orders: it is the only live node that does.
		require.Equal(t, 4, adv15Recover(t, s, "dup", adv15Order))
		_, live, err := s.Backlog(t.Context(), repository.ClaimParams{NodeID: "x", StaleThreshold: time.Minute, Definitions: []repository.DefinitionKey{adv15Invoice}, Limit: 8})
		require.NoError(t, err)
		require.Zero(t, live, "the last service recorded orders only")
	})
}
