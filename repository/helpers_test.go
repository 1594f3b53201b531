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

// forEachDialect runs a parallel subtest per driver (testutil.Drivers: the
// storages the repository opens, an app's PostgreSQL *sql.DB and, registered
// in drivers_test.go, gorm.io/driver/sqlite) with a fresh storage and a
// definition "order"@"v1" to create executions of.
func forEachDialect(t *testing.T, fn func(t *testing.T, s *repository.Storage)) {
	t.Helper()
	t.Parallel()
	testutil.ForEachDriver(t, func(t *testing.T, s *repository.Storage) {
		seedDefinition(t, s, "order", "v1")
		fn(t, s)
	})
}

func seedDefinition(t testing.TB, s *repository.Storage, id, version string) {
	t.Helper()
	def := &models.WorkflowDefinition{ID: id, Version: version, Name: id + " workflow", Spec: models.JSON(`{"steps":["a","b"]}`)}
	require.NoError(t, s.SaveDefinition(context.Background(), def))
}

func create(t testing.TB, s *repository.Storage, in repository.NewExecution) *models.WorkflowExecution {
	t.Helper()
	if in.DefinitionID == "" {
		in.DefinitionID, in.DefinitionVersion = "order", "v1"
	}
	exec, err := s.CreateExecution(context.Background(), in)
	require.NoError(t, err)
	return exec
}

// ageHeartbeat moves an execution's last heartbeat into the past, as if its
// owner had stopped beating age ago. Both dialects compare against the same
// machine's clock here, so a Go time is fine.
func ageHeartbeat(t testing.TB, s *repository.Storage, executionID string, age time.Duration) {
	t.Helper()
	past := time.Now().UTC().Add(-age).Truncate(time.Microsecond)
	res := s.DB().Model(&models.WorkflowExecution{}).Where("execution_id = ?", executionID).UpdateColumn("last_heartbeat", past)
	require.NoError(t, res.Error)
	require.EqualValues(t, 1, res.RowsAffected)
}

func ptr[T any](v T) *T { return &v }
