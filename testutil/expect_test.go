package testutil_test

import (
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Each helper is checked against the repository itself, so the SQL they pin
// and the SQL the repository runs cannot drift apart.

func stored(id string) models.WorkflowExecution {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	node := "node-1"
	return models.WorkflowExecution{
		ExecutionID: id, DefinitionID: "order", DefinitionVersion: "v1", Status: models.ExecutionPending,
		Input: models.JSON(`{"n":1}`), NodeID: &node, Version: 1, LastHeartbeat: &now, CreatedAt: now, UpdatedAt: now,
	}
}

func TestExpectCreateAndGet(t *testing.T) {
	t.Parallel()
	s, mock := testutil.NewMockStorage(t)
	ctx := t.Context()
	in := repository.NewExecution{ExecutionID: "e1", DefinitionID: "order", DefinitionVersion: "v1", Input: map[string]int{"n": 1}, NodeID: "node-1"}
	testutil.ExpectCreateExecution(mock, in, stored("e1"))
	got, err := s.CreateExecution(ctx, in)
	require.NoError(t, err)
	require.Equal(t, stored("e1"), *got)

	withLabels := repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Labels: map[string]string{"a": "1", "b": "2"}}
	testutil.ExpectCreateExecution(mock, withLabels, stored("e2"))
	_, err = s.CreateExecution(ctx, withLabels)
	require.NoError(t, err)

	def := &models.WorkflowDefinition{ID: "order", Version: "v1", Name: "order workflow"}
	withDef := repository.NewExecution{ExecutionID: "e3", Definition: def, Labels: map[string]string{"a": "1"}}
	testutil.ExpectCreateExecution(mock, withDef, stored("e3"))
	_, err = s.CreateExecution(ctx, withDef)
	require.NoError(t, err)

	testutil.ExpectCreateExecutionRefused(mock, in, true)
	_, err = s.CreateExecution(ctx, in)
	require.ErrorIs(t, err, repository.ErrAlreadyExists)
	missing := repository.NewExecution{ExecutionID: "e4", DefinitionID: "nope", DefinitionVersion: "v1"}
	testutil.ExpectCreateExecutionRefused(mock, missing, false)
	_, err = s.CreateExecution(ctx, missing)
	require.ErrorIs(t, err, repository.ErrNotFound)
	withDef.ExecutionID = "e1"
	testutil.ExpectCreateExecutionRefused(mock, withDef, true)
	_, err = s.CreateExecution(ctx, withDef)
	require.ErrorIs(t, err, repository.ErrAlreadyExists)

	e := stored("e1")
	e.Labels = map[string]string{"tenant": "acme"}
	testutil.ExpectGetExecution(mock, e)
	got, err = s.GetExecution(ctx, "e1")
	require.NoError(t, err)
	require.Equal(t, e, *got)

	testutil.ExpectExecutionNotFound(mock, "nope")
	_, err = s.GetExecution(ctx, "nope")
	require.ErrorIs(t, err, repository.ErrNotFound)
}

func TestExpectUpdates(t *testing.T) {
	t.Parallel()
	s, mock := testutil.NewMockStorage(t)
	ctx := t.Context()
	v := int64(3)
	for _, st := range []models.ExecutionStatus{models.ExecutionRunning, models.ExecutionCompleted, models.ExecutionPending} {
		testutil.ExpectUpdateExecutionStatus(mock, "e1", st, &v)
		require.NoError(t, s.UpdateExecutionStatusWithVersion(ctx, "e1", st, &v))
		testutil.ExpectUpdateExecutionStatus(mock, "e1", st, nil)
		require.NoError(t, s.UpdateExecutionStatus(ctx, "e1", st))
	}

	testutil.ExpectUpdateExecutionStatus(mock, "e1", models.ExecutionFailed, &v).WillReturnResult(sqlmock.NewResult(0, 0))
	testutil.ExpectVersionMiss(mock, "e1", true)
	require.ErrorIs(t, s.UpdateExecutionStatusWithVersion(ctx, "e1", models.ExecutionFailed, &v), repository.ErrConcurrentUpdate)

	testutil.ExpectUpdateExecutionOutput(mock, "e1", `{"ok":true}`, &v)
	require.NoError(t, s.UpdateExecutionOutput(ctx, "e1", map[string]bool{"ok": true}, &v))

	testutil.ExpectTransferOwnership(mock, "e1", "node-2", 3)
	require.NoError(t, s.TransferOwnership(ctx, "e1", "node-2", 3))
	testutil.ExpectTransferOwnership(mock, "gone", "node-2", 3).WillReturnResult(sqlmock.NewResult(0, 0))
	testutil.ExpectVersionMiss(mock, "gone", false)
	require.ErrorIs(t, s.TransferOwnership(ctx, "gone", "node-2", 3), repository.ErrNotFound)

	testutil.ExpectUpdateHeartbeat(mock, "e1", "node-1")
	require.NoError(t, s.UpdateHeartbeat(ctx, "e1", "node-1"))
	testutil.ExpectUpdateHeartbeat(mock, "e1", "node-9").WillReturnResult(sqlmock.NewResult(0, 0))
	testutil.ExpectHeartbeatMiss(mock, "e1", true)
	require.ErrorIs(t, s.UpdateHeartbeat(ctx, "e1", "node-9"), repository.ErrConcurrentUpdate)
}

func TestExpectStaleAndSignals(t *testing.T) {
	t.Parallel()
	s, mock := testutil.NewMockStorage(t)
	ctx := t.Context()
	testutil.ExpectListStaleExecutions(mock, 5*time.Minute, stored("e1"), stored("e2"))
	stale, err := s.ListStaleExecutions(ctx, 5*time.Minute, nil)
	require.NoError(t, err)
	require.Len(t, stale, 2)

	testutil.ExpectSendSignal(mock, "e1", "approve", `{"ok":true}`)
	require.NoError(t, s.SendSignal(ctx, "e1", "approve", map[string]bool{"ok": true}))
	testutil.ExpectSignalRefused(mock, "e1", "approve", nil, models.ExecutionCompleted)
	require.ErrorIs(t, s.SendSignal(ctx, "e1", "approve", nil), repository.ErrExecutionEnded)
	testutil.ExpectSignalRefused(mock, "gone", "approve", nil, "")
	require.ErrorIs(t, s.SendSignal(ctx, "gone", "approve", nil), repository.ErrNotFound)

	sig := models.Signal{Seq: 7, SignalID: "s1", ExecutionID: "e1", Name: "approve", Payload: models.JSON(`{"ok":true}`), ReceivedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	testutil.ExpectConsumeSignal(mock, "e1", "approve", &sig)
	got, ok, err := s.ConsumeSignal(ctx, "e1", "approve")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, sig, got)
	testutil.ExpectConsumeSignal(mock, "e1", "approve", nil)
	_, ok, err = s.ConsumeSignal(ctx, "e1", "approve")
	require.NoError(t, err)
	require.False(t, ok)
}
