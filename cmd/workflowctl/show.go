package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/plexspaces/workflow/models"
)

func (a *app) showCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an execution and its journal",
		Long: "Show an execution (status, owner node, version, labels, input, output or\n" +
			"error) and its journal, one line per step attempt, in the order they started.",
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withManager(cmd.Context(), func(m manager) error { return a.show(cmd.Context(), m, args[0]) })
		},
	}
}

func (a *app) show(ctx context.Context, m manager, id string) error {
	d, err := m.Get(ctx, id)
	if err != nil {
		return executionError(id, err)
	}
	doc := *d
	if doc.Steps == nil {
		doc.Steps = []models.StepExecution{}
	}
	if doc.PendingSignals == nil {
		doc.PendingSignals = []models.Signal{}
	}
	if a.json() {
		return writeJSON(a.stdout, doc)
	}
	e := doc.Execution
	now := a.now()
	fields := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(fields, "%s\t%s\n", name, value)
		}
	}
	field("execution", e.ExecutionID)
	field("definition", definitionOf(e))
	field("status", string(e.Status))
	field("node", deref(e.NodeID))
	field("version", strconv.FormatInt(int64(e.Version), 10))
	field("labels", labelsText(e.Labels))
	field("current step", deref(e.CurrentStepID))
	if e.WaitSignal != nil {
		field("waits for", "signal "+*e.WaitSignal)
	}
	field("created", formatTime(&e.CreatedAt))
	field("started", formatTime(e.StartedAt))
	field("ended", formatTime(e.CompletedAt))
	if e.StartedAt != nil {
		field("duration", formatSpan(e.StartedAt, e.CompletedAt, now))
	}
	field("last heartbeat", formatTime(e.LastHeartbeat))
	field("input", string(e.Input))
	field("output", string(e.Output))
	field("error", deref(e.Error))
	if err := fields.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(a.stdout, "\njournal (%d step attempts)\n", len(doc.Steps))
	if len(doc.Steps) > 0 {
		t := newTable(a.stdout, "STEP", "ATTEMPT", "STATUS", "NODE", "STARTED", "DURATION", "ERROR")
		for _, s := range doc.Steps {
			span := formatSpan(s.StartedAt, s.CompletedAt, now)
			if s.CompletedAt == nil && e.Status.Terminal() {
				span = "" // an attempt its node died in: it is not going on
			}
			t.row(s.StepID, strconv.Itoa(s.Attempt), string(s.Status), stepNode(s), formatTime(s.StartedAt), span, deref(s.Error))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if len(doc.PendingSignals) > 0 {
		fmt.Fprintf(a.stdout, "\npending signals (%d)\n", len(doc.PendingSignals))
		t := newTable(a.stdout, "NAME", "RECEIVED", "PAYLOAD")
		for _, s := range doc.PendingSignals {
			t.row(s.Name, formatTime(&s.ReceivedAt), string(s.Payload))
		}
		return t.flush()
	}
	return nil
}

// labelsText is "k=v, k=v", sorted by key.
func labelsText(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ", ")
}

// stepNode is the node that ran a step attempt, when its metadata says.
func stepNode(s models.StepExecution) string {
	var meta struct {
		NodeID string `json:"node_id"`
	}
	if len(s.Metadata) == 0 || json.Unmarshal(s.Metadata, &meta) != nil {
		return ""
	}
	return meta.NodeID
}
