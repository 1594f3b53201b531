package testutil_test

import (
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/stretchr/testify/require"

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
