package repository_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func TestExecution_CreateGet(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{Input: map[string]any{"order": 42}, Labels: map[string]string{"tenant": "acme"}})
		require.NotEmpty(t, exec.ExecutionID)
		require.Equal(t, models.ExecutionPending, exec.Status)
		require.EqualValues(t, 1, exec.Version)
		require.NotNil(t, exec.LastHeartbeat)
		require.Nil(t, exec.NodeID)
		require.JSONEq(t, `{"order":42}`, string(exec.Input))

		got, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, exec.ExecutionID, got.ExecutionID)
		require.Equal(t, "order", got.DefinitionID)
		require.Equal(t, "v1", got.DefinitionVersion)
		require.Equal(t, map[string]string{"tenant": "acme"}, got.Labels)
		require.JSONEq(t, `{"order":42}`, string(got.Input))
		require.Equal(t, exec.CreatedAt, got.CreatedAt, "times round-trip equal")
		require.Equal(t, *exec.LastHeartbeat, *got.LastHeartbeat)
		require.Equal(t, time.UTC, got.CreatedAt.Location())
		require.Nil(t, got.StartedAt)
		require.Nil(t, got.CompletedAt)
	})
}

func TestExecution_CreateWithNodeAndID(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{ExecutionID: "order-7", NodeID: "node-1", Input: json.RawMessage(`[1,2]`)})
		require.Equal(t, "order-7", exec.ExecutionID)
		require.Equal(t, "node-1", *exec.NodeID)

		_, err := s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "order-7", DefinitionID: "order", DefinitionVersion: "v1"})
		require.ErrorIs(t, err, repository.ErrAlreadyExists)

		_, err = s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "nope", DefinitionVersion: "v1"})
		require.ErrorIs(t, err, repository.ErrNotFound)
	})
}

func TestExecution_CreateIsOneTransaction(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		create(t, s, repository.NewExecution{ExecutionID: "dup", Labels: map[string]string{"a": "1"}})
		// The second insert fails: its labels must not be left behind either.
		_, err := s.CreateExecution(ctx, repository.NewExecution{ExecutionID: "dup", DefinitionID: "order", DefinitionVersion: "v1", Labels: map[string]string{"b": "2"}})
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		var n int64
		require.NoError(t, s.DB().Model(&models.ExecutionLabel{}).Where("execution_id = ?", "dup").Count(&n).Error)
		require.EqualValues(t, 1, n)
	})
}

func TestExecution_UpdateStatus(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{})

		require.NoError(t, s.UpdateExecutionStatus(ctx, exec.ExecutionID, models.ExecutionRunning))
		got, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionRunning, got.Status)
		require.EqualValues(t, 2, got.Version, "every status change bumps the version")
		require.NotNil(t, got.StartedAt)
		require.Nil(t, got.CompletedAt)
		started := *got.StartedAt

		// RUNNING again keeps the first started_at.
		require.NoError(t, s.UpdateExecutionStatus(ctx, exec.ExecutionID, models.ExecutionRunning))
		require.NoError(t, s.UpdateExecutionStatus(ctx, exec.ExecutionID, models.ExecutionCompleted))
		got, err = s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCompleted, got.Status)
		require.EqualValues(t, 4, got.Version)
		require.Equal(t, started, *got.StartedAt)
		require.NotNil(t, got.CompletedAt)

		require.ErrorIs(t, s.UpdateExecutionStatus(ctx, "missing", models.ExecutionRunning), repository.ErrNotFound)
	})
}

func TestExecution_VersionCheck(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{})

		require.NoError(t, s.UpdateExecutionStatusWithVersion(ctx, exec.ExecutionID, models.ExecutionRunning, ptr(int64(1))))
		err := s.UpdateExecutionStatusWithVersion(ctx, exec.ExecutionID, models.ExecutionFailed, ptr(int64(1)))
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
		require.NotErrorIs(t, err, repository.ErrNotFound)

		got, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionRunning, got.Status, "a stale write changes nothing")
		require.EqualValues(t, 2, got.Version)

		err = s.UpdateExecutionStatusWithVersion(ctx, "missing", models.ExecutionRunning, ptr(int64(1)))
		require.ErrorIs(t, err, repository.ErrNotFound)
		require.NotErrorIs(t, err, repository.ErrConcurrentUpdate)
	})
}

func TestExecution_Output(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{})

		require.NoError(t, s.UpdateExecutionOutput(ctx, exec.ExecutionID, map[string]int{"total": 3}, nil))
		require.NoError(t, s.UpdateExecutionOutput(ctx, exec.ExecutionID, []byte(`{"total":4}`), ptr(int64(2))))
		require.ErrorIs(t, s.UpdateExecutionOutput(ctx, exec.ExecutionID, "x", ptr(int64(2))), repository.ErrConcurrentUpdate)
		require.ErrorIs(t, s.UpdateExecutionOutput(ctx, "missing", "x", nil), repository.ErrNotFound)

		got, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.JSONEq(t, `{"total":4}`, string(got.Output))
		require.EqualValues(t, 3, got.Version)
	})
}

func TestExecution_Transfer(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{NodeID: "node-1"})

		require.NoError(t, s.TransferOwnership(ctx, exec.ExecutionID, "node-2", 1))
		got, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, "node-2", *got.NodeID)
		require.EqualValues(t, 2, got.Version)

		// A transfer with the version read before the first one loses.
		require.ErrorIs(t, s.TransferOwnership(ctx, exec.ExecutionID, "node-3", 1), repository.ErrConcurrentUpdate)
		got, err = s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, "node-2", *got.NodeID)

		require.ErrorIs(t, s.TransferOwnership(ctx, "missing", "node-3", 1), repository.ErrNotFound)
	})
}

func TestExecution_Heartbeat(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{NodeID: "node-1"})
		ageHeartbeat(t, s, exec.ExecutionID, time.Minute)
		before, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)

		require.NoError(t, s.UpdateHeartbeat(ctx, exec.ExecutionID, "node-1"))
		after, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.True(t, after.LastHeartbeat.After(*before.LastHeartbeat), "heartbeat moves forward")
		require.Equal(t, before.Version, after.Version, "heartbeats do not bump the version")

		// A node that is not the owner learns it at once and changes nothing.
		ageHeartbeat(t, s, exec.ExecutionID, time.Minute)
		require.ErrorIs(t, s.UpdateHeartbeat(ctx, exec.ExecutionID, "node-2"), repository.ErrConcurrentUpdate)
		stale, err := s.ListStaleExecutions(ctx, 30*time.Second, nil)
		require.NoError(t, err)
		require.Len(t, stale, 1)

		require.ErrorIs(t, s.UpdateHeartbeat(ctx, "missing", "node-1"), repository.ErrNotFound)
	})
}

func TestExecution_ListByStatusAndNode(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		a := create(t, s, repository.NewExecution{NodeID: "node-1"})
		b := create(t, s, repository.NewExecution{NodeID: "node-2"})
		c := create(t, s, repository.NewExecution{NodeID: "node-1"})
		require.NoError(t, s.UpdateExecutionStatus(ctx, c.ExecutionID, models.ExecutionRunning))

		pending, err := s.ListExecutionsByStatus(ctx, []models.ExecutionStatus{models.ExecutionPending}, nil)
		require.NoError(t, err)
		require.Equal(t, []string{a.ExecutionID, b.ExecutionID}, ids(pending), "oldest first")

		live, err := s.ListExecutionsByStatus(ctx, models.LiveExecutionStatuses(), ptr("node-1"))
		require.NoError(t, err)
		require.Equal(t, []string{a.ExecutionID, c.ExecutionID}, ids(live))

		none, err := s.ListExecutionsByStatus(ctx, []models.ExecutionStatus{models.ExecutionFailed}, nil)
		require.NoError(t, err)
		require.Empty(t, none)
	})
}

func TestExecution_Stale(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		fresh := create(t, s, repository.NewExecution{NodeID: "node-1"})
		old := create(t, s, repository.NewExecution{NodeID: "node-1"})
		older := create(t, s, repository.NewExecution{NodeID: "node-2"})
		done := create(t, s, repository.NewExecution{NodeID: "node-2"})
		require.NoError(t, s.UpdateExecutionStatus(ctx, old.ExecutionID, models.ExecutionRunning))
		require.NoError(t, s.UpdateExecutionStatus(ctx, done.ExecutionID, models.ExecutionCompleted))
		ageHeartbeat(t, s, old.ExecutionID, 10*time.Minute)
		ageHeartbeat(t, s, older.ExecutionID, 20*time.Minute)
		ageHeartbeat(t, s, done.ExecutionID, 30*time.Minute)

		stale, err := s.ListStaleExecutions(ctx, 5*time.Minute, nil)
		require.NoError(t, err)
		require.Equal(t, []string{older.ExecutionID, old.ExecutionID}, ids(stale), "oldest heartbeat first; fresh and terminal are not stale")

		running, err := s.ListStaleExecutions(ctx, 5*time.Minute, []models.ExecutionStatus{models.ExecutionRunning})
		require.NoError(t, err)
		require.Equal(t, []string{old.ExecutionID}, ids(running))

		// The threshold is strict: 15 minutes leaves out the 10-minute-old one.
		stale, err = s.ListStaleExecutions(ctx, 15*time.Minute, nil)
		require.NoError(t, err)
		require.Equal(t, []string{older.ExecutionID}, ids(stale))

		completed, err := s.ListStaleExecutions(ctx, 5*time.Minute, []models.ExecutionStatus{models.ExecutionCompleted})
		require.NoError(t, err)
		require.Equal(t, []string{done.ExecutionID}, ids(completed))

		// A fresh execution is not stale.
		stale, err = s.ListStaleExecutions(ctx, time.Minute, []models.ExecutionStatus{models.ExecutionPending})
		require.NoError(t, err)
		require.NotContains(t, ids(stale), fresh.ExecutionID)
	})
}

func TestExecution_NodeCrashRecovery(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		var owned []string
		for range 3 {
			e := create(t, s, repository.NewExecution{NodeID: "node-1"})
			require.NoError(t, s.UpdateExecutionStatus(ctx, e.ExecutionID, models.ExecutionRunning))
			ageHeartbeat(t, s, e.ExecutionID, 10*time.Minute)
			owned = append(owned, e.ExecutionID)
		}
		// node-1 died; node-2 finds its work stale and takes it over.
		stale, err := s.ListStaleExecutions(ctx, 5*time.Minute, []models.ExecutionStatus{models.ExecutionRunning})
		require.NoError(t, err)
		require.ElementsMatch(t, owned, ids(stale))
		for _, e := range stale {
			require.NoError(t, s.TransferOwnership(ctx, e.ExecutionID, "node-2", int64(e.Version)))
		}
		mine, err := s.ListExecutionsByStatus(ctx, []models.ExecutionStatus{models.ExecutionRunning}, ptr("node-2"))
		require.NoError(t, err)
		require.ElementsMatch(t, owned, ids(mine))
		stale, err = s.ListStaleExecutions(ctx, 5*time.Minute, nil)
		require.NoError(t, err)
		require.Empty(t, stale, "a transfer refreshes the heartbeat")
		require.ErrorIs(t, s.UpdateHeartbeat(ctx, owned[0], "node-1"), repository.ErrConcurrentUpdate, "the old owner learns it lost")
	})
}

func ids(execs []models.WorkflowExecution) []string {
	out := make([]string, len(execs))
	for i, e := range execs {
		out[i] = e.ExecutionID
	}
	return out
}
