package repository_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Run with `make bench` (PostgreSQL too when WORKFLOW_TEST_POSTGRES_DSN is set).
// Each benchmark reports stmts/op: SQL statements sent per operation, counted
// with a GORM callback (BEGIN and COMMIT are not counted; no benchmarked
// operation opens a transaction).

func forEachDialectBench(b *testing.B, fn func(b *testing.B, s *repository.Storage, stmts *atomic.Int64)) {
	for _, d := range []string{testutil.SQLite, testutil.Postgres} {
		b.Run(d, func(b *testing.B) {
			s := testutil.NewStorage(b, d)
			seedDefinition(b, s, "order", "v1")
			fn(b, s, testutil.CountStatements(b, s.DB()))
		})
	}
}

func report(b *testing.B, stmts *atomic.Int64) {
	b.ReportMetric(float64(stmts.Load())/float64(b.N), "stmts/op")
}

func BenchmarkCreateExecution(b *testing.B) {
	forEachDialectBench(b, func(b *testing.B, s *repository.Storage, stmts *atomic.Int64) {
		ctx := context.Background()
		stmts.Store(0)
		for b.Loop() {
			_, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Input: map[string]int{"n": 1}})
			require.NoError(b, err)
		}
		report(b, stmts)
	})
}

func BenchmarkHeartbeat(b *testing.B) {
	forEachDialectBench(b, func(b *testing.B, s *repository.Storage, stmts *atomic.Int64) {
		ctx := context.Background()
		e := create(b, s, repository.NewExecution{NodeID: "node-1"})
		stmts.Store(0)
		for b.Loop() {
			require.NoError(b, s.UpdateHeartbeat(ctx, e.ExecutionID, "node-1"))
		}
		report(b, stmts)
	})
}

func BenchmarkStatusWithVersion(b *testing.B) {
	forEachDialectBench(b, func(b *testing.B, s *repository.Storage, stmts *atomic.Int64) {
		ctx := context.Background()
		e := create(b, s, repository.NewExecution{})
		version := int64(e.Version)
		stmts.Store(0)
		for b.Loop() {
			require.NoError(b, s.UpdateExecutionStatusWithVersion(ctx, e.ExecutionID, models.ExecutionRunning, &version))
			version++
		}
		report(b, stmts)
	})
}

func BenchmarkTransferOwnership(b *testing.B) {
	forEachDialectBench(b, func(b *testing.B, s *repository.Storage, stmts *atomic.Int64) {
		ctx := context.Background()
		e := create(b, s, repository.NewExecution{NodeID: "node-0"})
		version := int64(e.Version)
		nodes := []string{"node-1", "node-2"}
		stmts.Store(0)
		for b.Loop() {
			require.NoError(b, s.TransferOwnership(ctx, e.ExecutionID, nodes[version%2], version))
			version++
		}
		report(b, stmts)
	})
}

func BenchmarkSendConsumeSignal(b *testing.B) {
	forEachDialectBench(b, func(b *testing.B, s *repository.Storage, stmts *atomic.Int64) {
		ctx := context.Background()
		e := create(b, s, repository.NewExecution{})
		stmts.Store(0)
		for b.Loop() {
			require.NoError(b, s.SendSignal(ctx, e.ExecutionID, "go", map[string]int{"n": 1}))
			_, ok, err := s.ConsumeSignal(ctx, e.ExecutionID, "go")
			require.NoError(b, err)
			require.True(b, ok)
		}
		report(b, stmts)
	})
}

// BenchmarkListStale lists the 100 stale executions among 100,000: half of the
// rest live with fresh heartbeats, half completed.
func BenchmarkListStale(b *testing.B) {
	forEachDialectBench(b, func(b *testing.B, s *repository.Storage, stmts *atomic.Int64) {
		ctx := context.Background()
		seedExecutions(b, s, 100_000, 100)
		stmts.Store(0)
		for b.Loop() {
			stale, err := s.ListStaleExecutions(ctx, 5*time.Minute, nil)
			require.NoError(b, err)
			require.Len(b, stale, 100)
		}
		report(b, stmts)
	})
}

func seedExecutions(b *testing.B, s *repository.Storage, total, stale int) {
	b.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := now.Add(-time.Hour)
	node := "node-1"
	const batch = 1000
	rows := make([]models.WorkflowExecution, 0, batch)
	for i := range total {
		e := models.WorkflowExecution{
			ExecutionID: "seed-" + time.Duration(i).String(), DefinitionID: "order", DefinitionVersion: "v1",
			Status: models.ExecutionRunning, NodeID: &node, LastHeartbeat: &now, CreatedAt: now, UpdatedAt: now,
		}
		switch {
		case i < stale:
			e.LastHeartbeat = &old
		case i%2 == 0:
			e.Status = models.ExecutionCompleted
			e.LastHeartbeat = &old
		}
		rows = append(rows, e)
		if len(rows) == batch || i == total-1 {
			require.NoError(b, s.DB().Create(&rows).Error)
			rows = rows[:0]
		}
	}
	require.NoError(b, s.DB().Exec("ANALYZE").Error)
}
