package recovery_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/recovery"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// resumer records what it is asked to resume, and signals each call.
type resumer struct {
	mu      sync.Mutex
	resumed map[string][]string // execution id -> nodes
	calls   chan string
}

func newResumer() *resumer {
	return &resumer{resumed: map[string][]string{}, calls: make(chan string, 1000)}
}

func (r *resumer) Resume(_ context.Context, e *models.WorkflowExecution) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resumed[e.ExecutionID] = append(r.resumed[e.ExecutionID], *e.NodeID)
	r.calls <- e.ExecutionID
	return nil
}

func setup(t *testing.T, s *repository.Storage) {
	t.Helper()
	require.NoError(t, s.SaveDefinition(t.Context(), &models.WorkflowDefinition{ID: "order", Version: "v1", Name: "order"}))
}

func create(t *testing.T, s *repository.Storage, node string, status models.ExecutionStatus, age time.Duration) string {
	t.Helper()
	ctx := t.Context()
	e, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: node})
	require.NoError(t, err)
	if status != models.ExecutionPending {
		require.NoError(t, s.UpdateExecutionStatus(ctx, e.ExecutionID, status))
	}
	if age > 0 {
		past := time.Now().UTC().Add(-age)
		require.NoError(t, s.DB().Model(&models.WorkflowExecution{}).Where("execution_id = ?", e.ExecutionID).UpdateColumn("last_heartbeat", past).Error)
	}
	return e.ExecutionID
}

func TestRecoverOnStartup(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		ctx := t.Context()
		mineFresh := create(t, s, "me", models.ExecutionRunning, 0)
		mineStale := create(t, s, "me", models.ExecutionRunning, time.Hour)
		unowned := create(t, s, "", models.ExecutionPending, 0)
		othersStale := create(t, s, "dead", models.ExecutionRunning, time.Hour)
		othersFresh := create(t, s, "alive", models.ExecutionRunning, 0)
		create(t, s, "dead", models.ExecutionCompleted, time.Hour)

		r := newResumer()
		report, err := recovery.NewService(s, "me", recovery.WithResumer(r)).RecoverOnStartup(ctx, 5*time.Minute, time.Minute)
		require.NoError(t, err)
		require.Equal(t, recovery.Report{Total: 4, Recovered: 2, Claimed: 1, Transferred: 1}, report)
		require.Len(t, r.resumed, 4)
		for _, id := range []string{mineFresh, mineStale, unowned, othersStale} {
			require.Equal(t, []string{"me"}, r.resumed[id], id)
			e, err := s.GetExecution(ctx, id)
			require.NoError(t, err)
			require.Equal(t, "me", *e.NodeID)
		}
		e, err := s.GetExecution(ctx, othersFresh)
		require.NoError(t, err)
		require.Equal(t, "alive", *e.NodeID, "a live node keeps its work")
	})
}

func TestRecoverOnStartup_NodesRacing(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		const executions, nodes = 20, 4
		for range executions {
			create(t, s, "dead", models.ExecutionRunning, time.Hour)
		}
		r := newResumer()
		reports := make([]recovery.Report, nodes)
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				svc := recovery.NewService(s, "node-"+string(rune('a'+i)), recovery.WithResumer(r))
				var err error
				reports[i], err = svc.RecoverOnStartup(context.Background(), 5*time.Minute, time.Minute)
				require.NoError(t, err)
			}()
		}
		wg.Wait()
		transferred := 0
		for _, rep := range reports {
			require.Zero(t, rep.Failed)
			transferred += rep.Transferred
		}
		require.Equal(t, executions, transferred, "each taken over once")
		require.Len(t, r.resumed, executions, "none lost")
		for id, by := range r.resumed {
			require.Len(t, by, 1, "%s resumed by %v", id, by)
		}
	})
}

func TestRun_HeartbeatsAndSweeps(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		mine := create(t, s, "me", models.ExecutionRunning, 0)
		orphan := create(t, s, "dead", models.ExecutionRunning, time.Hour)

		r := newResumer()
		beats := make(chan []string, 100)
		ctx, cancel := context.WithCancel(t.Context())
		svc := recovery.NewService(s, "me", recovery.WithResumer(r),
			recovery.WithHeartbeatInterval(10*time.Millisecond), recovery.WithSweepInterval(10*time.Millisecond),
			recovery.WithStaleThreshold(time.Minute),
			recovery.WithHeartbeatHook(func(_ context.Context, owned []string) {
				select {
				case beats <- owned:
				default:
				}
			}))
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()

		select {
		case id := <-r.calls:
			require.Equal(t, orphan, id, "the sweep claims the dead node's work")
		case <-time.After(30 * time.Second):
			t.Fatal("no sweep claimed the orphan")
		}
		deadline := time.After(30 * time.Second)
		for seen := false; !seen; {
			select {
			case owned := <-beats:
				seen = len(owned) == 2
				if seen {
					require.ElementsMatch(t, []string{mine, orphan}, owned)
				}
			case <-deadline:
				t.Fatal("no heartbeat covered both executions")
			}
		}
		cancel()
		require.NoError(t, <-done)
	})
}

func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	s := testutil.NewSQLiteStorage(t)
	_, err := recovery.NewService(s, "").RecoverOnStartup(t.Context(), 0, 0)
	require.ErrorIs(t, err, recovery.ErrInvalidConfig)
	err = recovery.NewService(s, "n", recovery.WithStaleThreshold(time.Second), recovery.WithHeartbeatInterval(time.Second)).Run(t.Context())
	require.ErrorIs(t, err, recovery.ErrInvalidConfig)
}

func TestRecoverOnStartup_OnlyKnownDefinitions(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		ctx := t.Context()
		require.NoError(t, s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: "refund", Version: "v1", Name: "refund"}))
		order := create(t, s, "", models.ExecutionPending, 0)
		refund, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "refund", DefinitionVersion: "v1"})
		require.NoError(t, err)

		r := newResumer()
		svc := recovery.NewService(s, "me", recovery.WithResumer(r), recovery.WithDefinitions(repository.DefinitionKey{ID: "refund", Version: "v1"}))
		report, err := svc.RecoverOnStartup(ctx, 5*time.Minute, time.Minute)
		require.NoError(t, err)
		require.Equal(t, recovery.Report{Total: 1, Claimed: 1}, report)
		require.Contains(t, r.resumed, refund.ExecutionID)
		require.NotContains(t, r.resumed, order)
	})
}

func TestRecoverOnStartup_RespectsCapacity(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		mine := create(t, s, "me", models.ExecutionRunning, time.Hour)
		for range 5 {
			create(t, s, "", models.ExecutionPending, 0)
		}
		r := newResumer()
		free := 2
		svc := recovery.NewService(s, "me", recovery.WithResumer(r), recovery.WithCapacity(func() int { return free - len(r.resumed) }))
		report, err := svc.RecoverOnStartup(t.Context(), 5*time.Minute, time.Minute)
		require.NoError(t, err)
		require.Contains(t, r.resumed, mine, "its own work is always resumed")
		require.Len(t, r.resumed, 2, "and other work only up to the capacity")
		require.Equal(t, 1, report.Claimed)
	})
}

// TestSweep_NoRoomLeavesTheHooksAlone: a sweep with no free slot runs no
// statement and calls neither hook, whatever waits; with room, the same
// sweep claims, and a claim that took all it could says so.
func TestSweep_NoRoomLeavesTheHooksAlone(t *testing.T) {
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		setup(t, s)
		for range 3 {
			create(t, s, "", models.ExecutionPending, 0)
		}
		r := newResumer()
		free := 0
		var claims, full int
		svc := recovery.NewService(s, "me", recovery.WithResumer(r), recovery.WithBatchSize(2),
			recovery.WithCapacity(func() int { return free }),
			recovery.WithClaimHook(func() { claims++ }), recovery.WithFullClaimHook(func() { full++ }))
		svc.Sweep(t.Context())
		require.Zero(t, claims)
		require.Zero(t, full, "no room is no news of waiting work")
		require.Empty(t, r.resumed)

		free = 2
		svc.Sweep(t.Context())
		require.Positive(t, claims)
		require.Positive(t, full, "two claimed of three waiting")
		require.Len(t, r.resumed, 2)
	})
}
