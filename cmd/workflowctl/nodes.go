package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
)

// nodesDocument is the JSON output of nodes.
type nodesDocument struct {
	Nodes []manage.NodeInfo `json:"nodes"`
}

// staleDocument is the JSON output of stale.
type staleDocument struct {
	Threshold  string                     `json:"threshold"`
	Executions []models.WorkflowExecution `json:"executions"`
}

func (a *app) nodesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes, from their heartbeats",
		Long: "List the engines that have beaten recently: when each started, when it last\n" +
			"beat, and how many executions it owns.",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withManager(cmd.Context(), func(m manager) error { return a.nodes(cmd.Context(), m) })
		},
	}
}

func (a *app) nodes(ctx context.Context, m manager) error {
	nodes, err := m.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	if a.json() {
		if nodes == nil {
			nodes = []manage.NodeInfo{}
		}
		return writeJSON(a.stdout, nodesDocument{Nodes: nodes})
	}
	if len(nodes) == 0 {
		fmt.Fprintln(a.stdout, "no nodes")
		return nil
	}
	now := a.now()
	t := newTable(a.stdout, "NODE", "STARTED", "LAST SEEN", "AGO", "EXECUTIONS")
	for _, n := range nodes {
		t.row(n.NodeID, formatTime(&n.StartedAt), formatTime(&n.LastSeen), formatDuration(now.Sub(n.LastSeen)), strconv.FormatInt(int64(n.Executions), 10))
	}
	return t.flush()
}

func (a *app) staleCommand() *cobra.Command {
	threshold := duration(engine.StaleThresholdDefault)
	cmd := &cobra.Command{
		Use:   "stale [--threshold DURATION]",
		Short: "List live executions whose owner has stopped beating",
		Long: "List the PENDING and RUNNING executions whose last heartbeat is older than the\n" +
			"threshold, by the database's clock, oldest first: owned by a node that stopped\n" +
			"beating, or unowned and due, waiting for an engine to claim them.",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withManager(cmd.Context(), func(m manager) error {
				return a.stale(cmd.Context(), m, time.Duration(threshold))
			})
		},
	}
	cmd.Flags().Var(&threshold, "threshold", "how old a last heartbeat is stale")
	return cmd
}

func (a *app) stale(ctx context.Context, m manager, threshold time.Duration) error {
	executions, err := m.Stale(ctx, threshold)
	if err != nil {
		return fmt.Errorf("listing stale executions: %w", err)
	}
	if a.json() {
		if executions == nil {
			executions = []models.WorkflowExecution{}
		}
		return writeJSON(a.stdout, staleDocument{Threshold: formatAge(threshold), Executions: executions})
	}
	if len(executions) == 0 {
		fmt.Fprintf(a.stdout, "no execution has gone %s without a heartbeat\n", threshold)
		return nil
	}
	return a.executionTable(a.stdout, executions, func(e models.WorkflowExecution) (string, string) {
		return "LAST HEARTBEAT", formatTime(e.LastHeartbeat)
	})
}
