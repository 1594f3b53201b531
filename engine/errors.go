package engine

import (
	"errors"
	"fmt"

	"github.com/plexspaces/workflow/repository"
)

// Errors the engine returns; match them with errors.Is.
var (
	// ErrSignalTimeout: AwaitSignal's timeout passed before a signal came.
	ErrSignalTimeout = errors.New("engine: signal timeout")
	// ErrCancelled: the execution was cancelled; the workflow stops at its next step.
	ErrCancelled = errors.New("engine: execution cancelled")
	// ErrOwnershipLost: another node took the execution over; this node stops
	// it and writes nothing more for it.
	ErrOwnershipLost = errors.New("engine: ownership lost")
	// ErrNotRegistered: no workflow function is registered for a definition.
	ErrNotRegistered = errors.New("engine: workflow not registered")
	// ErrDuplicateStep: a step id was used twice in one execution.
	ErrDuplicateStep = errors.New("engine: duplicate step id")
	// ErrExecutionEnded: the execution has ended (COMPLETED, FAILED, CANCELLED
	// or TIMED_OUT), so a signal to it would never be received
	// (repository.ErrExecutionEnded).
	ErrExecutionEnded = repository.ErrExecutionEnded
	// ErrNotFound: no execution has the given id (repository.ErrNotFound).
	ErrNotFound = repository.ErrNotFound
	// ErrTimedOut: the execution's timeout (WithTimeout) passed, and it ended
	// TIMED_OUT; it is also the cause of the workflow's context then.
	ErrTimedOut = errors.New("engine: workflow timed out")
	// ErrTooManyCrashes: a step's attempts died with their node too often.
	ErrTooManyCrashes = errors.New("engine: step crashed its node too often")
	// errUnstorable marks a step result or workflow output that the
	// database cannot store; it fails the step or workflow without a retry.
	errUnstorable = errors.New("returned a value that cannot be stored")
	// errShutdown is the cause of a workflow context whose engine is stopping.
	errShutdown = errors.New("engine: shutting down")
	// errStorage is the cause of a workflow context stopped because a
	// checkpoint failed for a reason other than fencing; the engine resumes it
	// later.
	errStorage = errors.New("engine: storage unavailable")
)

// StepError is the error of a step whose last attempt failed. Err holds the
// failure as the journal keeps it: its text, unwrapping to the errors declared
// with WithErrors that it matched. A replay returns an equal StepError.
type StepError struct {
	StepID  string
	Attempt int
	Err     error
}

// Error names the step, the attempt and the failure.
func (e *StepError) Error() string {
	return fmt.Sprintf("step %s failed after attempt %d: %v", e.StepID, e.Attempt, e.Err)
}

// Unwrap returns the failure as journaled (see StepError).
func (e *StepError) Unwrap() error { return e.Err }
