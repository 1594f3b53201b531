package repository

import (
	"errors"

	"github.com/plexspaces/workflow/plugins/optimisticlock"
)

// Errors the repository returns, wrapped with context; match them with errors.Is.
var (
	// ErrNotFound: no execution, definition, step or signal has the given id.
	ErrNotFound = errors.New("repository: not found")
	// ErrConcurrentUpdate: the row changed since it was read (a version miss), or
	// the node is not the owner it claims to be.
	ErrConcurrentUpdate = optimisticlock.ErrConcurrentUpdate
	// ErrInvalidArgument: the input was rejected before any SQL ran.
	ErrInvalidArgument = errors.New("repository: invalid argument")
	// ErrAlreadyExists: a row with the caller-chosen id exists.
	ErrAlreadyExists = errors.New("repository: already exists")
	// ErrInUse: the row is still referenced (a definition with executions).
	ErrInUse = errors.New("repository: still referenced")
	// ErrExecutionEnded: the execution is in a terminal status (COMPLETED,
	// FAILED, CANCELLED or TIMED_OUT) and takes no more signals.
	ErrExecutionEnded = errors.New("repository: execution has ended")
)
