// Command workflowctl operates the workflows stored in a database: it lists
// executions, shows one with its journal, signals, cancels and retries them,
// purges old history, lists the nodes and the stale executions, and applies
// the schema migrations.
//
//	go install github.com/plexspaces/workflow/cmd/workflowctl@latest
//	workflowctl --dsn sqlite:///var/lib/app/app.db list --status FAILED
//	WORKFLOW_DSN=postgres://app@db/app workflowctl show 0192f0c4-...
//
// It exits 0 on success, 1 on an error and 2 on bad usage, and prints errors
// on stderr in one line, with any DSN password masked.
package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := execute(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(exitCode(err))
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// exitCode maps what execute returned to the process's exit status.
func exitCode(err error) int {
	var usage *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage):
		return exitUsage
	}
	return exitError
}
