package engine

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

type purged struct {
	counts repository.PurgeCounts
	err    error
}

// retentionConfig is a fast engine that keeps a day of history and reports
// its purges on the returned channel.
func retentionConfig(node string) (Config, chan purged) {
	ch := make(chan purged, 16)
	return Config{
		NodeID: node, HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: 500 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, DrainTimeout: 100 * time.Millisecond,
		Retention: 24 * time.Hour,
		onPurge:   func(c repository.PurgeCounts, err error) { ch <- purged{c, err} },
	}, ch
}

// endedAgo stores an execution of "retained"@"v1" that ended age ago.
func endedAgo(t *testing.T, s *repository.Storage, age time.Duration) string {
	t.Helper()
	ctx := t.Context()
	e, err := s.CreateExecution(ctx, repository.NewExecution{
		DefinitionID: "retained", DefinitionVersion: "v1", Labels: map[string]string{"k": "v"},
		Definition: &models.WorkflowDefinition{ID: "retained", Version: "v1", Name: "retained"},
	})
	require.NoError(t, err)
	_, err = s.CreateStepExecution(ctx, e.ExecutionID, "one", nil, 1)
	require.NoError(t, err)
	require.NoError(t, s.UpdateExecutionStatus(ctx, e.ExecutionID, models.ExecutionCompleted))
	res := s.DB().Model(&models.WorkflowExecution{}).Where("execution_id = ?", e.ExecutionID).
		UpdateColumn("completed_at", time.Now().UTC().Add(-age).Truncate(time.Microsecond))
	require.NoError(t, res.Error)
	return e.ExecutionID
}

func receivePurge(t *testing.T, ch <-chan purged) purged {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(time.Minute):
		t.Fatal("no purge within a minute")
	}
	return purged{}
}

// TestRetention_RunPurgesAtStart: an engine with Retention purges what ended
// longer ago as soon as Run starts, and keeps the rest.
func TestRetention_RunPurgesAtStart(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		old := []string{endedAgo(t, s, 48*time.Hour), endedAgo(t, s, 25*time.Hour)}
		recent := endedAgo(t, s, time.Hour)
		cfg, purges := retentionConfig("keeper")
		e := New(s, cfg)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		p := receivePurge(t, purges)
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, p.err)
		require.Equal(t, repository.PurgeCounts{Executions: 2, Steps: 2, Labels: 2}, p.counts)
		for _, id := range old {
			_, err := s.GetExecution(t.Context(), id)
			require.ErrorIs(t, err, repository.ErrNotFound)
		}
		_, err := s.GetExecution(t.Context(), recent)
		require.NoError(t, err)
	})
}

// TestRetention_OneNodeAtATime: the node holding the lease purges; another
// node's pass does nothing while the holder keeps renewing it.
func TestRetention_OneNodeAtATime(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		cfgA, purgesA := retentionConfig("node-a")
		cfgB, purgesB := retentionConfig("node-b")
		a, b := New(s, cfgA), New(s, cfgB)

		endedAgo(t, s, 48*time.Hour)
		a.purgeOnce(ctx, s)
		require.EqualValues(t, 1, receivePurge(t, purgesA).counts.Executions)

		kept := endedAgo(t, s, 48*time.Hour)
		b.purgeOnce(ctx, s)
		require.Empty(t, purgesB, "node-a holds the lease")
		_, err := s.GetExecution(ctx, kept)
		require.NoError(t, err)

		a.purgeOnce(ctx, s) // renews, and purges
		require.EqualValues(t, 1, receivePurge(t, purgesA).counts.Executions)
		b.purgeOnce(ctx, s)
		require.Empty(t, purgesB)
	})
}

func TestRetention_Interval(t *testing.T) {
	t.Parallel()
	for r, want := range map[time.Duration]time.Duration{
		time.Second:         time.Minute,
		30 * time.Minute:    3 * time.Minute,
		24 * time.Hour:      time.Hour,
		30 * 24 * time.Hour: time.Hour,
	} {
		require.Equal(t, want, retentionInterval(r), "retention %s", r)
		require.Equal(t, 2*want, retentionLeaseTTL(r))
	}
}

func TestRetention_NegativeIsInvalid(t *testing.T) {
	t.Parallel()
	s := testutil.NewSQLiteStorage(t)
	err := New(s, Config{Retention: -time.Hour}).Run(t.Context())
	require.ErrorIs(t, err, ErrInvalidConfig)
}
