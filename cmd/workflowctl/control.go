package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
)

// actionDocument is the JSON output of signal and cancel.
type actionDocument struct {
	ExecutionID string `json:"execution_id"`
	Action      string `json:"action"`
	Signal      string `json:"signal,omitempty"`
	// Status is where the execution stands after a cancel.
	Status models.ExecutionStatus `json:"status,omitempty"`
}

func (a *app) signalCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "signal ID NAME [JSON]",
		Short: "Send a signal to a running execution",
		Long: "Send the signal NAME to a live execution, with the JSON document as its\n" +
			"payload (none when omitted). The workflow receives it at its next wait for NAME.",
		Example: `  workflowctl signal order-4 approval '{"approved_by":"ops@example.com"}'`,
		Args:    rangeArgs(2, "ID", "NAME", "JSON"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, name := args[0], args[1]
			var payload any
			if len(args) == 3 {
				if !json.Valid([]byte(args[2])) {
					return usagef("signal payload is not JSON: %s", args[2])
				}
				payload = json.RawMessage(args[2])
			}
			return a.withManager(cmd.Context(), func(m manager) error {
				if err := m.Signal(cmd.Context(), id, name, payload); err != nil {
					return executionError(id, err)
				}
				return a.done(actionDocument{ExecutionID: id, Action: "signal", Signal: name},
					"sent signal %s to %s\n", name, id)
			})
		},
	}
}

func (a *app) cancelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel an execution",
		Long: "Cancel a live execution: it ends CANCELLED, and the node running it stops it\n" +
			"at its next checkpoint.",
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.withManager(cmd.Context(), func(m manager) error {
				if err := m.Cancel(cmd.Context(), id); err != nil {
					return executionError(id, err)
				}
				// Cancelling an ended execution changes nothing: say which it was.
				d, err := m.Get(cmd.Context(), id)
				if err != nil {
					return executionError(id, err)
				}
				doc := actionDocument{ExecutionID: id, Action: "cancel", Status: d.Execution.Status}
				if d.Execution.Status != models.ExecutionCancelled {
					return a.done(doc, "%s had already ended %s\n", id, d.Execution.Status)
				}
				return a.done(doc, "cancelled %s\n", id)
			})
		},
	}
}

func (a *app) retryCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "retry ID",
		Short: "Run a failed, cancelled or timed-out execution again",
		Long: "Run a FAILED, CANCELLED or TIMED_OUT execution again from its first step that did\n" +
			"not complete; completed steps keep their results. It goes back to PENDING and\n" +
			"the next engine to sweep claims it.",
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.withManager(cmd.Context(), func(m manager) error { return a.retry(cmd.Context(), m, id) })
		},
	}
}

func (a *app) retry(ctx context.Context, m manager, id string) error {
	e, err := m.Retry(ctx, id)
	if errors.Is(err, manage.ErrNotRetryable) {
		if d, getErr := m.Get(ctx, id); getErr == nil {
			return fmt.Errorf("execution %s is %s: only FAILED, CANCELLED and TIMED_OUT executions can be retried", id, d.Execution.Status)
		}
	}
	if err != nil {
		return executionError(id, err)
	}
	if a.json() {
		return writeJSON(a.stdout, e)
	}
	fmt.Fprintf(a.stdout, "%s is %s again (version %d)\n", id, e.Status, e.Version)
	return nil
}

// done prints what a command did: doc with -o json, else the message.
func (a *app) done(doc any, format string, args ...any) error {
	if a.json() {
		return writeJSON(a.stdout, doc)
	}
	_, err := fmt.Fprintf(a.stdout, format, args...)
	return err
}
