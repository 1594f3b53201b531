package repository

import (
	"context"
	"database/sql"
	"errors"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/plexspaces/workflow/models"
)

// Group commit on PostgreSQL. Concurrent connections already share WAL
// flushes there; what a creation, a step start or an execution's end costs
// is its statement: planning-free (pgx caches it) but still an executor
// start, several CTEs, a round trip and a commit each. So the step starts
// that queue while one is written are written as one statement over arrays
// (unnest), and so are the creations and the ends, the three statements side
// by side: the same writes for every row as alone, each fenced by its own
// row's owner, in one commit. One whose owner check fails gets no
// row back and ErrConcurrentUpdate, as alone. If the server refuses a
// statement (a step attempt started twice is a unique violation), nothing of
// it was written, and each of its checkpoints is written alone, for the
// outcome it would have had; if the statement's outcome is unknown (the
// connection was lost), each caller gets that error, as alone.

// lockedOwned is the CTE "locked" of the grouped statements: the input's
// executions that their node still owns live, locked in execution_id order
// (as the heartbeat does: two statements that each update several
// executions of one node would otherwise lock them in whatever order their
// scans meet them, and could deadlock, which PostgreSQL detects only after
// deadlock_timeout, 1 s). A row a takeover changed while this waited for its
// lock is re-checked as committed and left out: every write of the
// statement goes only to executions in "locked".
const lockedOwned = `locked AS MATERIALIZED (SELECT w.execution_id FROM workflow_executions w ` +
	`JOIN input i ON i.execution_id = w.execution_id WHERE (w.node_id = i.node_id AND w.status IN ('PENDING', 'RUNNING')) IS TRUE ` +
	`ORDER BY w.execution_id FOR UPDATE OF w)`

// startStepsSQL is StartStep for many executions (at most one start each).
// It locks the owned ones first (lockedOwned). The arguments are, per
// start, the execution, node, step, new step execution id, input and
// attempt, then the previous step's execution id, status, output and error
// (NULL where there is none).
const startStepsSQL = `WITH input AS MATERIALIZED (SELECT * FROM unnest(` +
	`$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::text[], $10::text[]) ` +
	`AS i(execution_id, node_id, step_id, step_execution_id, input, attempt, prev_id, prev_status, prev_output, prev_error)), ` +
	lockedOwned + `, ` +
	`done AS (UPDATE step_executions s SET status = i.prev_status, output = i.prev_output::jsonb, error = i.prev_error, completed_at = now() ` +
	`FROM input i WHERE i.prev_id IS NOT NULL AND s.step_execution_id = i.prev_id AND s.execution_id = i.execution_id ` +
	`AND i.execution_id IN (SELECT execution_id FROM locked) RETURNING s.execution_id), ` +
	`owner AS (UPDATE workflow_executions w SET current_step_id = i.step_id, status = 'RUNNING', started_at = COALESCE(w.started_at, now()) ` +
	`FROM input i WHERE w.execution_id = i.execution_id AND w.execution_id IN (SELECT execution_id FROM locked) ` +
	`AND (w.node_id = i.node_id AND w.status IN ('PENDING', 'RUNNING')) IS TRUE ` +
	`AND (i.prev_id IS NULL OR EXISTS (SELECT 1 FROM done d WHERE d.execution_id = i.execution_id)) RETURNING w.execution_id) ` +
	`INSERT INTO step_executions (step_execution_id, execution_id, step_id, status, input, attempt, started_at) ` +
	`SELECT i.step_execution_id, i.execution_id, i.step_id, 'RUNNING', i.input::jsonb, i.attempt, now() ` +
	`FROM input i JOIN owner o ON o.execution_id = i.execution_id` + returningStep

// finishExecutionsSQL is FinishExecution for many executions (one end each),
// locking the owned ones first as startStepsSQL does. The arrays are,
// per end, the execution, node, status, output and error, then the last
// step's outcome as in startStepsSQL.
const finishExecutionsSQL = `WITH input AS MATERIALIZED (SELECT * FROM unnest(` +
	`$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) ` +
	`AS i(execution_id, node_id, status, output, error, prev_id, prev_status, prev_output, prev_error)), ` +
	lockedOwned + `, ` +
	`done AS (UPDATE step_executions s SET status = i.prev_status, output = i.prev_output::jsonb, error = i.prev_error, completed_at = now() ` +
	`FROM input i WHERE i.prev_id IS NOT NULL AND s.step_execution_id = i.prev_id AND s.execution_id = i.execution_id ` +
	`AND i.execution_id IN (SELECT execution_id FROM locked) RETURNING s.execution_id) ` +
	`UPDATE workflow_executions w SET status = i.status, output = i.output::jsonb, error = i.error, completed_at = now(), ` +
	`updated_at = now(), started_at = COALESCE(w.started_at, now()), version = w.version + 1 ` +
	`FROM input i WHERE w.execution_id = i.execution_id AND w.execution_id IN (SELECT execution_id FROM locked) ` +
	`AND (w.node_id = i.node_id AND w.status IN ('PENDING', 'RUNNING')) IS TRUE ` +
	`AND (i.prev_id IS NULL OR EXISTS (SELECT 1 FROM done d WHERE d.execution_id = i.execution_id)) ` +
	`RETURNING w.execution_id, w.definition_id, w.definition_version, w.status, w.current_step_id, w.input, w.output, ` +
	`w.error, w.node_id, w.version, w.last_heartbeat, w.metadata, w.created_at, w.updated_at, w.started_at, w.completed_at, w.wait_signal`

// createExecutionsSQL is CreateExecution for many executions without labels
// or a definition to store: the arrays are, per execution, its id,
// definition id and version, status, input, owner, metadata and whether it
// starts RUNNING. An id that exists, or whose definition does not, inserts
// nothing and comes back missing; it is then created alone, which tells
// which.
const createExecutionsSQL = `INSERT INTO workflow_executions ` +
	`(execution_id, definition_id, definition_version, status, input, node_id, metadata, version, last_heartbeat, created_at, updated_at, started_at) ` +
	`SELECT i.execution_id, i.definition_id, i.definition_version, i.status, i.input::jsonb, i.node_id, i.metadata::jsonb, 1, now(), now(), now(), ` +
	`CASE WHEN i.running THEN now() END FROM unnest(` +
	`$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[]) ` +
	`AS i(execution_id, definition_id, definition_version, status, input, node_id, metadata, running) ` +
	`WHERE EXISTS (SELECT 1 FROM workflow_definitions d WHERE d.id = i.definition_id AND d.version = i.definition_version) ` +
	`ORDER BY i.execution_id ON CONFLICT (execution_id) DO NOTHING` + returningExecution

// executionCreate is a CreateExecution waiting in a group.
type executionCreate struct {
	executionID, definitionID, definitionVersion string
	status                                       models.ExecutionStatus
	input, metadata                              models.JSON
	nodeID                                       *string
	running                                      bool
	created                                      *models.WorkflowExecution
}

// executionEnd is a FinishExecution waiting in a group.
type executionEnd struct {
	executionID, nodeID string
	status              models.ExecutionStatus
	output              models.JSON
	err                 *string
	previous            *stepOutcome
	ended               *models.WorkflowExecution
}

// stepStart is a StartStep waiting in a group: its validated input, and
// where its row goes.
type stepStart struct {
	executionID, nodeID, stepID string
	input                       models.JSON
	attempt                     int
	previous                    *stepOutcome
	step                        *models.StepExecution
}

// onPgx reports whether pool's driver is pgx: only then does a storage
// write checkpoints together (the arrays are its encoding; a test's sqlmock
// gets them one by one) and run its hot statements on pgx itself
// (queryPgx).
func onPgx(pool *sql.DB) bool {
	if pool == nil {
		return false
	}
	_, pgx := pool.Driver().(*stdlib.Driver)
	return pgx
}

// commitPostgres writes a batch: one checkpoint alone; in a larger batch,
// the creations, step starts and ends (one per execution each) as one
// statement per kind, side by side, then the rest (a second checkpoint of an
// execution, those of a statement that failed) alone, side by side too:
// they are of different executions, or an execution's row lock orders them.
func (s *Storage) commitPostgres(batch []*checkpoint) {
	var creates, starts, ends, alone []*checkpoint
	seen := make(map[string]bool, len(batch))
	for _, c := range batch {
		switch {
		case c.ctx.Err() != nil:
			c.err = context.Cause(c.ctx) // its caller gave up before it was begun: not written
		case len(batch) == 1:
			alone = append(alone, c)
		case c.start != nil && !seen[c.start.executionID]:
			seen[c.start.executionID] = true
			starts = append(starts, c)
		case c.end != nil && !seen[c.end.executionID]:
			seen[c.end.executionID] = true
			ends = append(ends, c)
		case c.create != nil && !seen[c.create.executionID]:
			seen[c.create.executionID] = true
			creates = append(creates, c)
		default:
			alone = append(alone, c)
		}
	}
	// The kinds touch different executions' rows in different ways; their
	// statements run side by side, on connections of their own.
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []*checkpoint // of groups whose statement failed, under mu
	for _, g := range []struct {
		group []*checkpoint
		write func([]*checkpoint) error
	}{{creates, s.createExecutions}, {starts, s.startSteps}, {ends, s.finishExecutions}} {
		// Even one of a kind goes as its statement over arrays: beside the
		// others, not after them.
		if len(g.group) > 1 {
			s.group.shared.Add(1)
		}
		if len(g.group) > 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := g.write(g.group)
				switch {
				case refusedStatement(err):
					// The server refused the statement: nothing of it was
					// written, and each is written alone for its outcome.
					mu.Lock()
					failed = append(failed, g.group...)
					mu.Unlock()
				case err != nil:
					// A lost connection, a timeout: the statement may have
					// committed. Each caller gets the error, as for a
					// statement of its own; written again alone, a start
					// that was written would report ErrAlreadyExists.
					for _, c := range g.group {
						c.err = err
					}
				}
			}()
		}
	}
	wg.Wait()
	alone = append(alone, failed...)
	if len(alone) == 1 {
		s.writeAlone(alone[0]) // a lone workflow's checkpoint: no goroutine to wait for
		return
	}
	for _, c := range alone {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.writeAlone(c)
		}()
	}
	wg.Wait()
}

// writeAlone writes c by its own statement. Once begun, the statement no
// longer ends with its caller's context, as a grouped one does not: the
// caller gets its true outcome. pgx's default on a cancelled context is to
// close the connection without cancelling the statement, which the server
// then runs to its commit (one waiting for a row lock, once the lock is
// free) while its caller was told it failed.
func (s *Storage) writeAlone(c *checkpoint) {
	if c.ctx.Err() != nil {
		c.err = context.Cause(c.ctx) // its caller gave up before it was begun: not written
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), groupCommitTimeout)
	defer cancel()
	c.err = s.run(ctx, c.op)
}

// refusedStatement reports whether err is the server's refusal of one
// statement (severity ERROR: it rolled back, as a statement of its own
// does), not the loss of the session (FATAL, a broken connection), after
// which the statement may or may not have committed.
func refusedStatement(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	severity := pgErr.SeverityUnlocalized
	if severity == "" {
		severity = pgErr.Severity
	}
	return severity == "ERROR"
}

// startSteps writes group's step starts in one statement; a PostgreSQL
// error means none was written, another error that it is not known.
func (s *Storage) startSteps(group []*checkpoint) error {
	n := len(group)
	ids, nodes, steps, stepIDs, inputs := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]*string, n)
	attempts := make([]int32, n)
	prev := newOutcomeArrays(n)
	for i, c := range group {
		st := c.start
		ids[i], nodes[i], steps[i], stepIDs[i], attempts[i] = st.executionID, st.nodeID, st.stepID, newID(), int32(st.attempt)
		inputs[i] = jsonText(st.input)
		prev.set(i, st.previous)
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupCommitTimeout)
	defer cancel()
	written, err := queryRows(ctx, s.db.Statement.ConnPool, startStepsSQL,
		[]any{ids, nodes, steps, stepIDs, inputs, attempts, prev.ids, prev.statuses, prev.outputs, prev.errors}, scanStep)
	if err != nil {
		return err
	}
	s.dialect.scanned(&written)
	missing := answer(group, written, func(st *models.StepExecution) string { return st.ExecutionID },
		func(c *checkpoint) string { return c.start.executionID },
		func(c *checkpoint, st *models.StepExecution) { *c.start.step = *st })
	for _, c := range missing {
		c.err = ErrConcurrentUpdate // its owner check failed: nothing of it written
	}
	return nil
}

// outcomeArrays are the previous step outcomes of a grouped statement, one
// element per checkpoint, NULL where there is none.
type outcomeArrays struct {
	ids, statuses, outputs, errors []*string
}

func newOutcomeArrays(n int) outcomeArrays {
	return outcomeArrays{make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)}
}

func (a outcomeArrays) set(i int, p *stepOutcome) {
	if p != nil {
		status := string(p.status)
		a.ids[i], a.statuses[i], a.outputs[i], a.errors[i] = &p.id, &status, jsonText(p.output), p.err
	}
}

// answer hands each written row to the checkpoint of its execution and
// returns the checkpoints that got none.
func answer[Row any](group []*checkpoint, written []Row, rowID func(*Row) string, id func(*checkpoint) string,
	put func(*checkpoint, *Row)) []*checkpoint {
	byExecution := make(map[string]*checkpoint, len(group))
	for _, c := range group {
		byExecution[id(c)] = c
	}
	for i := range written {
		if c := byExecution[rowID(&written[i])]; c != nil {
			put(c, &written[i])
			delete(byExecution, rowID(&written[i]))
		}
	}
	missing := make([]*checkpoint, 0, len(byExecution))
	for _, c := range byExecution {
		missing = append(missing, c)
	}
	return missing
}

// createExecutions writes group's creations in one statement (errors as for
// startSteps). One that comes back missing is created alone after it (an id
// that exists, a definition that does not).
func (s *Storage) createExecutions(group []*checkpoint) error {
	n := len(group)
	ids, defIDs, defVersions, statuses := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	inputs, nodes, metadata, running := make([]*string, n), make([]*string, n), make([]*string, n), make([]bool, n)
	for i, c := range group {
		x := c.create
		ids[i], defIDs[i], defVersions[i], statuses[i] = x.executionID, x.definitionID, x.definitionVersion, string(x.status)
		inputs[i], nodes[i], metadata[i], running[i] = jsonText(x.input), x.nodeID, jsonText(x.metadata), x.running
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupCommitTimeout)
	defer cancel()
	written, err := s.queryExecutions(ctx, createExecutionsSQL, ids, defIDs, defVersions, statuses, inputs, nodes, metadata, running)
	if err != nil {
		return err
	}
	missing := answer(group, written, executionIDOf, func(c *checkpoint) string { return c.create.executionID },
		func(c *checkpoint, x *models.WorkflowExecution) { *c.create.created = *x })
	for _, c := range missing {
		c.err = s.run(c.ctx, c.op) // alone, for its own error
	}
	return nil
}

func executionIDOf(x *models.WorkflowExecution) string { return x.ExecutionID }

// queryExecutions runs a statement that returns execution rows (the columns
// of returningExecution) and reads them.
func (s *Storage) queryExecutions(ctx context.Context, query string, args ...any) ([]models.WorkflowExecution, error) {
	out, err := queryRows(ctx, s.db.Statement.ConnPool, query, args, scanExecution)
	if err != nil {
		return nil, err
	}
	s.dialect.scanned(&out)
	return out, nil
}

// finishExecutions writes group's ends in one statement; errors as for
// startSteps.
func (s *Storage) finishExecutions(group []*checkpoint) error {
	n := len(group)
	ids, nodes, statuses, outputs, errs := make([]string, n), make([]string, n), make([]string, n), make([]*string, n), make([]*string, n)
	prev := newOutcomeArrays(n)
	for i, c := range group {
		end := c.end
		ids[i], nodes[i], statuses[i], outputs[i], errs[i] = end.executionID, end.nodeID, string(end.status), jsonText(end.output), end.err
		prev.set(i, end.previous)
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupCommitTimeout)
	defer cancel()
	written, err := s.queryExecutions(ctx, finishExecutionsSQL,
		ids, nodes, statuses, outputs, errs, prev.ids, prev.statuses, prev.outputs, prev.errors)
	if err != nil {
		return err
	}
	missing := answer(group, written, executionIDOf, func(c *checkpoint) string { return c.end.executionID },
		func(c *checkpoint, x *models.WorkflowExecution) { *c.end.ended = *x })
	for _, c := range missing {
		c.err = ErrConcurrentUpdate // its owner check failed: nothing of it written
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
