package repository

import (
	"context"
	"database/sql"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/plexspaces/workflow/models"
)

// Group commit on PostgreSQL. Concurrent connections already share WAL
// flushes there; what a step start costs is its statement: planning-free
// (pgx caches it) but still an executor start, three CTEs, a round trip and
// a commit each. So the step starts that queue while one is written are
// written as one statement over arrays (unnest): the same three writes for
// every row, each fenced by its own row's owner, in one commit. A start whose
// owner check fails gets no row back and ErrConcurrentUpdate, as alone. If the
// statement fails as a whole (a step attempt started twice is a unique
// violation), nothing of it was written, and each start is written alone, to
// get the outcome it would have had.

// startStepsSQL is StartStep for many executions (at most one start each).
// It locks their rows first, in execution_id order, as the heartbeat does:
// two statements that each update several executions of one node would
// otherwise lock them in whatever order their scans meet them, and could
// deadlock (which PostgreSQL detects only after deadlock_timeout, 1 s).
// The arguments are, per start, the execution, node, step, new step execution
// id, input and attempt, then the previous step's execution id, status,
// output and error (NULL where there is none).
const startStepsSQL = `WITH input AS MATERIALIZED (SELECT * FROM unnest(` +
	`$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::text[], $10::text[]) ` +
	`AS i(execution_id, node_id, step_id, step_execution_id, input, attempt, prev_id, prev_status, prev_output, prev_error)), ` +
	`locked AS MATERIALIZED (SELECT execution_id FROM workflow_executions WHERE execution_id IN (SELECT execution_id FROM input) ` +
	`ORDER BY execution_id FOR UPDATE), ` +
	`done AS (UPDATE step_executions s SET status = i.prev_status, output = i.prev_output::jsonb, error = i.prev_error, completed_at = now() ` +
	`FROM input i WHERE i.prev_id IS NOT NULL AND s.step_execution_id = i.prev_id AND s.execution_id = i.execution_id ` +
	`AND EXISTS (SELECT 1 FROM workflow_executions w WHERE w.execution_id = i.execution_id AND w.node_id = i.node_id ` +
	`AND w.status IN ('PENDING', 'RUNNING')) RETURNING s.execution_id), ` +
	`owner AS (UPDATE workflow_executions w SET current_step_id = i.step_id, status = 'RUNNING', started_at = COALESCE(w.started_at, now()) ` +
	`FROM input i WHERE w.execution_id = i.execution_id AND w.execution_id IN (SELECT execution_id FROM locked) ` +
	`AND w.node_id = i.node_id AND w.status IN ('PENDING', 'RUNNING') ` +
	`AND (i.prev_id IS NULL OR EXISTS (SELECT 1 FROM done d WHERE d.execution_id = i.execution_id)) RETURNING w.execution_id) ` +
	`INSERT INTO step_executions (step_execution_id, execution_id, step_id, status, input, attempt, started_at) ` +
	`SELECT i.step_execution_id, i.execution_id, i.step_id, 'RUNNING', i.input::jsonb, i.attempt, now() ` +
	`FROM input i JOIN owner o ON o.execution_id = i.execution_id` + returningStep

// stepStart is a StartStep waiting in a group: its validated input, and
// where its row goes.
type stepStart struct {
	executionID, nodeID, stepID string
	input                       models.JSON
	attempt                     int
	previous                    *stepOutcome
	step                        *models.StepExecution
}

// groupsOnPostgres reports whether s can write step starts together: only
// through pgx (the arrays are its encoding; a test's sqlmock writes them one
// by one).
func groupsOnPostgres(pool *sql.DB) bool {
	if pool == nil {
		return false
	}
	_, pgx := pool.Driver().(*stdlib.Driver)
	return pgx
}

// commitPostgres writes a batch: one checkpoint alone; several step starts
// (one per execution) as one statement, the rest alone after it.
func (s *Storage) commitPostgres(batch []*checkpoint) {
	var group, alone []*checkpoint
	seen := make(map[string]bool, len(batch))
	for _, c := range batch {
		if c.start != nil && !seen[c.start.executionID] && len(batch) > 1 {
			seen[c.start.executionID] = true
			group = append(group, c)
		} else {
			alone = append(alone, c)
		}
	}
	if len(group) == 1 {
		alone, group = append(alone, group...), nil
	}
	if len(group) > 0 {
		s.group.shared.Add(1)
		if err := s.startSteps(group); err != nil {
			alone = append(alone, group...) // nothing was written: each alone
		}
	}
	for _, c := range alone {
		if c.ctx.Err() != nil {
			c.err = context.Cause(c.ctx)
			continue
		}
		c.err = s.run(c.ctx, c.op)
	}
}

// startSteps writes group's step starts in one statement; an error means
// none was written.
func (s *Storage) startSteps(group []*checkpoint) error {
	n := len(group)
	ids, nodes, steps, stepIDs, inputs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]*string, n)
	attempts := make([]int32, n)
	prevIDs, prevStatus, prevOutput, prevError := make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	byExecution := make(map[string]*checkpoint, n)
	for i, c := range group {
		st := c.start
		ids[i], nodes[i], steps[i], stepIDs[i], attempts[i] = st.executionID, st.nodeID, st.stepID, newID(), int32(st.attempt)
		inputs[i] = jsonText(st.input)
		if p := st.previous; p != nil {
			status := string(p.status)
			prevIDs[i], prevStatus[i], prevOutput[i], prevError[i] = &p.id, &status, jsonText(p.output), p.err
		}
		byExecution[st.executionID] = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupCommitTimeout)
	defer cancel()
	rows, err := s.db.Statement.ConnPool.QueryContext(ctx, startStepsSQL,
		ids, nodes, steps, stepIDs, inputs, attempts, prevIDs, prevStatus, prevOutput, prevError)
	if err != nil {
		return err
	}
	defer rows.Close()
	written := make([]models.StepExecution, 0, n)
	for rows.Next() {
		var st models.StepExecution
		if err := rows.Scan(&st.StepExecutionID, &st.ExecutionID, &st.StepID, &st.Status, &st.Input, &st.Output,
			&st.Error, &st.Attempt, &st.Metadata, &st.StartedAt, &st.CompletedAt); err != nil {
			return err
		}
		written = append(written, st)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.dialect.scanned(&written)
	for i := range written {
		if c := byExecution[written[i].ExecutionID]; c != nil {
			*c.start.step = written[i]
			c.start = nil // answered
		}
	}
	for _, c := range group {
		if c.start != nil {
			c.err = ErrConcurrentUpdate // its owner check failed: nothing of it written
			c.start = nil
		}
	}
	return nil
}

// jsonText is a JSON document as text for a ::jsonb array element; nil
// stays NULL.
func jsonText(doc models.JSON) *string {
	if doc == nil {
		return nil
	}
	text := string(doc)
	return &text
}
