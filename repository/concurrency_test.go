package repository_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// race starts n goroutines that call fn(i) at the same moment and waits for
// all of them, at most a minute.
func race(t *testing.T, n int, fn func(i int)) {
	t.Helper()
	var start, done sync.WaitGroup
	start.Add(1)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			start.Wait()
			fn(i)
		}()
	}
	start.Done()
	finished := make(chan struct{})
	go func() { done.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatal("racing goroutines did not finish within a minute")
	}
}

func TestConcurrent_TransferOneWinner(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{NodeID: "dead-node"})
		const nodes = 8
		errs := make([]error, nodes)
		race(t, nodes, func(i int) {
			errs[i] = s.TransferOwnership(ctx, exec.ExecutionID, nodeName(i), int64(exec.Version))
		})
		winners := 0
		winner := ""
		for i, err := range errs {
			if err == nil {
				winners++
				winner = nodeName(i)
				continue
			}
			require.ErrorIs(t, err, repository.ErrConcurrentUpdate, "node %d", i)
		}
		require.Equal(t, 1, winners)
		got, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, winner, *got.NodeID)
		require.EqualValues(t, 2, got.Version)
	})
}

func nodeName(i int) string { return "node-" + string(rune('a'+i)) }

func TestConcurrent_ConsumeExactlyOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{})
		const signals, consumers = 100, 8
		for i := range signals {
			require.NoError(t, s.SendSignal(ctx, exec.ExecutionID, "job", i))
		}
		var mu sync.Mutex
		seen := map[string]int{}
		var failures atomic.Int64
		race(t, consumers, func(int) {
			for range signals * 2 { // bounded: more than enough for all signals
				sig, ok, err := s.ConsumeSignal(ctx, exec.ExecutionID, "job")
				if err != nil {
					failures.Add(1)
					t.Errorf("consume: %v", err)
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				seen[sig.SignalID]++
				mu.Unlock()
			}
		})
		require.Zero(t, failures.Load())
		require.Len(t, seen, signals, "every signal consumed")
		for id, n := range seen {
			require.Equal(t, 1, n, "signal %s consumed %d times", id, n)
		}
		_, ok, err := s.CheckSignal(ctx, exec.ExecutionID, "job")
		require.NoError(t, err)
		require.False(t, ok)
	})
}

func TestConcurrent_VersionedUpdatesLoseNoWrite(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{})
		const writers, perWriter = 8, 10
		var applied atomic.Int64
		race(t, writers, func(i int) {
			for range perWriter {
				for range 1000 { // retry a conflict with a fresh read, bounded
					cur, err := s.GetExecution(ctx, exec.ExecutionID)
					if err != nil {
						t.Errorf("get: %v", err)
						return
					}
					version := int64(cur.Version)
					err = s.UpdateExecutionOutput(ctx, exec.ExecutionID, version, &version)
					if err == nil {
						applied.Add(1)
						break
					}
					if !errors.Is(err, repository.ErrConcurrentUpdate) {
						t.Errorf("update: %v", err)
						return
					}
				}
			}
		})
		got, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.EqualValues(t, writers*perWriter, applied.Load())
		require.EqualValues(t, 1+writers*perWriter, got.Version, "no lost update")
	})
}

func TestConcurrent_WritersOnSQLiteFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := repository.NewSQLite(ctx, "sqlite://"+t.TempDir()+"/wf.db")
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	seedDefinition(t, s, "order", "v1")
	const goroutines, each = 16, 20
	race(t, goroutines, func(int) {
		for range each {
			err := s.Transaction(ctx, func(tx *repository.Storage) error {
				e, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Labels: map[string]string{"k": "v"}})
				if err != nil {
					return err
				}
				version := int64(e.Version)
				return tx.UpdateExecutionStatusWithVersion(ctx, e.ExecutionID, models.ExecutionRunning, &version)
			})
			if err != nil {
				t.Errorf("transaction: %v", err) // "database is locked" would land here
				return
			}
		}
	})
	running, err := s.ListExecutionsByStatus(ctx, []models.ExecutionStatus{models.ExecutionRunning}, nil)
	require.NoError(t, err)
	require.Len(t, running, goroutines*each)
}
