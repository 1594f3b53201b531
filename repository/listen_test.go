package repository_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/migrations"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// eventWait bounds the wait for one event: generous, as a loaded machine may
// be slow, and far below anything a test could mistake for polling.
const eventWait = 10 * time.Second

// listen runs s.Listen until the test ends and returns what it hears, as
// "kind:execution_id", after the first EventResync (the listener is ready).
func listen(t *testing.T, s *repository.Storage) <-chan string {
	t.Helper()
	events := make(chan string, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Listen(ctx, func(kind, id string) { events <- kind + ":" + id })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(eventWait):
			t.Error("Listen did not return after its context ended")
		}
	})
	requireEvent(t, events, repository.EventResync+":")
	return events
}

// requireEvent requires that the next event other than EventResync is want.
func requireEvent(t *testing.T, events <-chan string, want string) {
	t.Helper()
	timeout := time.After(eventWait)
	for {
		select {
		case got := <-events:
			if got == repository.EventResync+":" && want != got {
				continue
			}
			require.Equal(t, want, got)
			return
		case <-timeout:
			t.Fatalf("no event %s within %s", want, eventWait)
		}
	}
}

// requireNoEvent requires that no event other than EventResync comes for a
// moment.
func requireNoEvent(t *testing.T, events <-chan string) {
	t.Helper()
	timeout := time.After(200 * time.Millisecond)
	for {
		select {
		case got := <-events:
			require.Equal(t, repository.EventResync+":", got, "an event before its change committed")
		case <-timeout:
			return
		}
	}
}

// TestListen_AnnouncesCommittedChanges: each change another engine may act
// on is announced once committed, with its kind and execution id, and
// nothing else is: not an owned creation, a claim, a park until later, nor a
// write of a transaction that has not committed or rolled back.
func TestListen_AnnouncesCommittedChanges(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		events := listen(t, s)
		owned := func() string { return create(t, s, repository.NewExecution{NodeID: "n1"}).ExecutionID }
		// marker is a change that is announced: if it comes next, nothing
		// was announced since the last expected event.
		marker := func() {
			t.Helper()
			id := create(t, s, repository.NewExecution{}).ExecutionID
			requireEvent(t, events, "claimable:"+id)
		}

		unowned := create(t, s, repository.NewExecution{}).ExecutionID
		requireEvent(t, events, "claimable:"+unowned)
		signalled := owned()
		marker() // an owned creation is not claimable
		require.NoError(t, s.SendSignal(ctx, signalled, "go", 1))
		requireEvent(t, events, "signal:"+signalled)

		require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: signalled, NodeID: "n1", Until: time.Now().Add(time.Hour)}))
		marker() // parked until later: not due
		claimed := claimAll(t, s, "n2")
		require.Contains(t, claimed, unowned)
		require.NotContains(t, claimed, signalled)
		marker() // a claim announces nothing

		due := owned()
		require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: due, NodeID: "n1", Until: time.Now().Add(-time.Second)}))
		requireEvent(t, events, "claimable:"+due)
		waiting := owned()
		require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: waiting, NodeID: "n1", Signal: "approve"}))
		marker() // parked for a signal not stored yet
		early := owned()
		require.NoError(t, s.SendSignal(ctx, early, "approve", nil))
		requireEvent(t, events, "signal:"+early)
		require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: early, NodeID: "n1", Signal: "approve"}))
		requireEvent(t, events, "claimable:"+early) // its signal came before it parked

		released := owned()
		require.NoError(t, s.ReleaseExecution(ctx, released, "n1"))
		requireEvent(t, events, "claimable:"+released)
		finished := owned()
		require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: finished, NodeID: "n1", Status: models.ExecutionCompleted}))
		requireEvent(t, events, "ended:"+finished)
		cur, err := s.GetExecution(ctx, waiting)
		require.NoError(t, err)
		version := int64(cur.Version)
		require.NoError(t, s.UpdateExecutionStatusWithVersion(ctx, waiting, models.ExecutionCancelled, &version))
		requireEvent(t, events, "ended:"+waiting) // a cancel ends it

		// In a transaction: announced at commit, never on rollback.
		var inTx string
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			inTx = create(t, tx, repository.NewExecution{}).ExecutionID
			requireNoEvent(t, events)
			return nil
		}))
		requireEvent(t, events, "claimable:"+inTx)
		rollback := errors.New("rolled back")
		require.ErrorIs(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			create(t, tx, repository.NewExecution{})
			return rollback
		}), rollback)
		marker()
	})
}

// TestListen_Unsupported: a storage that cannot listen says so at once, and
// its caller polls.
func TestListen_Unsupported(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	noop := func(string, string) {}
	s := testutil.NewSQLiteStorage(t)
	require.ErrorIs(t, s.Listen(ctx, nil), repository.ErrInvalidArgument)
	require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
		require.ErrorIs(t, tx.Listen(ctx, noop), repository.ErrListenUnsupported)
		return nil
	}))
	mock, _ := testutil.NewMockStorage(t) // PostgreSQL on sqlmock: not pgx's connections
	require.ErrorIs(t, mock.Listen(ctx, noop), repository.ErrListenUnsupported)

	t.Run("postgres without migration 008", func(t *testing.T) {
		t.Parallel()
		s := testutil.NewPostgresStorage(t)
		for applied := true; applied; {
			require.NoError(t, migrations.RollbackLast(ctx, s.DB()))
			var n int64
			require.NoError(t, s.DB().Table(migrations.TableName).Where("id = ?", migrations.IDWakeUps).Count(&n).Error)
			applied = n > 0
		}
		require.ErrorIs(t, s.Listen(ctx, noop), repository.ErrListenUnsupported)
	})
}

// TestListen_PostgresReconnects: the listener's connection is killed; it
// connects again, says EventResync, and later changes, made through another
// storage on the same database, still arrive.
func TestListen_PostgresReconnects(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresSchemaDSN(t)
	app := fmt.Sprintf("wf_listen_%d", time.Now().UnixNano())
	listening, err := repository.Open(t.Context(), dsn+"&application_name="+app, repository.WithMaxOpenConns(2))
	require.NoError(t, err)
	t.Cleanup(func() { _ = listening.Close() })
	writer, err := repository.Open(t.Context(), dsn, repository.WithMaxOpenConns(2))
	require.NoError(t, err)
	t.Cleanup(func() { _ = writer.Close() })
	seedDefinition(t, writer, "order", "v1")

	events := listen(t, listening)
	first := create(t, writer, repository.NewExecution{}).ExecutionID
	requireEvent(t, events, "claimable:"+first)

	for kill := range 2 {
		var killed []bool
		require.NoError(t, writer.DB().Raw(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity `+
			`WHERE application_name = ? AND query LIKE 'LISTEN%'`, app).Scan(&killed).Error)
		require.Equal(t, []bool{true}, killed, "kill %d: one listening connection", kill)
		requireEvent(t, events, repository.EventResync+":")
		later := create(t, writer, repository.NewExecution{}).ExecutionID
		requireEvent(t, events, "claimable:"+later)
	}
}
