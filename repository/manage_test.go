package repository_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// endAt makes an execution end with status, its completed_at age ago, as if
// it had ended then.
func endAt(t testing.TB, s *repository.Storage, executionID string, status models.ExecutionStatus, age time.Duration) {
	t.Helper()
	require.NoError(t, s.UpdateExecutionStatus(context.Background(), executionID, status))
	past := time.Now().UTC().Add(-age).Truncate(time.Microsecond)
	res := s.DB().Model(&models.WorkflowExecution{}).Where("execution_id = ?", executionID).UpdateColumn("completed_at", past)
	require.NoError(t, res.Error)
	require.EqualValues(t, 1, res.RowsAffected)
}

func TestList_DefinitionVersionAndCreatedSince(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		seedDefinition(t, s, "order", "v2")
		old := create(t, s, repository.NewExecution{ExecutionID: "old"})
		res := s.DB().Model(&models.WorkflowExecution{}).Where("execution_id = ?", old.ExecutionID).
			UpdateColumn("created_at", time.Now().UTC().Add(-48*time.Hour).Truncate(time.Microsecond))
		require.NoError(t, res.Error)
		create(t, s, repository.NewExecution{ExecutionID: "v1"})
		create(t, s, repository.NewExecution{ExecutionID: "v2", DefinitionID: "order", DefinitionVersion: "v2"})

		list := func(f repository.ExecutionFilter) []string {
			out, err := s.ListExecutions(ctx, f)
			require.NoError(t, err)
			ids := []string{}
			for _, e := range out {
				ids = append(ids, e.ExecutionID)
			}
			return ids
		}
		require.Equal(t, []string{"old", "v1"}, list(repository.ExecutionFilter{DefinitionID: "order", DefinitionVersion: "v1"}))
		require.Equal(t, []string{"v2"}, list(repository.ExecutionFilter{DefinitionID: "order", DefinitionVersion: "v2"}))
		require.Equal(t, []string{"v1", "v2"}, list(repository.ExecutionFilter{CreatedSince: time.Now().Add(-time.Hour)}))
		require.Equal(t, []string{"v1"}, list(repository.ExecutionFilter{CreatedSince: time.Now().Add(-time.Hour), DefinitionID: "order", DefinitionVersion: "v1"}))
		require.Equal(t, []string{"old", "v1", "v2"}, list(repository.ExecutionFilter{CreatedSince: time.Now().Add(-72 * time.Hour)}))
		require.Equal(t, []string{"v2"}, list(repository.ExecutionFilter{CreatedSince: time.Now().Add(-72 * time.Hour), After: "v1"}))

		_, err := s.ListExecutions(ctx, repository.ExecutionFilter{DefinitionVersion: "v1"})
		require.ErrorIs(t, err, repository.ErrInvalidArgument, "a version needs its definition")
	})
}

func TestListPendingSignals_OldestFirstAndGoneOnceConsumed(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		e := create(t, s, repository.NewExecution{})
		none, err := s.ListPendingSignals(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Empty(t, none)
		for _, sig := range []struct{ name, payload string }{{"go", `1`}, {"stop", `2`}, {"go", `3`}} {
			require.NoError(t, s.SendSignal(ctx, e.ExecutionID, sig.name, []byte(sig.payload)))
		}
		_, ok, err := s.ConsumeSignal(ctx, e.ExecutionID, "go")
		require.NoError(t, err)
		require.True(t, ok)
		pending, err := s.ListPendingSignals(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Len(t, pending, 2)
		require.Equal(t, "stop", pending[0].Name)
		require.JSONEq(t, `2`, string(pending[0].Payload))
		require.Equal(t, "go", pending[1].Name)
		require.JSONEq(t, `3`, string(pending[1].Payload))
		require.Equal(t, time.UTC, pending[0].ReceivedAt.Location())

		unknown, err := s.ListPendingSignals(ctx, "nobody")
		require.NoError(t, err)
		require.Empty(t, unknown)
		_, err = s.ListPendingSignals(ctx, "")
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
	})
}

func TestListNodes_CountsLiveExecutionsOwned(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		none, err := s.ListNodes(ctx)
		require.NoError(t, err)
		require.Empty(t, none)
		before := time.Now().UTC().Add(-time.Minute)
		require.NoError(t, s.BeatNode(ctx, "node-b"))
		require.NoError(t, s.BeatNode(ctx, "node-a"))
		create(t, s, repository.NewExecution{NodeID: "node-a"})
		create(t, s, repository.NewExecution{NodeID: "node-a"})
		done := create(t, s, repository.NewExecution{NodeID: "node-a"})
		require.NoError(t, s.UpdateExecutionStatus(ctx, done.ExecutionID, models.ExecutionCompleted))
		create(t, s, repository.NewExecution{NodeID: "node-gone"}) // no row in workflow_nodes

		nodes, err := s.ListNodes(ctx)
		require.NoError(t, err)
		require.Len(t, nodes, 2)
		require.Equal(t, "node-a", nodes[0].NodeID)
		require.EqualValues(t, 2, nodes[0].Executions, "live executions only")
		require.Equal(t, "node-b", nodes[1].NodeID)
		require.EqualValues(t, 0, nodes[1].Executions)
		for _, n := range nodes {
			require.True(t, n.LastSeen.After(before), "last seen %s", n.LastSeen)
			require.False(t, n.StartedAt.After(n.LastSeen))
			require.Equal(t, time.UTC, n.LastSeen.Location())
		}
	})
}

func TestAcquireLease_OneHolderUntilItExpires(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		take := func(holder string, ttl time.Duration) bool {
			ok, err := s.AcquireLease(ctx, repository.LeaseParams{Name: "retention", Holder: holder, TTL: ttl})
			require.NoError(t, err)
			return ok
		}
		require.True(t, take("a", time.Hour))
		require.False(t, take("b", time.Hour), "held by a")
		require.True(t, take("a", time.Millisecond), "a renews its own (here, to expire at once)")
		require.Eventually(t, func() bool { return take("b", time.Hour) }, 10*time.Second, 5*time.Millisecond, "b takes it once a's expired")
		require.False(t, take("a", time.Hour))
		ok, err := s.AcquireLease(ctx, repository.LeaseParams{Name: "other", Holder: "a", TTL: time.Hour})
		require.NoError(t, err)
		require.True(t, ok, "leases are per name")

		for _, p := range []repository.LeaseParams{{Holder: "a", TTL: time.Hour}, {Name: "x", TTL: time.Hour}, {Name: "x", Holder: "a"}, {Name: "x", Holder: "a", TTL: -time.Second}} {
			_, err := s.AcquireLease(ctx, p)
			require.ErrorIs(t, err, repository.ErrInvalidArgument, "%+v", p)
		}
	})
}

// TestManage_BadInputBeforeSQL: a storage on sqlmock with no expectations
// fails the test on any statement.
func TestManage_BadInputBeforeSQL(t *testing.T) {
	t.Parallel()
	s, _ := testutil.NewMockStorage(t)
	ctx := t.Context()
	for name, p := range map[string]repository.PurgeParams{
		"no cutoff":         {},
		"negative age":      {OlderThan: -time.Hour},
		"both":              {OlderThan: time.Hour, EndedBefore: time.Now()},
		"negative batch":    {OlderThan: time.Hour, BatchSize: -1},
		"batch over max":    {OlderThan: time.Hour, BatchSize: repository.PurgeBatchSizeMax + 1},
		"dry, no cutoff":    {DryRun: true},
		"dry, negative age": {DryRun: true, OlderThan: -1},
	} {
		_, err := s.PurgeExecutions(ctx, p)
		require.ErrorIs(t, err, repository.ErrInvalidArgument, name)
	}
	_, err := s.RetryExecution(ctx, "")
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
	_, err = s.RetryExecution(ctx, string(make([]byte, repository.MaxIDLength+1)))
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
	_, err = s.ListPendingSignals(ctx, " ")
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
	_, err = s.AcquireLease(ctx, repository.LeaseParams{Name: "retention", Holder: "a"})
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
	_, err = s.ListExecutions(ctx, repository.ExecutionFilter{DefinitionVersion: "v1"})
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
}

func history(t testing.TB, s *repository.Storage, executionID string) []models.StepExecution {
	t.Helper()
	h, err := s.GetStepExecutionHistory(context.Background(), executionID)
	require.NoError(t, err)
	return h
}
