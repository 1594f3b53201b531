package testutil_test

import (
	"errors"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// The README's testing section, as written there.

func TestReadme_RealDatabases(t *testing.T) {
	testutil.ForEachDialect(t, func(t *testing.T, store *repository.Storage) {
		_, err := store.GetExecution(t.Context(), "exec-1")
		require.ErrorIs(t, err, repository.ErrNotFound)
	})
}

func TestReadme_Sqlmock(t *testing.T) {
	store, mock := testutil.NewMockStorage(t)
	testutil.ExpectUpdateHeartbeat(mock, "exec-1", "node-1").WillReturnResult(sqlmock.NewResult(0, 0))
	testutil.ExpectHeartbeatMiss(mock, "exec-1", true)
	err := store.UpdateHeartbeat(t.Context(), "exec-1", "node-1")
	require.ErrorIs(t, err, repository.ErrConcurrentUpdate) // another node owns it now
}

// sqlmock around a transaction: a signup's welcome workflow starts in the
// app's db.Transaction; and a storage call that fails.
func TestReadme_SqlmockTransaction(t *testing.T) {
	store, mock := testutil.NewMockStorage(t)
	e := engine.New(store, engine.Config{NodeID: "web-1"})
	welcome := engine.Define("welcome", "v1", func(*engine.Context, string) (string, error) { return "", nil })
	def := &models.WorkflowDefinition{ID: "welcome", Version: "v1", Name: "welcome"}
	started := repository.NewExecution{ExecutionID: "signup-1", Definition: def}

	testutil.ExpectBegin(mock)
	testutil.ExpectCreateExecution(mock, started, models.WorkflowExecution{ExecutionID: "signup-1"}, testutil.InTransaction())
	testutil.ExpectCommit(mock)
	err := store.DB().Transaction(func(tx *gorm.DB) error {
		_, err := welcome.StartTx(t.Context(), e, tx, "ada@example.com", engine.WithExecutionID("signup-1"))
		return err
	})
	require.NoError(t, err)

	down := errors.New("connection refused")
	testutil.ExpectSaveDefinition(mock, *def, testutil.WithError(down))
	require.ErrorIs(t, store.SaveDefinition(t.Context(), def), down)
}
