package repository_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func claimAll(t *testing.T, s *repository.Storage, node string) []string {
	t.Helper()
	claimed, err := s.ClaimExecutions(t.Context(), repository.ClaimParams{NodeID: node, StaleThreshold: time.Minute, Limit: 100})
	require.NoError(t, err)
	for _, e := range claimed {
		require.Nil(t, e.WaitSignal, "a claim clears what it waited for")
	}
	return ids(claimed)
}

func TestPark_IsFencedAndChecked(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		e := create(t, s, repository.NewExecution{NodeID: "n1"})
		later := time.Now().Add(time.Hour)
		err := s.ParkExecution(ctx, repository.ParkParams{ExecutionID: e.ExecutionID, NodeID: "n2", Until: later})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate, "only the owner parks")
		err = s.ParkExecution(ctx, repository.ParkParams{ExecutionID: e.ExecutionID, NodeID: "n1"})
		require.ErrorIs(t, err, repository.ErrInvalidArgument, "a time or a signal is needed")
		err = s.ParkExecution(ctx, repository.ParkParams{ExecutionID: "missing", NodeID: "n1", Until: later})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)

		require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: e.ExecutionID, NodeID: "n1", Until: later, Signal: "go"}))
		got, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Nil(t, got.NodeID)
		require.Equal(t, "go", *got.WaitSignal)
		require.EqualValues(t, 2, got.Version, "parking bumps the version")
		require.WithinDuration(t, later, *got.LastHeartbeat, time.Millisecond, "due at its wake-up time")
		err = s.ParkExecution(ctx, repository.ParkParams{ExecutionID: e.ExecutionID, NodeID: "n1", Until: later})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate, "a parked execution is nobody's")
	})
}

// TestPark_ClaimTakesWhatIsDue: parked executions are claimed when their time
// comes or a signal they wait for is stored, not before, and not for another
// signal.
func TestPark_ClaimTakesWhatIsDue(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		park := func(until time.Time, signal string) string {
			e := create(t, s, repository.NewExecution{NodeID: "n1"})
			require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: e.ExecutionID, NodeID: "n1", Until: until, Signal: signal}))
			return e.ExecutionID
		}
		past := park(time.Now().Add(-time.Second), "")
		future := park(time.Now().Add(time.Hour), "")
		forSignal := park(time.Time{}, "approve")
		forSignalOrTime := park(time.Now().Add(time.Hour), "approve")
		require.Equal(t, []string{past}, claimAll(t, s, "n2"))

		require.NoError(t, s.SendSignal(ctx, forSignal, "other", 1))
		require.Empty(t, claimAll(t, s, "n2"), "another signal wakes nothing")
		require.NoError(t, s.SendSignal(ctx, forSignal, "approve", 1))
		require.NoError(t, s.SendSignal(ctx, forSignal, "approve", 2))
		require.NoError(t, s.SendSignal(ctx, forSignalOrTime, "approve", 1))
		require.ElementsMatch(t, []string{forSignal, forSignalOrTime}, claimAll(t, s, "n2"))
		require.Empty(t, claimAll(t, s, "n3"))

		got, err := s.GetExecution(ctx, future)
		require.NoError(t, err)
		require.Nil(t, got.NodeID, "not due yet")
		ageHeartbeat(t, s, future, 0)
		require.Equal(t, []string{future}, claimAll(t, s, "n3"))
	})
}

// TestPark_ClaimRespectsLimitAndDefinitions: the two picks together claim no
// more than the limit, and only definitions the node runs.
func TestPark_ClaimRespectsLimitAndDefinitions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		seedDefinition(t, s, "refund", "v1")
		for i := range 6 {
			in := repository.NewExecution{NodeID: "n1"}
			if i%2 == 1 {
				in.DefinitionID, in.DefinitionVersion = "refund", "v1"
			}
			e := create(t, s, in)
			require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: e.ExecutionID, NodeID: "n1", Signal: "go"}))
			require.NoError(t, s.SendSignal(ctx, e.ExecutionID, "go", i))
			create(t, s, repository.NewExecution{DefinitionID: in.DefinitionID, DefinitionVersion: in.DefinitionVersion}) // unowned: due at once
		}
		only := []repository.DefinitionKey{{ID: "refund", Version: "v1"}}
		claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 4, Definitions: only})
		require.NoError(t, err)
		require.Len(t, claimed, 4)
		for _, e := range claimed {
			require.Equal(t, "refund", e.DefinitionID)
		}
		claimed, err = s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 100, Definitions: only})
		require.NoError(t, err)
		require.Len(t, claimed, 2)
		var left int64
		require.NoError(t, s.DB().Model(&models.WorkflowExecution{}).Where("node_id IS NULL").Count(&left).Error)
		require.EqualValues(t, 6, left, "the order executions stay for a node that runs them")
	})
}

// TestBacklog_CountsWhatIsDueAndTheLiveNodes: the fair share's inputs.
func TestBacklog_CountsWhatIsDueAndTheLiveNodes(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		for range 3 {
			create(t, s, repository.NewExecution{}) // unowned: due
		}
		later := create(t, s, repository.NewExecution{NodeID: "n1"})
		require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: later.ExecutionID, NodeID: "n1", Until: time.Now().Add(time.Hour)}))
		create(t, s, repository.NewExecution{NodeID: "n1"}) // owned and fresh
		require.NoError(t, s.BeatNode(ctx, "n1"))
		require.NoError(t, s.BeatNode(ctx, "n2"))
		require.NoError(t, s.BeatNode(ctx, "n2"), "beating again updates the row")
		require.NoError(t, s.DB().Exec(`INSERT INTO workflow_nodes (node_id, started_at, last_seen) VALUES ('gone', ?, ?)`,
			time.Now().UTC().Add(-time.Hour), time.Now().UTC().Add(-time.Hour)).Error)

		p := repository.ClaimParams{NodeID: "n1", StaleThreshold: time.Minute, Limit: 10}
		claimable, nodes, err := s.Backlog(ctx, p)
		require.NoError(t, err)
		require.Equal(t, 3, claimable, "the parked one and the owned one are not due")
		require.Equal(t, 2, nodes, "a node silent for an hour is not live")
		p.Limit = 1
		p.Definitions = []repository.DefinitionKey{{ID: "other", Version: "v1"}}
		claimable, _, err = s.Backlog(ctx, p)
		require.NoError(t, err)
		require.Zero(t, claimable)
		_, _, err = s.Backlog(ctx, repository.ClaimParams{StaleThreshold: -1})
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
	})
}
