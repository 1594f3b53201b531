package repository

import (
	"context"
	"errors"
	"fmt"

	"github.com/plexspaces/workflow/models"
)

// cancelAttempts bounds CancelExecution's retries when the execution keeps
// changing under it.
const cancelAttempts = 20

// CancelExecution marks a live execution CANCELLED with a version-checked
// write, reading it again while it changes under the write; cancelling an
// ended execution changes nothing and is no error. Its node notices at its
// next checkpoint or heartbeat. Engine.Cancel and the management API both
// cancel through it, so an engine need not run where it is called.
func CancelExecution(ctx context.Context, store interface {
	GetExecution(ctx context.Context, executionID string) (*models.WorkflowExecution, error)
	UpdateExecutionStatusWithVersion(ctx context.Context, executionID string, status models.ExecutionStatus, expectedVersion *int64) error
}, executionID string) error {
	for range cancelAttempts {
		cur, err := store.GetExecution(ctx, executionID)
		if err != nil {
			return fmt.Errorf("cancelling execution %s: %w", executionID, err)
		}
		if cur.Status.Terminal() {
			return nil
		}
		version := int64(cur.Version)
		err = store.UpdateExecutionStatusWithVersion(ctx, executionID, models.ExecutionCancelled, &version)
		if errors.Is(err, ErrConcurrentUpdate) {
			continue // it moved on; look again
		}
		if err != nil {
			return fmt.Errorf("cancelling execution %s: %w", executionID, err)
		}
		return nil
	}
	return fmt.Errorf("cancelling execution %s: it kept changing: %w", executionID, ErrConcurrentUpdate)
}
