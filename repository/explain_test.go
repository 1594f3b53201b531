package repository_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// captureQueries records the SQL and arguments of every query s runs.
type captured struct {
	mu   sync.Mutex
	sql  []string
	vars [][]any
}

func captureQueries(t *testing.T, s *repository.Storage) *captured {
	t.Helper()
	c := &captured{}
	name := "test:capture:" + t.Name()
	record := func(db *gorm.DB) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.sql = append(c.sql, db.Statement.SQL.String())
		c.vars = append(c.vars, append([]any(nil), db.Statement.Vars...))
	}
	// Model queries and Raw().Find go through the Query callbacks, Raw().Scan
	// through Row, Exec through Raw.
	require.NoError(t, s.DB().Callback().Query().After("gorm:query").Register(name, record))
	require.NoError(t, s.DB().Callback().Row().After("gorm:row").Register(name, record))
	require.NoError(t, s.DB().Callback().Raw().After("gorm:raw").Register(name, record))
	t.Cleanup(func() {
		_ = s.DB().Callback().Query().Remove(name)
		_ = s.DB().Callback().Row().Remove(name)
		_ = s.DB().Callback().Raw().Remove(name)
	})
	return c
}

// explain returns the query plan of a captured statement as text.
func explain(t *testing.T, s *repository.Storage, query string, vars []any) string {
	t.Helper()
	ctx := context.Background()
	pool, err := s.DB().DB()
	require.NoError(t, err)
	tx, err := pool.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	prefix := "EXPLAIN QUERY PLAN "
	if s.Dialect() == "postgres" {
		// A test table is small enough that a sequential scan is cheapest;
		// forbidding it shows which index the planner can use.
		_, err = tx.ExecContext(ctx, "SET LOCAL enable_seqscan = off")
		require.NoError(t, err)
		prefix = "EXPLAIN "
	}
	args := make([]any, len(vars))
	for i, v := range vars {
		if st, ok := v.(models.ExecutionStatus); ok {
			v = string(st)
		}
		args[i] = v
	}
	rows, err := tx.QueryContext(ctx, prefix+query, args...)
	require.NoError(t, err)
	defer rows.Close()
	cols, err := rows.Columns()
	require.NoError(t, err)
	var plan strings.Builder
	for rows.Next() {
		cells := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range cells {
			ptrs[i] = &cells[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		fmt.Fprintln(&plan, cells[len(cells)-1])
	}
	require.NoError(t, rows.Err())
	return plan.String()
}

func TestExplain_StaleQueryUsesPartialIndex(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			for i := range 300 {
				e, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1"})
				if err != nil {
					return err
				}
				if i%10 != 0 {
					if err := tx.UpdateExecutionStatus(ctx, e.ExecutionID, models.ExecutionCompleted); err != nil {
						return err
					}
				}
			}
			return nil
		}))
		require.NoError(t, s.DB().Exec("ANALYZE").Error)

		c := captureQueries(t, s)
		_, err := s.ListStaleExecutions(ctx, 5*time.Minute, nil)
		require.NoError(t, err)
		require.Len(t, c.sql, 1)
		plan := explain(t, s, c.sql[0], c.vars[0])
		t.Logf("%s plan of %s:\n%s", s.Dialect(), c.sql[0], plan)
		require.Contains(t, plan, "idx_workflow_executions_stale")
	})
}

// TestExplain_ClaimReadsOnlyWhatIsDue: with many executions parked until
// later, the claim's due pick is a range on the stale index that ends at now.
func TestExplain_ClaimReadsOnlyWhatIsDue(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		later := time.Now().Add(time.Hour)
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			for range 300 {
				e, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1"})
				if err != nil {
					return err
				}
				if err := tx.ParkExecution(ctx, repository.ParkParams{ExecutionID: e.ExecutionID, NodeID: "n1", Until: later, Signal: "go"}); err != nil {
					return err
				}
			}
			return nil
		}))
		require.NoError(t, s.DB().Exec("ANALYZE").Error)

		// One execution is due, so that the claim runs after its probe.
		_, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1"})
		require.NoError(t, err)
		c := captureQueries(t, s)
		claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 10})
		require.NoError(t, err)
		require.Len(t, claimed, 1)
		require.Len(t, c.sql, 2, "the probe, then the claim")
		for i, stmt := range c.sql {
			plan := explain(t, s, stmt, c.vars[i])
			t.Logf("%s plan of %s:\n%s", s.Dialect(), stmt, plan)
			require.Contains(t, plan, "idx_workflow_executions_stale")
			// The signalled pick starts from the pending signals, not from
			// the 300 parked executions.
			for _, scan := range []string{"SCAN e\n", "SCAN w\n", "SCAN workflow_executions\n", "idx_workflow_executions_node_id", "Seq Scan on workflow_executions"} {
				require.NotContains(t, plan, scan)
			}
		}
	})
}
