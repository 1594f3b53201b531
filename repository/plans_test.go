package repository_test

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// TestExplain_CheckpointsReadNoHistoryBeforeStatistics: on tables that were
// never analyzed (a new database, every connection until autovacuum's
// first pass), the plans a driver caches for the checkpoint statements find
// the execution by its primary key, and the sweep's probe does not read a
// definition's executions. A plan PostgreSQL cached this way used to go
// through the node_id index and filter out every execution the node had
// ever run, at every checkpoint. On PostgreSQL the statements are explained
// as the generic plans of prepared statements, as pgx's cache runs them
// after their fifth execution; on SQLite, as its planner sees them.
func TestExplain_CheckpointsReadNoHistoryBeforeStatistics(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		// History: executions the node ran and ended.
		for range 200 {
			e := create(t, s, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
			require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted}))
		}
		e := create(t, s, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
		first, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, NodeID: "n1", StepID: "a", Attempt: 1})
		require.NoError(t, err)

		c := captureQueries(t, s)
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, NodeID: "n1", StepID: "b", Attempt: 1,
			Previous: &repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: first.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: "x"}})
		require.NoError(t, err)
		_, err = s.HeartbeatNode(ctx, "n1")
		require.NoError(t, err)
		_, err = s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 10,
			Definitions: []repository.DefinitionKey{{ID: "order", Version: "v1"}}})
		require.NoError(t, err)
		require.NotEmpty(t, c.sql)

		for i, stmt := range c.sql {
			if !strings.Contains(stmt, "workflow_executions") {
				continue
			}
			plan := genericPlan(t, s, stmt, c.vars[i])
			t.Logf("%s plan of %s:\n%s", s.Dialect(), stmt, plan)
			for _, history := range []string{"idx_workflow_executions_node_id", "idx_workflow_executions_definition",
				"Seq Scan on workflow_executions", "SCAN workflow_executions"} {
				require.NotContains(t, plan, history, stmt)
			}
			if strings.Contains(stmt, "current_step_id = ") {
				// A checkpoint: its execution by primary key, not among the
				// node's live ones either.
				require.NotContains(t, plan, "idx_workflow_executions_owned", stmt)
				require.NotContains(t, plan, "idx_workflow_executions_status", stmt)
			}
		}
	})
}

// genericPlan explains query with vars as a plan cached before the tables
// have statistics would run it: on PostgreSQL the generic plan of a prepared
// statement, on SQLite the plain query plan.
func genericPlan(t *testing.T, s *repository.Storage, query string, vars []any) string {
	t.Helper()
	if s.Dialect() != "postgres" {
		return explain(t, s, query, vars)
	}
	ctx := context.Background()
	pool, err := s.DB().DB()
	require.NoError(t, err)
	conn, err := pool.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	// A prepared statement outlives the transaction: gone before the
	// connection goes back to the pool.
	defer func() { _, _ = conn.ExecContext(ctx, "DEALLOCATE plan_probe") }()
	tx, err := conn.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	for _, setting := range []string{"SET LOCAL plan_cache_mode = force_generic_plan", "PREPARE plan_probe AS " + query} {
		_, err = tx.ExecContext(ctx, setting)
		require.NoError(t, err, setting)
	}
	literals := make([]string, len(vars))
	for i, v := range vars {
		literals[i] = sqlLiteral(v)
	}
	explained := "EXPLAIN EXECUTE plan_probe"
	if len(literals) > 0 {
		explained += "(" + strings.Join(literals, ", ") + ")"
	}
	rows, err := tx.QueryContext(ctx, explained)
	require.NoError(t, err)
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		fmt.Fprintln(&plan, line)
	}
	require.NoError(t, rows.Err())
	return plan.String()
}

// sqlLiteral writes v as a PostgreSQL literal, for EXECUTE's arguments.
func sqlLiteral(v any) string {
	if valuer, ok := v.(driver.Valuer); ok {
		value, err := valuer.Value()
		if err != nil {
			panic(err)
		}
		v = value
	}
	switch x := v.(type) {
	case nil:
		return "NULL"
	case bool:
		return fmt.Sprint(x)
	case int, int32, int64, uint, uint32, uint64:
		return fmt.Sprint(x)
	case time.Time:
		return "'" + x.Format(time.RFC3339Nano) + "'"
	case *string:
		if x == nil {
			return "NULL"
		}
		return sqlLiteral(*x)
	case []byte:
		return sqlLiteral(string(x))
	case string:
		return "'" + strings.ReplaceAll(x, "'", "''") + "'"
	case []string:
		quoted := make([]string, len(x))
		for i, s := range x {
			quoted[i] = sqlLiteral(s)
		}
		return "ARRAY[" + strings.Join(quoted, ", ") + "]"
	default:
		return "'" + strings.ReplaceAll(fmt.Sprint(x), "'", "''") + "'"
	}
}
