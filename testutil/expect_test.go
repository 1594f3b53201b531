package testutil_test

import (
	"errors"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
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

func TestExpectInsideTransactions(t *testing.T) {
	t.Parallel()
	s, mock := testutil.NewMockStorage(t)
	ctx := t.Context()
	def := &models.WorkflowDefinition{ID: "order", Version: "v1", Name: "order"}
	in := repository.NewExecution{ExecutionID: "e1", Definition: def, Labels: map[string]string{"tenant": "acme"}}

	// Storage.Transaction: the create nests no transaction of its own.
	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecution(mock, in, stored("e1"), testutil.InTransaction())
	testutil.ExpectCommit(mock)
	require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
		_, err := tx.CreateExecution(ctx, in)
		return err
	}))

	// StartTx in the app's db.Begin, twice with one id: the second start
	// finds the first and compares it.
	greet := engine.Define("order", "v1", func(*engine.Context, map[string]int) (string, error) { return "", nil })
	e := engine.New(s, engine.Config{NodeID: "client"})
	started := repository.NewExecution{ExecutionID: "e2", Definition: def}
	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecution(mock, started, stored("e2"), testutil.InTransaction())
	testutil.ExpectCreateExecutionRefused(mock, started, true, testutil.InTransaction())
	testutil.ExpectGetExecution(mock, stored("e2"))
	testutil.ExpectCommit(mock)
	tx := s.DB().WithContext(ctx).Begin()
	require.NoError(t, tx.Error)
	h, err := greet.StartTx(ctx, e, tx, map[string]int{"n": 1}, engine.WithExecutionID("e2"))
	require.NoError(t, err)
	require.Equal(t, "e2", h.ID())
	_, err = greet.StartTx(ctx, e, tx, map[string]int{"n": 1}, engine.WithExecutionID("e2"))
	require.NoError(t, err)
	require.NoError(t, tx.Commit().Error)

	// A rolled-back transaction.
	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecution(mock, repository.NewExecution{Definition: def}, stored("e3"), testutil.InTransaction())
	testutil.ExpectRollback(mock)
	tx = s.DB().WithContext(ctx).Begin()
	_, err = greet.StartTx(ctx, e, tx, map[string]int{"n": 1})
	require.NoError(t, err)
	require.NoError(t, tx.Rollback().Error)
}

func TestExpectSaveDefinitionAndFailures(t *testing.T) {
	t.Parallel()
	s, mock := testutil.NewMockStorage(t)
	ctx := t.Context()
	when := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	def := models.WorkflowDefinition{ID: "order", Version: "v1", Name: "order", Spec: models.JSON(`{"timeout":"1m"}`), CreatedAt: when, UpdatedAt: when}
	testutil.ExpectSaveDefinition(mock, def)
	saved := models.WorkflowDefinition{ID: "order", Version: "v1", Name: "order", Spec: models.JSON(`{"timeout":"1m"}`)}
	require.NoError(t, s.SaveDefinition(ctx, &saved))
	require.Equal(t, def, saved)

	down := errors.New("connection refused")
	testutil.ExpectSaveDefinition(mock, def, testutil.WithError(down))
	require.ErrorIs(t, s.SaveDefinition(ctx, &saved), down)

	in := repository.NewExecution{ExecutionID: "e1", DefinitionID: "order", DefinitionVersion: "v1"}
	testutil.ExpectCreateExecution(mock, in, stored("e1"), testutil.WithError(down))
	_, err := s.CreateExecution(ctx, in)
	require.ErrorIs(t, err, down)
	withLabels := repository.NewExecution{ExecutionID: "e1", Definition: &def, Labels: map[string]string{"a": "b"}}
	testutil.ExpectCreateExecution(mock, withLabels, stored("e1"), testutil.WithError(down)) // rolls back
	_, err = s.CreateExecution(ctx, withLabels)
	require.ErrorIs(t, err, down)
	testutil.ExpectCreateExecutionRefused(mock, in, true, testutil.WithError(down))
	_, err = s.CreateExecution(ctx, in)
	require.ErrorIs(t, err, down)

	testutil.ExpectGetExecution(mock, stored("e1"), testutil.WithError(down))
	_, err = s.GetExecution(ctx, "e1")
	require.ErrorIs(t, err, down)
	testutil.ExpectExecutionNotFound(mock, "e1", testutil.WithError(down))
	_, err = s.GetExecution(ctx, "e1")
	require.ErrorIs(t, err, down)

	v := int64(1)
	testutil.ExpectUpdateExecutionStatus(mock, "e1", models.ExecutionRunning, &v, testutil.WithError(down))
	require.ErrorIs(t, s.UpdateExecutionStatusWithVersion(ctx, "e1", models.ExecutionRunning, &v), down)
	testutil.ExpectUpdateExecutionOutput(mock, "e1", `1`, &v, testutil.WithError(down))
	require.ErrorIs(t, s.UpdateExecutionOutput(ctx, "e1", 1, &v), down)
	testutil.ExpectTransferOwnership(mock, "e1", "node-2", 1, testutil.WithError(down))
	require.ErrorIs(t, s.TransferOwnership(ctx, "e1", "node-2", 1), down)
	testutil.ExpectUpdateHeartbeat(mock, "e1", "node-1", testutil.WithError(down))
	require.ErrorIs(t, s.UpdateHeartbeat(ctx, "e1", "node-1"), down)
	testutil.ExpectUpdateHeartbeat(mock, "e1", "node-1").WillReturnResult(sqlmock.NewResult(0, 0))
	testutil.ExpectHeartbeatMiss(mock, "e1", true, testutil.WithError(down))
	require.ErrorIs(t, s.UpdateHeartbeat(ctx, "e1", "node-1"), down)
	testutil.ExpectUpdateExecutionStatus(mock, "e1", models.ExecutionRunning, &v).WillReturnResult(sqlmock.NewResult(0, 0))
	testutil.ExpectVersionMiss(mock, "e1", true, testutil.WithError(down))
	require.ErrorIs(t, s.UpdateExecutionStatusWithVersion(ctx, "e1", models.ExecutionRunning, &v), down)

	testutil.ExpectListStaleExecutions(mock, time.Minute).WillReturnError(down)
	_, err = s.ListStaleExecutions(ctx, time.Minute, nil)
	require.ErrorIs(t, err, down)
	testutil.ExpectSendSignal(mock, "e1", "go", nil, testutil.WithError(down))
	require.ErrorIs(t, s.SendSignal(ctx, "e1", "go", nil), down)
	testutil.ExpectSignalRefused(mock, "e1", "go", nil, "", testutil.WithError(down))
	require.ErrorIs(t, s.SendSignal(ctx, "e1", "go", nil), down)
	testutil.ExpectConsumeSignal(mock, "e1", "go", nil, testutil.WithError(down))
	_, _, err = s.ConsumeSignal(ctx, "e1", "go")
	require.ErrorIs(t, err, down)
}
