package repository

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/plugins/optimisticlock"
)

// This file holds the writes a running node makes: a heartbeat for all it
// owns, claims of work nobody runs, and checkpoints that commit only while the
// node still owns a live execution (fencing).

// ClaimParams is the input of ClaimExecutions.
type ClaimParams struct {
	// NodeID becomes the owner of the claimed executions.
	NodeID string
	// StaleThreshold: a live execution whose heartbeat is older than this, by the
	// database's clock, is claimable.
	StaleThreshold time.Duration
	// Limit bounds one claim (a sweep claims in batches).
	Limit int
	// Definitions, if not empty, restricts the claim to executions of these
	// definitions: a node claims only work it can run.
	Definitions []DefinitionKey
}

// DefinitionKey names one version of a workflow definition.
type DefinitionKey struct {
	ID, Version string
}

// StartStepParams is the input of StartStep.
type StartStepParams struct {
	ExecutionID, StepID, NodeID string
	Attempt                     int
	Input                       any
	// Previous, if set, is how an earlier step of the same execution ended,
	// written in the same statement: one commit for both checkpoints.
	Previous *FinishStepParams
}

// FinishStepParams is the input of FinishStep.
type FinishStepParams struct {
	ExecutionID, StepExecutionID, NodeID string
	Status                               models.StepStatus
	Output                               any
	Error                                string
}

// FinishExecutionParams is the input of FinishExecution.
type FinishExecutionParams struct {
	ExecutionID, NodeID string
	// Status must be terminal.
	Status models.ExecutionStatus
	Output any
	Error  string
	// Previous, if set, is how the execution's last step ended, written
	// with the end: one commit for both.
	Previous *FinishStepParams
	// Finished, if set, receives the execution as the write left it
	// (without labels), so that the caller need not read it back.
	Finished *models.WorkflowExecution
}

// ReceiveSignalParams is the input of ReceiveSignal.
type ReceiveSignalParams struct {
	ExecutionID, NodeID, SignalName string
	// StepID is the journal entry the signal is recorded as.
	StepID string
}

// OwnerRepository is what a node running executions needs: every write is
// conditional on the node owning a live execution, so a node that was presumed
// dead cannot overwrite its successor's progress. A write that finds the node
// no longer the owner, or the execution no longer live, changes nothing and
// returns ErrConcurrentUpdate.
type OwnerRepository interface {
	// HeartbeatNode refreshes the heartbeat of every live execution nodeID owns,
	// in one statement, and returns their ids.
	HeartbeatNode(ctx context.Context, nodeID string) ([]string, error)
	// HeartbeatExecutions refreshes the heartbeat of those of executionIDs that
	// nodeID owns and that are live, in one statement, and returns their ids.
	// A node beats only what it runs, so that what it gave up on goes stale
	// and any node may take it over.
	HeartbeatExecutions(ctx context.Context, nodeID string, executionIDs []string) ([]string, error)
	// ClaimExecutions makes p.NodeID the owner of up to p.Limit live executions
	// that are unowned or stale, oldest heartbeat first, each with a version bump
	// in one compare-and-set statement, and returns them as claimed.
	// Concurrent claimers never claim the same execution.
	ClaimExecutions(ctx context.Context, p ClaimParams) ([]models.WorkflowExecution, error)
	// StartStep records that an attempt of a step started and makes it the
	// execution's current step.
	StartStep(ctx context.Context, p StartStepParams) (*models.StepExecution, error)
	// FinishStep records how an attempt ended.
	FinishStep(ctx context.Context, p FinishStepParams) error
	// ReceiveSignal consumes the oldest signal named p.SignalName and records it
	// as the COMPLETED step p.StepID whose output is the payload, atomically:
	// a signal is never consumed without being journaled, nor journaled twice.
	ReceiveSignal(ctx context.Context, p ReceiveSignalParams) (*models.StepExecution, bool, error)
	// BeatNode records that nodeID is alive, in workflow_nodes; engines beat
	// at every heartbeat, idle ones too, so that sweeps can share work.
	BeatNode(ctx context.Context, nodeID string) error
	// PruneNodes deletes the workflow_nodes rows of nodes that have not
	// beaten for a week, and returns how many; a node starting up prunes,
	// so the table stays as small as the nodes of the last week.
	PruneNodes(ctx context.Context) (int64, error)
	// Backlog counts the executions a claim with p could take now (unowned
	// and due, or stale; up to 100 times p.Limit, past which every share is
	// the whole limit) and the nodes that beat within p.StaleThreshold, for
	// a sweep to claim its fair share.
	Backlog(ctx context.Context, p ClaimParams) (claimable, liveNodes int, err error)
	// ParkExecution hands a live execution nodeID owns back to the database
	// while it waits, with a version bump: it becomes unowned, due at p.Until
	// (never by itself when zero) or at once when a signal named p.Signal is
	// stored, and any node's sweep claims it then. It holds no node's slot
	// meanwhile.
	ParkExecution(ctx context.Context, p ParkParams) error
	// ReleaseExecution gives up ownership of a live execution nodeID owns: it
	// becomes unowned (with a version bump), first in line for any node's
	// next sweep, ahead of work that never started. A node that stops
	// gracefully releases what it ran.
	ReleaseExecution(ctx context.Context, executionID, nodeID string) error
	// FinishExecution moves the execution to a terminal status with its output
	// or error.
	FinishExecution(ctx context.Context, p FinishExecutionParams) error
}

// ownedLive is the fencing condition of every OwnerRepository write, as a
// subquery-free predicate on workflow_executions. Only the primary key may
// find the row: the owner and status are tested as one "IS TRUE" term, which
// no index can serve. Written plainly, a plan PostgreSQL cached while the
// table had no statistics (every new connection, until autovacuum analyzes
// it) found the row through the index on node_id and filtered out every
// execution the node had ever run (since migration 012, every one it runs),
// on every checkpoint. TestExplain_CheckpointsReadNoHistoryBeforeStatistics.
const ownedLive = "execution_id = ? AND (node_id = ? AND " + liveStatuses + ") IS TRUE"

// liveStatuses are the statuses of an execution that has not ended.
const liveStatuses = "status IN ('PENDING', 'RUNNING')"

// HeartbeatNode implements OwnerRepository.
func (s *Storage) HeartbeatNode(ctx context.Context, nodeID string) ([]string, error) {
	if err := checkID("node id", nodeID); err != nil {
		return nil, err
	}
	var ids []string
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Raw(`UPDATE workflow_executions SET last_heartbeat = ? `+
			`WHERE execution_id IN (SELECT execution_id FROM workflow_executions `+
			`WHERE node_id = ? AND status IN ('PENDING', 'RUNNING') ORDER BY execution_id`+s.dialect.orderedLock()+`) `+
			`AND node_id = ? AND status IN ('PENDING', 'RUNNING') RETURNING execution_id`,
			s.dialect.now(), nodeID, nodeID).Scan(&ids).Error
	})
	if err != nil {
		return nil, fmt.Errorf("heartbeat of node %s: %w", nodeID, err)
	}
	return ids, nil
}

// HeartbeatExecutions implements OwnerRepository.
func (s *Storage) HeartbeatExecutions(ctx context.Context, nodeID string, executionIDs []string) ([]string, error) {
	if err := checkID("node id", nodeID); err != nil {
		return nil, err
	}
	for _, id := range executionIDs {
		if err := checkID("execution id", id); err != nil {
			return nil, err
		}
	}
	if len(executionIDs) == 0 {
		return nil, nil
	}
	var ids []string
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Raw(`UPDATE workflow_executions SET last_heartbeat = ? `+
			`WHERE execution_id IN (SELECT execution_id FROM workflow_executions `+
			`WHERE node_id = ? AND status IN ('PENDING', 'RUNNING') AND execution_id IN ? ORDER BY execution_id`+s.dialect.orderedLock()+`) `+
			`AND node_id = ? AND status IN ('PENDING', 'RUNNING') RETURNING execution_id`,
			s.dialect.now(), nodeID, executionIDs, nodeID).Scan(&ids).Error
	})
	if err != nil {
		return nil, fmt.Errorf("heartbeat of %d executions of node %s: %w", len(executionIDs), nodeID, err)
	}
	return ids, nil
}

// ClaimExecutions implements OwnerRepository.
func (s *Storage) ClaimExecutions(ctx context.Context, p ClaimParams) ([]models.WorkflowExecution, error) {
	if err := checkID("node id", p.NodeID); err != nil {
		return nil, err
	}
	if err := checkThreshold(p.StaleThreshold); err != nil {
		return nil, err
	}
	if p.Limit < 1 || p.Limit > ListLimitMax {
		return nil, fmt.Errorf("claim limit %d (want 1 to %d): %w", p.Limit, ListLimitMax, ErrInvalidArgument)
	}
	now := s.dialect.now()
	cutoff := s.dialect.before(p.StaleThreshold)
	defs, defArgs, err := definitionFilter(p.Definitions)
	if err != nil {
		return nil, err
	}
	// Two picks, each in a materialized CTE (as a subquery of the UPDATE,
	// PostgreSQL may run a pick again for each row it updates, and claim far
	// more than the limit); the dialect's claim lock makes concurrent claimers
	// skip each other's rows:
	//   - due: live executions whose last_heartbeat has passed, unowned (new,
	//     handed back, or parked until now) or stale. "live_heartbeat <= now"
	//     bounds the index range, so executions parked until later are
	//     never read;
	//   - signalled: parked executions that a stored signal they wait for
	//     makes due, found from the pending signals.
	// The UPDATE re-checks what makes a row claimable, so one that changed
	// in between is not taken. "version = ?" takes the plugin's bump.
	// Most sweeps find nothing: a plain existence check, cheap to plan and
	// run, comes first, and the claim, the costliest statement to plan
	// (0.8 ms on PostgreSQL), runs only when it may take something. A row
	// that becomes claimable just after the check waits for the next sweep,
	// as it would have after a claim run a moment earlier.
	var anything bool
	probe := `SELECT EXISTS (SELECT 1 FROM workflow_executions WHERE ` + liveStatuses +
		` AND live_heartbeat <= ? AND (node_id IS NULL OR live_heartbeat < ?)` + defs + `) OR EXISTS (` +
		s.dialect.signalledProbe(liveStatuses+defs) + `)`
	probeArgs := append(append([]any{now, cutoff}, defArgs...), defArgs...)
	if err := s.run(ctx, func(db *gorm.DB) error { return db.Raw(probe, probeArgs...).Scan(&anything).Error }); err != nil {
		return nil, fmt.Errorf("looking for executions to claim for %s: %w", p.NodeID, err)
	}
	if !anything {
		return nil, nil
	}
	lock := s.dialect.claimLock()
	query := `WITH due AS MATERIALIZED (SELECT execution_id FROM workflow_executions WHERE ` + liveStatuses +
		` AND live_heartbeat <= ? AND (node_id IS NULL OR live_heartbeat < ?)` + defs +
		` ORDER BY live_heartbeat, execution_id LIMIT ?` + lock + `), ` +
		`signalled AS MATERIALIZED (` + s.dialect.signalledPick(liveStatuses+defs) + `), ` +
		`picked AS MATERIALIZED (SELECT execution_id FROM due UNION SELECT execution_id FROM signalled LIMIT ?) ` +
		`UPDATE workflow_executions SET node_id = ?, version = ?, last_heartbeat = ?, wait_signal = NULL, updated_at = ? ` +
		`WHERE execution_id IN (SELECT execution_id FROM picked) AND ` + liveStatuses + ` AND (node_id IS NULL OR live_heartbeat < ?)` +
		returningExecution
	args := []any{now, cutoff}
	args = append(args, defArgs...)
	args = append(args, p.Limit)
	args = append(args, defArgs...)
	args = append(args, p.Limit, p.Limit, p.NodeID, optimisticlock.Bump("version"), now, now, cutoff)
	var claimed []models.WorkflowExecution
	err = s.run(ctx, func(db *gorm.DB) error {
		return db.Raw(query, args...).Find(&claimed).Error
	})
	if err != nil {
		return nil, fmt.Errorf("claiming executions for %s: %w", p.NodeID, err)
	}
	s.dialect.scanned(&claimed)
	return claimed, nil
}

// startStepSQL is StartStep on PostgreSQL: the owner check and the new
// current step, then the attempt journaled, only for an owned execution.
const startStepSQL = `WITH ` + startStepCTEs + startStepInsert

// startStepAfterSQL is startStepSQL with the previous step's outcome
// (doneCTE) first; the rest goes on only if it was written.
const startStepAfterSQL = `WITH ` + doneCTE + `, ` + startStepCTEsAfterDone + startStepInsert

const (
	startStepOwner         = `owner AS (UPDATE workflow_executions SET current_step_id = ?, ` + markRunning + ` WHERE ` + ownedLive
	startStepCTEs          = startStepOwner + ` RETURNING execution_id) `
	startStepCTEsAfterDone = startStepOwner + ` AND EXISTS (SELECT 1 FROM done) RETURNING execution_id) `
	startStepInsert        = `INSERT INTO step_executions (step_execution_id, execution_id, step_id, status, input, attempt, started_at) ` +
		`SELECT ?, execution_id, ?, ?, ?::jsonb, ?::integer, ? FROM owner` + returningStep
)

// StartStep implements OwnerRepository: one statement on PostgreSQL, one
// transaction on SQLite, with p.Previous if it is set.
func (s *Storage) StartStep(ctx context.Context, p StartStepParams) (*models.StepExecution, error) {
	if err := checkID("execution id", p.ExecutionID); err != nil {
		return nil, err
	}
	if err := checkID("step id", p.StepID); err != nil {
		return nil, err
	}
	if err := checkID("node id", p.NodeID); err != nil {
		return nil, err
	}
	if p.Attempt < 1 || p.Attempt > math.MaxInt32 {
		return nil, fmt.Errorf("step attempt %d (attempts are 1 to %d): %w", p.Attempt, math.MaxInt32, ErrInvalidArgument)
	}
	in, err := encodeJSON("step input", p.Input)
	if err != nil {
		return nil, err
	}
	var previous *stepOutcome
	if p.Previous != nil {
		if p.Previous.ExecutionID != p.ExecutionID || p.Previous.NodeID != p.NodeID {
			return nil, fmt.Errorf("previous step of another execution or node: %w", ErrInvalidArgument)
		}
		if previous, err = newFinishOutcome(*p.Previous); err != nil {
			return nil, err
		}
	}
	var steps []models.StepExecution
	now := s.dialect.now()
	if s.dialect.writableCTE() {
		// One statement, one round trip, one commit: record how the previous
		// step ended, make this one current and journal its attempt.
		query := startStepSQL
		args := make([]any, 0, 18)
		if previous != nil {
			query = startStepAfterSQL
			args = append(args, previous.cteArgs(now, p.ExecutionID, p.NodeID)...)
		}
		args = append(args, p.StepID, now, p.ExecutionID, p.NodeID, newID(), p.StepID, models.StepRunning, in, p.Attempt, now)
		// Grouped, it goes with the step starts of other executions that
		// queue meanwhile, as one statement (groupcommit_postgres.go).
		var step models.StepExecution
		err = s.writeCheckpoint(&checkpoint{ctx: ctx, single: true,
			op: func(db *gorm.DB) (err error) {
				steps, err = queryOn(db, query, args, scanStep)
				return err
			},
			start: &stepStart{executionID: p.ExecutionID, nodeID: p.NodeID, stepID: p.StepID, input: in, attempt: p.Attempt,
				previous: previous, step: &step},
		})
		if err == nil && step.StepExecutionID != "" {
			steps = []models.StepExecution{step}
		}
	} else {
		err = s.writeCheckpoint(&checkpoint{ctx: ctx, op: func(tx *gorm.DB) error {
			steps = oneRow[models.StepExecution]()
			fencedLater := false
			if previous != nil {
				res := previous.writeBefore(tx, s, p.ExecutionID, p.NodeID)
				if res.Error != nil || res.RowsAffected == 0 {
					return res.Error
				}
				fencedLater = !s.inTransaction()
			}
			res := tx.Exec(nextStepOfRunningSQL, p.StepID, now, p.ExecutionID, p.NodeID)
			if res.Error == nil && res.RowsAffected == 0 {
				// Not RUNNING yet (the first step after a claim), or not
				// owned: the update that also marks it RUNNING says which.
				res = tx.Exec(`UPDATE workflow_executions SET current_step_id = ?, `+markRunning+` WHERE `+ownedLive,
					p.StepID, now, p.ExecutionID, p.NodeID)
			}
			if res.Error == nil && res.RowsAffected == 0 && fencedLater {
				return errOutcomeNotOwned
			}
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			// The update just found the execution owned and live, in this
			// transaction: a plain one-row insert needs no check of its own.
			// Every column it writes is known here (SQLite binds the
			// process clock's time, boundTime), so it returns nothing:
			// SQLite prepares each statement anew, and RETURNING was a
			// tenth of a step start's preparing.
			id := newID()
			started, _ := s.dialect.boundTime(now)
			if err := tx.Exec(insertStartedStepSQL, id, p.ExecutionID, p.StepID, models.StepRunning, in, p.Attempt, now).Error; err != nil {
				return err
			}
			steps = append(steps, models.StepExecution{StepExecutionID: id, ExecutionID: p.ExecutionID, StepID: p.StepID,
				Status: models.StepRunning, Input: in, Attempt: p.Attempt, StartedAt: &started})
			return nil
		}})
	}
	if err == nil && len(steps) == 0 {
		err = ErrConcurrentUpdate
	}
	switch {
	case s.dialect.isUniqueViolation(err):
		return nil, fmt.Errorf("starting step %s attempt %d of execution %s: %w", p.StepID, p.Attempt, p.ExecutionID, ErrAlreadyExists)
	case err != nil:
		return nil, fmt.Errorf("starting step %s of execution %s on %s: %w", p.StepID, p.ExecutionID, p.NodeID, err)
	}
	s.dialect.scanned(&steps)
	return &steps[0], nil
}

// oneRow is the slice a statement that returns at most one row is read
// into: GORM reads into the slice it is given when it has room, and makes
// one of 20 rows otherwise (a fifth of what a checkpoint allocated).
func oneRow[T any]() []T { return make([]T, 0, 1) }

// insertStartedStepSQL journals a started attempt of an execution known to
// exist, without RETURNING (see boundTime).
const insertStartedStepSQL = `INSERT INTO step_executions ` +
	`(step_execution_id, execution_id, step_id, status, input, attempt, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)`

// nextStepOfRunningSQL makes a step current in an execution the node owns
// and that is RUNNING already, on SQLite, without assigning its status:
// SQLite rewrites the entries of every index on an assigned column, even to
// its old value, and status has three (status, stale, owned), three of the
// four pages a step start wrote to the WAL besides the step's own.
// (PostgreSQL compares the values: an unchanged status keeps its update
// HOT.)
const nextStepOfRunningSQL = `UPDATE workflow_executions SET current_step_id = ?, started_at = COALESCE(started_at, ?) ` +
	`WHERE execution_id = ? AND (node_id = ? AND status = 'RUNNING') IS TRUE`

// markRunning is the assignment with which the first checkpoint of an
// execution makes it RUNNING (its one argument is the time): no write of its
// own. The version is not bumped: the status says what the node does, the
// owner and version who may.
const markRunning = `status = 'RUNNING', started_at = COALESCE(started_at, ?)`

// stepOutcome is a validated FinishStepParams, ready to write.
type stepOutcome struct {
	id     string
	status models.StepStatus
	output models.JSON
	err    *string
}

func newStepOutcome(stepExecutionID string, status models.StepStatus, output any, errMsg string) (*stepOutcome, error) {
	if err := checkID("step execution id", stepExecutionID); err != nil {
		return nil, err
	}
	if !status.Valid() {
		return nil, fmt.Errorf("step status %q: %w", status, ErrInvalidArgument)
	}
	if err := checkText("step error", errMsg); err != nil {
		return nil, err
	}
	out, err := encodeJSON("step output", output)
	if err != nil {
		return nil, err
	}
	return &stepOutcome{id: stepExecutionID, status: status, output: out, err: nullable(errMsg)}, nil
}

func newFinishOutcome(p FinishStepParams) (*stepOutcome, error) {
	if err := checkID("node id", p.NodeID); err != nil {
		return nil, err
	}
	return newStepOutcome(p.StepExecutionID, p.Status, p.Output, p.Error)
}

// doneCTE writes a step outcome, fenced by ownership, as the CTE "done"
// (PostgreSQL) of a statement that goes on only if it wrote; its arguments
// are cteArgs. The ownership check locks the execution's row: a plain read
// would see the statement's snapshot, and a takeover committed meanwhile
// would not stop the outcome (the statement's own UPDATE of the row, which
// re-checks it, would refuse the rest). Locking waits for such a takeover
// and re-checks the row as it committed.
const doneCTE = `done AS (UPDATE step_executions SET status = ?, output = ?::jsonb, error = ?, completed_at = ? ` +
	`WHERE step_execution_id = ? AND execution_id = ? AND EXISTS (SELECT 1 FROM workflow_executions WHERE ` + ownedLive +
	` FOR NO KEY UPDATE) RETURNING 1)`

func (o *stepOutcome) cteArgs(now any, executionID, nodeID string) []any {
	return []any{o.status, o.output, o.err, now, o.id, executionID, executionID, nodeID}
}

// values are the columns the outcome sets.
func (o *stepOutcome) values(d dialect) map[string]any {
	return map[string]any{"status": o.status, "output": o.output, "error": o.err, "completed_at": d.now()}
}

// finishStepSQL writes a step's outcome if the node owns its live
// execution; its arguments are cteArgs.
const finishStepSQL = `UPDATE step_executions SET status = ?, output = ?, error = ?, completed_at = ? ` +
	`WHERE step_execution_id = ? AND execution_id = ? AND EXISTS (SELECT 1 FROM workflow_executions WHERE ` + ownedLive + `)`

// finishStepUnfencedSQL is finishStepSQL without the owner check, for a
// transaction of the library's own whose next statement is the fenced write
// of the execution (writeBefore).
const finishStepUnfencedSQL = `UPDATE step_executions SET status = ?, output = ?, error = ?, completed_at = ? ` +
	`WHERE step_execution_id = ? AND execution_id = ?`

// errOutcomeNotOwned rolls back a transaction of the library's own in which
// writeBefore wrote a step's outcome that the execution's fenced write then
// found not owned: the checkpoint wrote nothing.
var errOutcomeNotOwned = fmt.Errorf("the step's outcome was rolled back: %w", ErrConcurrentUpdate)

// writeBefore writes the outcome as the first statement of a SQLite
// checkpoint whose next statement is the fenced write of the execution. In a
// transaction of the library's own, it leaves the owner check to that write
// (SQLite prepares every statement anew, and the check was a third of this
// one): the checkpoint returns errOutcomeNotOwned when that write misses, and
// the transaction rolls back. In a caller's transaction, which the library
// cannot roll back, the outcome is fenced itself (update).
func (o *stepOutcome) writeBefore(db *gorm.DB, s *Storage, executionID, nodeID string) *gorm.DB {
	if s.inTransaction() {
		return o.update(db, s.dialect, executionID, nodeID)
	}
	return db.Exec(finishStepUnfencedSQL, o.status, o.output, o.err, s.dialect.now(), o.id, executionID)
}

// update writes the outcome if nodeID owns the live execution: a statement
// of its own, written out rather than through GORM's model update, whose
// reflection and callbacks cost more than the statement on SQLite, where
// every step's outcome goes this way.
func (o *stepOutcome) update(db *gorm.DB, d dialect, executionID, nodeID string) *gorm.DB {
	return db.Exec(finishStepSQL, o.cteArgs(d.now(), executionID, nodeID)...)
}

// FinishStep implements OwnerRepository.
func (s *Storage) FinishStep(ctx context.Context, p FinishStepParams) error {
	outcome, err := newFinishOutcome(p)
	if err != nil {
		return err
	}
	var res *gorm.DB
	_ = s.run(ctx, func(db *gorm.DB) error {
		res = outcome.update(db, s.dialect, p.ExecutionID, p.NodeID)
		return res.Error
	})
	switch {
	case res.Error != nil:
		return fmt.Errorf("finishing step execution %s: %w", p.StepExecutionID, res.Error)
	case res.RowsAffected == 0:
		return fmt.Errorf("finishing step execution %s on %s: %w", p.StepExecutionID, p.NodeID, ErrConcurrentUpdate)
	}
	return nil
}

// receiveSignalSQL pops the oldest signal, as consumeSignalSQL does, only
// while the node owns the live execution.
const receiveSignalSQL = `DELETE FROM signals WHERE seq = (SELECT seq FROM signals ` +
	`WHERE execution_id = ? AND signal_name = ? ORDER BY seq LIMIT 1%s) ` +
	`AND EXISTS (SELECT 1 FROM workflow_executions WHERE ` + ownedLive + `)` + returningSignal

// ReceiveSignal implements OwnerRepository.
func (s *Storage) ReceiveSignal(ctx context.Context, p ReceiveSignalParams) (*models.StepExecution, bool, error) {
	if err := checkSignal(p.ExecutionID, p.SignalName); err != nil {
		return nil, false, err
	}
	if err := checkID("node id", p.NodeID); err != nil {
		return nil, false, err
	}
	if err := checkID("step id", p.StepID); err != nil {
		return nil, false, err
	}
	var step models.StepExecution
	received := false
	err := s.run(ctx, func(db *gorm.DB) error {
		return s.atomically(db, func(tx *gorm.DB) error {
			received = false
			// The write comes first: on SQLite a deferred transaction that
			// read first could not upgrade to a write beside another writer
			// ("database is locked", without waiting for the busy timeout).
			var sigs []models.Signal
			if err := tx.Raw(fmt.Sprintf(receiveSignalSQL, s.dialect.claimLock()),
				p.ExecutionID, p.SignalName, p.ExecutionID, p.NodeID).Scan(&sigs).Error; err != nil {
				return err
			}
			if len(sigs) == 0 {
				var owned int64
				if err := tx.Model(&models.WorkflowExecution{}).Where(ownedLive, p.ExecutionID, p.NodeID).Count(&owned).Error; err != nil {
					return err
				}
				if owned == 0 {
					return ErrConcurrentUpdate
				}
				return nil
			}
			received = true
			now := s.dialect.now()
			return tx.Raw(`INSERT INTO step_executions (step_execution_id, execution_id, step_id, status, output, attempt, started_at, completed_at) `+
				`VALUES (?, ?, ?, ?, ?, 1, ?, ?)`+returningStep,
				newID(), p.ExecutionID, p.StepID, models.StepCompleted, sigs[0].Payload, now, now).Scan(&step).Error
		})
	})
	if s.dialect.isUniqueViolation(err) {
		err = ErrAlreadyExists
	}
	if err != nil {
		return nil, false, fmt.Errorf("receiving signal %s for execution %s on %s: %w", p.SignalName, p.ExecutionID, p.NodeID, err)
	}
	if !received {
		return nil, false, nil
	}
	s.dialect.scanned(&step)
	return &step, true, nil
}

// definitionFilter is the condition and arguments that restrict a claim to
// defs; empty when defs is. It is an "IS TRUE" term, which no index can
// serve, for the reason ownedLive is: before the table has statistics,
// PostgreSQL's cached plans otherwise chose the definition index for sweeps,
// and read every execution of the definition there ever was, at every sweep.
func definitionFilter(defs []DefinitionKey) (string, []any, error) {
	if len(defs) == 0 {
		return "", nil, nil
	}
	pairs := make([]string, len(defs))
	args := make([]any, 0, 2*len(defs))
	for i, d := range defs {
		if err := checkDefinitionKey(d.ID, d.Version); err != nil {
			return "", nil, err
		}
		pairs[i] = "(?, ?)"
		args = append(args, d.ID, d.Version)
	}
	return " AND ((definition_id, definition_version) IN (" + strings.Join(pairs, ", ") + ")) IS TRUE", args, nil
}

// ParkParams is the input of ParkExecution.
type ParkParams struct {
	ExecutionID, NodeID string
	// Until is when the execution is due; zero means only a signal makes it
	// due. On PostgreSQL it is compared with the server's clock.
	Until time.Time
	// For, when positive, is how long until the execution is due, measured
	// on the database's clock; it overrides Until. A node whose clock runs
	// behind the database's would otherwise park an execution that is due
	// at once, and replay and park it again until its clock caught up.
	For time.Duration
	// Signal, if set, names the signal that makes the execution due at once.
	Signal string
}

// handedBack is the last_heartbeat of an execution its node handed back: due
// since long, so that the claims, oldest first, resume work already in
// flight before work that never started.
var handedBack = time.Unix(0, 0).UTC()

// parkedForever is the due time of an execution that only a signal wakes:
// later than any real time, so the due range never reaches it.
var parkedForever = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// ParkExecution implements OwnerRepository.
func (s *Storage) ParkExecution(ctx context.Context, p ParkParams) error {
	if err := checkID("execution id", p.ExecutionID); err != nil {
		return err
	}
	if err := checkID("node id", p.NodeID); err != nil {
		return err
	}
	if p.Signal != "" {
		if err := checkID("signal name", p.Signal); err != nil {
			return err
		}
	}
	until := p.Until.UTC().Truncate(time.Microsecond)
	switch {
	case p.Until.IsZero() && p.For <= 0 && p.Signal == "":
		return fmt.Errorf("parking execution %s: neither a time nor a signal to wait for: %w", p.ExecutionID, ErrInvalidArgument)
	case p.Until.IsZero() || until.After(parkedForever):
		until = parkedForever
	}
	due := any(until)
	if p.For > 0 && p.For < time.Until(parkedForever) {
		due = s.dialect.before(-p.For)
	}
	var res *gorm.DB
	_ = s.run(ctx, func(db *gorm.DB) error {
		res = db.Model(&models.WorkflowExecution{}).Where(ownedLive, p.ExecutionID, p.NodeID).
			UpdateColumns(map[string]any{
				"node_id": nil, "last_heartbeat": due, "wait_signal": nullable(p.Signal),
				"updated_at": s.dialect.now(), "version": optimisticlock.Bump("version"),
				// A workflow that waits before its first step is started too.
				"status": models.ExecutionRunning, "started_at": gorm.Expr("COALESCE(started_at, ?)", s.dialect.now()),
			})
		return res.Error
	})
	switch {
	case res.Error != nil:
		return fmt.Errorf("parking execution %s: %w", p.ExecutionID, res.Error)
	case res.RowsAffected == 0:
		return fmt.Errorf("parking execution %s of %s: %w", p.ExecutionID, p.NodeID, ErrConcurrentUpdate)
	}
	s.publishParked(ctx, p, until)
	return nil
}

// ReleaseExecution implements OwnerRepository.
func (s *Storage) ReleaseExecution(ctx context.Context, executionID, nodeID string) error {
	if err := checkID("execution id", executionID); err != nil {
		return err
	}
	if err := checkID("node id", nodeID); err != nil {
		return err
	}
	var res *gorm.DB
	_ = s.run(ctx, func(db *gorm.DB) error {
		res = db.Model(&models.WorkflowExecution{}).Where(ownedLive, executionID, nodeID).
			UpdateColumns(map[string]any{
				"node_id": nil, "last_heartbeat": handedBack, "updated_at": s.dialect.now(),
				"version": optimisticlock.Bump("version"),
			})
		return res.Error
	})
	switch {
	case res.Error != nil:
		return fmt.Errorf("releasing execution %s from %s: %w", executionID, nodeID, res.Error)
	case res.RowsAffected == 0:
		return fmt.Errorf("releasing execution %s from %s: %w", executionID, nodeID, ErrConcurrentUpdate)
	}
	s.publish(EventClaimable, executionID)
	return nil
}

// endSQL moves an owned live execution to its end. The version is bumped so
// that readers holding the old one notice.
const endSQL = `UPDATE workflow_executions SET status = ?, output = ?, error = ?, completed_at = ?, updated_at = ?, ` +
	`started_at = COALESCE(started_at, ?), version = version + 1 WHERE ` + ownedLive

// endWithOutcomeSQL is endSQL on PostgreSQL with the last step's outcome
// (doneCTE) in the same statement.
const endWithOutcomeSQL = `WITH ` + doneCTE + ` ` + endSQL + ` AND EXISTS (SELECT 1 FROM done)` + returningExecution

// FinishExecution implements OwnerRepository.
func (s *Storage) FinishExecution(ctx context.Context, p FinishExecutionParams) error {
	if err := checkID("execution id", p.ExecutionID); err != nil {
		return err
	}
	if err := checkID("node id", p.NodeID); err != nil {
		return err
	}
	if !p.Status.Terminal() {
		return fmt.Errorf("finishing with non-terminal status %q: %w", p.Status, ErrInvalidArgument)
	}
	if err := checkText("execution error", p.Error); err != nil {
		return err
	}
	out, err := encodeJSON("execution output", p.Output)
	if err != nil {
		return err
	}
	var previous *stepOutcome
	if p.Previous != nil {
		if p.Previous.ExecutionID != p.ExecutionID || p.Previous.NodeID != p.NodeID {
			return fmt.Errorf("previous step of another execution or node: %w", ErrInvalidArgument)
		}
		if previous, err = newFinishOutcome(*p.Previous); err != nil {
			return err
		}
	}
	now := s.dialect.now()
	end := endSQL
	args := []any{p.Status, out, nullable(p.Error), now, now, now, p.ExecutionID, p.NodeID}
	var ended []models.WorkflowExecution
	single := previous == nil || s.dialect.writableCTE()
	op := func(tx *gorm.DB) error {
		ended = oneRow[models.WorkflowExecution]()
		if previous == nil {
			return tx.Raw(end+returningExecution, args...).Find(&ended).Error
		}
		if s.dialect.writableCTE() {
			// One statement: the last step's outcome, then the end, only if
			// the outcome was written (both are fenced by ownership),
			// written out (statements_postgres.go).
			all := append(previous.cteArgs(now, p.ExecutionID, p.NodeID), args...)
			var err error
			ended, err = queryOn(tx, endWithOutcomeSQL, all, scanExecution)
			return err
		}
		res := previous.writeBefore(tx, s, p.ExecutionID, p.NodeID)
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		if err := tx.Raw(end+returningExecution, args...).Find(&ended).Error; err != nil {
			return err
		}
		if len(ended) == 0 && !s.inTransaction() {
			return errOutcomeNotOwned
		}
		return nil
	}
	// Grouped on PostgreSQL, it goes with the ends that queue meanwhile, as
	// one statement (groupcommit_postgres.go).
	var x models.WorkflowExecution
	err = s.writeCheckpoint(&checkpoint{ctx: ctx, op: op, single: single, end: &executionEnd{
		executionID: p.ExecutionID, nodeID: p.NodeID, status: p.Status, output: out, err: nullable(p.Error),
		previous: previous, ended: &x,
	}})
	if err == nil && x.ExecutionID != "" {
		ended = []models.WorkflowExecution{x}
	}
	switch {
	case err != nil:
		return fmt.Errorf("finishing execution %s as %s: %w", p.ExecutionID, p.Status, err)
	case len(ended) == 0:
		return fmt.Errorf("finishing execution %s on %s: %w", p.ExecutionID, p.NodeID, ErrConcurrentUpdate)
	}
	if p.Finished != nil {
		s.dialect.scanned(&ended)
		*p.Finished = ended[0]
	}
	s.publish(EventEnded, p.ExecutionID)
	return nil
}
