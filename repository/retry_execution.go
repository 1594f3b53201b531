package repository

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/plugins/optimisticlock"
)

// ErrNotRetryable is RetryExecution's error for an execution that is live
// (PENDING or RUNNING) or COMPLETED: only FAILED, CANCELLED and TIMED_OUT
// executions run again.
var ErrNotRetryable = errors.New("repository: execution is not retryable")

// retryableStatuses are the statuses RetryExecution takes an execution from.
const retryableStatuses = "status IN ('FAILED', 'CANCELLED', 'TIMED_OUT')"

// RetryExecutionSQL is the first statement of RetryExecution's transaction:
// a compare-and-set on the execution's status, fenced in the statement
// itself, with a version bump. Its arguments are the due time (now), the
// update time (now) and the execution id.
const RetryExecutionSQL = `UPDATE workflow_executions SET status = 'PENDING', output = NULL, error = NULL, ` +
	`completed_at = NULL, started_at = NULL, node_id = NULL, wait_signal = NULL, ` +
	`last_heartbeat = ?, updated_at = ?, version = ? ` +
	`WHERE execution_id = ? AND ` + retryableStatuses + returningExecution

// RetireStepsSQL is the second statement of RetryExecution's transaction: it
// moves the journal rows of the steps that did not complete out of the
// replay's way by renaming them. Its arguments are the prefix
// (RetiredStepPrefix of the version the retry set) and the execution id.
// Rows an earlier retry retired keep their name.
const RetireStepsSQL = `UPDATE step_executions SET step_id = CAST(? AS TEXT) || step_id ` +
	`WHERE execution_id = ? AND status <> 'COMPLETED' AND step_id NOT LIKE 'retried:%'`

// RetiredStepPrefix is what RetryExecution puts before the step id of a
// journal row it retires: "retried:<version>/", where version is the
// execution's version after the retry, so the rows of successive retries
// stay apart. A row "retried:7/charge" is an attempt of step "charge" made
// before the retry that set version 7. Workflows must not name steps so.
func RetiredStepPrefix(version int64) string {
	return "retried:" + strconv.FormatInt(version, 10) + "/"
}

// RetryExecution implements ManageRepository. In one transaction it moves a
// FAILED, CANCELLED or TIMED_OUT execution back to PENDING with a version
// bump, clears its output, error, started_at, completed_at, owner and
// wait, makes it due at once for any node's claim, and retires the journal
// rows of every step that did not complete (FAILED, RUNNING, RETRYING,
// CANCELLED): their step id gets RetiredStepPrefix, so they stay in the
// history, in the order they started, but a replay no longer meets them.
// The workflow then runs again from its first step that did not complete:
// completed steps keep their results and are not run again, and the failed
// step starts over at attempt 1 with its whole retry policy. started_at is
// set anew when a node starts the run, so a workflow's timeout (WithTimeout)
// counts from the retry.
//
// A signal wait that timed out waits again, but its deadline, journaled as
// a completed step, is kept: it times out again at once unless the signal
// is sent after the retry.
//
// An unknown execution is ErrNotFound; a live or COMPLETED one
// ErrNotRetryable. Of concurrent retries, one wins and the others get
// ErrNotRetryable (the execution is PENDING by then). The compare-and-set
// fences the old owner too: the retried execution has no owner, so no write
// of a node that ran it before commits until that node claims it again.
func (s *Storage) RetryExecution(ctx context.Context, executionID string) (*models.WorkflowExecution, error) {
	if err := checkID("execution id", executionID); err != nil {
		return nil, err
	}
	var retried models.WorkflowExecution
	err := s.run(ctx, func(db *gorm.DB) error {
		return s.atomically(db, func(tx *gorm.DB) error {
			now := s.dialect.now()
			var rows []models.WorkflowExecution
			err := tx.Raw(RetryExecutionSQL, now, now, optimisticlock.Bump("version"), executionID).Scan(&rows).Error
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				var statuses []models.ExecutionStatus
				if err := tx.Raw(ExecutionStatusSQL, executionID).Scan(&statuses).Error; err != nil {
					return err
				}
				if len(statuses) == 0 {
					return ErrNotFound
				}
				return fmt.Errorf("it is %s: %w", statuses[0], ErrNotRetryable)
			}
			retried = rows[0]
			return tx.Exec(RetireStepsSQL, RetiredStepPrefix(int64(retried.Version)), executionID).Error
		})
	})
	if err != nil {
		return nil, fmt.Errorf("retrying execution %s: %w", executionID, err)
	}
	s.publish(EventClaimable, executionID)
	out := []models.WorkflowExecution{retried}
	if err := s.fillLabels(ctx, out); err != nil {
		return nil, err
	}
	s.dialect.scanned(&out)
	return &out[0], nil
}
