package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/plexspaces/workflow/manage"
)

// usageError is a command line the CLI cannot run: an unknown command or
// flag, a missing or extra argument, a value of the wrong syntax. It exits 2.
type usageError struct{ err error }

// Error returns the message.
func (e *usageError) Error() string { return e.err.Error() }

// Unwrap returns the error it wraps.
func (e *usageError) Unwrap() error { return e.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// executionError says what went wrong with execution id in words an operator
// reads: "execution X not found" rather than the repository's chain.
func executionError(id string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, manage.ErrNotFound):
		return fmt.Errorf("execution %s not found", id)
	case errors.Is(err, manage.ErrExecutionEnded):
		return fmt.Errorf("execution %s has ended and takes no signals", id)
	case errors.Is(err, manage.ErrNotRetryable):
		return fmt.Errorf("execution %s cannot be retried (only FAILED, CANCELLED and TIMED_OUT can): %w", id, err)
	case errors.Is(err, manage.ErrConcurrentUpdate):
		return fmt.Errorf("execution %s changed meanwhile, try again: %w", id, err)
	}
	return err
}

// oneLine folds a message onto one line.
func oneLine(msg string) string {
	return strings.Join(strings.Fields(msg), " ")
}
