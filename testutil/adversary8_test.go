package testutil_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Adversarial tests of issue 8: a user's unit tests of their own code, with
// the sqlmock helpers, in every case the helpers document.

func adv8Ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var adv8Welcome = engine.Define("welcome", "v1", func(*engine.Context, string) (string, error) { return "", nil })

func adv8Def() *models.WorkflowDefinition {
	return &models.WorkflowDefinition{ID: "welcome", Version: "v1", Name: "welcome"}
}

func adv8Stored(id, input string) models.WorkflowExecution {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return models.WorkflowExecution{
		ExecutionID: id, DefinitionID: "welcome", DefinitionVersion: "v1", Status: models.ExecutionPending,
		Input: models.JSON(input), Version: 1, LastHeartbeat: &now, CreatedAt: now, UpdatedAt: now,
	}
}

// StartTx with labels in the app's transaction; an idempotent StartTx of an
// existing id (refused insert, then the read); a failing StartTx rolls the
// app's transaction back.
func TestAdversary8_MockStartTxEveryCase(t *testing.T) {
	t.Parallel()
	ctx := adv8Ctx(t)
	store, mock := testutil.NewMockStorage(t)
	e := engine.New(store, engine.Config{NodeID: "web-1"})

	labels := map[string]string{"tenant": "t1", "plan": "pro"}
	withLabels := repository.NewExecution{ExecutionID: "signup-1", Definition: adv8Def(), Labels: labels}
	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecution(mock, withLabels, adv8Stored("signup-1", `"ada"`), testutil.InTransaction())
	testutil.ExpectCommit(mock)
	require.NoError(t, store.DB().WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		_, err := adv8Welcome.StartTx(ctx, e, tx, "ada", engine.WithExecutionID("signup-1"), engine.WithLabels(labels))
		return err
	}))
	require.NoError(t, mock.ExpectationsWereMet())

	// Idempotent: the refused insert, then the read of the existing one.
	again := repository.NewExecution{ExecutionID: "signup-1", Definition: adv8Def()}
	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecutionRefused(mock, again, true, testutil.InTransaction())
	testutil.ExpectGetExecution(mock, adv8Stored("signup-1", `"ada"`))
	testutil.ExpectCommit(mock)
	require.NoError(t, store.DB().WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		_, err := adv8Welcome.StartTx(ctx, e, tx, "ada", engine.WithExecutionID("signup-1"))
		return err
	}))
	require.NoError(t, mock.ExpectationsWereMet())

	// Another input for the same id: ErrAlreadyExists, and the app rolls back.
	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecutionRefused(mock, again, true, testutil.InTransaction())
	testutil.ExpectGetExecution(mock, adv8Stored("signup-1", `"ada"`))
	testutil.ExpectRollback(mock)
	err := store.DB().WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		_, err := adv8Welcome.StartTx(ctx, e, tx, "bo", engine.WithExecutionID("signup-1"))
		return err
	})
	require.ErrorIs(t, err, repository.ErrAlreadyExists)
	require.NoError(t, mock.ExpectationsWereMet())

	// The database fails the definition's insert.
	down := errors.New("connection refused")
	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecution(mock, again, models.WorkflowExecution{}, testutil.InTransaction(), testutil.WithError(down))
	testutil.ExpectRollback(mock)
	err = store.DB().WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		_, err := adv8Welcome.StartTx(ctx, e, tx, "ada", engine.WithExecutionID("signup-1"))
		return err
	})
	require.ErrorIs(t, err, down)
	require.NoError(t, mock.ExpectationsWereMet())

	// db.Begin form.
	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecution(mock, repository.NewExecution{ExecutionID: "signup-2", Definition: adv8Def()}, adv8Stored("signup-2", `"cy"`), testutil.InTransaction())
	testutil.ExpectCommit(mock)
	tx := store.DB().WithContext(ctx).Begin()
	require.NoError(t, tx.Error)
	_, err = adv8Welcome.StartTx(ctx, e, tx, "cy", engine.WithExecutionID("signup-2"))
	require.NoError(t, err)
	require.NoError(t, tx.Commit().Error)
	require.NoError(t, mock.ExpectationsWereMet())
}

// The engine's Start, Signal and Cancel on a mock: the first Start of a
// registered workflow stores its definition in a transaction of its own, a
// later one does not; an idempotent Start reads the existing execution.
func TestAdversary8_MockEngineCalls(t *testing.T) {
	t.Parallel()
	ctx := adv8Ctx(t)
	store, mock := testutil.NewMockStorage(t)
	e := engine.New(store, engine.Config{NodeID: "web-1"})
	require.NoError(t, e.Register(adv8Welcome))

	first := repository.NewExecution{ExecutionID: "w-1", Definition: adv8Def()}
	testutil.ExpectCreateExecution(mock, first, adv8Stored("w-1", `"ada"`))
	_, err := adv8Welcome.Start(ctx, e, "ada", engine.WithExecutionID("w-1"))
	require.NoError(t, err)
	require.NoError(t, mock.ExpectationsWereMet())

	second := repository.NewExecution{ExecutionID: "w-2", DefinitionID: "welcome", DefinitionVersion: "v1", Labels: map[string]string{"k": "v"}}
	testutil.ExpectCreateExecution(mock, second, adv8Stored("w-2", `"bo"`))
	_, err = adv8Welcome.Start(ctx, e, "bo", engine.WithExecutionID("w-2"), engine.WithLabels(map[string]string{"k": "v"}))
	require.NoError(t, err)
	require.NoError(t, mock.ExpectationsWereMet())

	idem := repository.NewExecution{ExecutionID: "w-1", DefinitionID: "welcome", DefinitionVersion: "v1"}
	testutil.ExpectCreateExecutionRefused(mock, idem, true)
	testutil.ExpectGetExecution(mock, adv8Stored("w-1", `"ada"`))
	_, err = adv8Welcome.Start(ctx, e, "ada", engine.WithExecutionID("w-1"))
	require.NoError(t, err)
	require.NoError(t, mock.ExpectationsWereMet())

	down := errors.New("connection refused")
	testutil.ExpectCreateExecution(mock, repository.NewExecution{ExecutionID: "w-3", DefinitionID: "welcome", DefinitionVersion: "v1"}, models.WorkflowExecution{}, testutil.WithError(down))
	_, err = adv8Welcome.Start(ctx, e, "x", engine.WithExecutionID("w-3"))
	require.ErrorIs(t, err, down)
	require.NoError(t, mock.ExpectationsWereMet())

	testutil.ExpectSendSignal(mock, "w-1", "approve", `"bo"`)
	require.NoError(t, e.Signal(ctx, "w-1", "approve", "bo"))
	testutil.ExpectSignalRefused(mock, "w-1", "approve", `"bo"`, models.ExecutionCompleted)
	require.ErrorIs(t, e.Signal(ctx, "w-1", "approve", "bo"), engine.ErrExecutionEnded)
	testutil.ExpectSignalRefused(mock, "nope", "approve", nil, "")
	require.ErrorIs(t, e.Signal(ctx, "nope", "approve", nil), engine.ErrNotFound)
	testutil.ExpectSignalRefused(mock, "w-1", "approve", nil, "", testutil.WithError(down))
	require.ErrorIs(t, e.Signal(ctx, "w-1", "approve", nil), down)
	require.NoError(t, mock.ExpectationsWereMet())

	running := adv8Stored("w-1", `"ada"`)
	running.Status = models.ExecutionRunning
	running.Version = 4
	v := int64(4)
	testutil.ExpectGetExecution(mock, running)
	testutil.ExpectUpdateExecutionStatus(mock, "w-1", models.ExecutionCancelled, &v)
	require.NoError(t, e.Cancel(ctx, "w-1"))
	testutil.ExpectExecutionNotFound(mock, "nope")
	require.ErrorIs(t, e.Cancel(ctx, "nope"), repository.ErrNotFound)
	testutil.ExpectGetExecution(mock, running, testutil.WithError(down))
	require.ErrorIs(t, e.Cancel(ctx, "w-1"), down)
	require.NoError(t, mock.ExpectationsWereMet())
}

// Storage.Transaction with several calls inside, and a failure in the middle
// that rolls it all back.
func TestAdversary8_MockStorageTransaction(t *testing.T) {
	t.Parallel()
	ctx := adv8Ctx(t)
	store, mock := testutil.NewMockStorage(t)
	down := errors.New("disk full")
	a := repository.NewExecution{ExecutionID: "a", DefinitionID: "welcome", DefinitionVersion: "v1", Labels: map[string]string{"x": "1"}}
	b := repository.NewExecution{ExecutionID: "b", Definition: adv8Def()}
	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecution(mock, a, adv8Stored("a", `1`), testutil.InTransaction())
	testutil.ExpectCreateExecution(mock, b, adv8Stored("b", `1`), testutil.InTransaction())
	testutil.ExpectSaveDefinition(mock, *adv8Def())
	testutil.ExpectUpdateHeartbeat(mock, "a", "n1", testutil.WithError(down))
	testutil.ExpectRollback(mock)
	err := store.Transaction(ctx, func(tx *repository.Storage) error {
		if _, err := tx.CreateExecution(ctx, a); err != nil {
			return err
		}
		if _, err := tx.CreateExecution(ctx, b); err != nil {
			return err
		}
		if err := tx.SaveDefinition(ctx, adv8Def()); err != nil {
			return err
		}
		return tx.UpdateHeartbeat(ctx, "a", "n1")
	})
	require.ErrorIs(t, err, down)
	require.NoError(t, mock.ExpectationsWereMet())

	// InTransaction refuses what is not a transaction.
	_, err = adv8Welcome.StartTx(ctx, engine.New(store, engine.Config{NodeID: "x"}), store.DB(), "ada")
	require.ErrorIs(t, err, repository.ErrInvalidArgument)
	require.NoError(t, mock.ExpectationsWereMet())
}
