package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func (a *app) listCommand() *cobra.Command {
	var (
		statuses   statusList
		definition string
		labels     labelMap
		node       string
		since      duration
		limit      int
		after      string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List executions, a page at a time",
		Long: "List executions, in the order of their ids (oldest first), with the filters given.\n" +
			"When there are more, the last line gives the --after cursor of the next page.",
		Example: "  workflowctl list --status FAILED,TIMED_OUT --since 24h\n" +
			"  workflowctl list --definition order@v2 --label region=eu --limit 20",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := manage.Filter{Statuses: statuses, Labels: labels, NodeID: node, Limit: limit, After: after}
			if definition != "" {
				id, version, versioned := strings.Cut(definition, "@")
				if id == "" || (versioned && version == "") {
					return usagef("--definition %q: want ID or ID@VERSION", definition)
				}
				f.DefinitionID, f.DefinitionVersion = id, version
			}
			if limit < 0 || limit > repository.ListLimitMax {
				return usagef("--limit %d: want 1 to %d", limit, repository.ListLimitMax)
			}
			if since > 0 {
				f.CreatedSince = a.now().Add(-time.Duration(since))
			}
			return a.withManager(cmd.Context(), func(m manager) error { return a.list(cmd.Context(), m, f) })
		},
	}
	flags := cmd.Flags()
	flags.Var(&statuses, "status", "only these statuses, comma-separated (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMED_OUT)")
	flags.StringVar(&definition, "definition", "", "only this definition: ID or ID@VERSION")
	flags.Var(&labels, "label", "only executions with this label; repeat for several (all must match)")
	flags.StringVar(&node, "node", "", "only executions owned by this node")
	flags.Var(&since, "since", "only executions created within this long (90s, 12h, 7d)")
	flags.IntVar(&limit, "limit", 0, "page size (default 100, at most 1000)")
	flags.StringVar(&after, "after", "", "the cursor a previous page printed")
	return cmd
}

func (a *app) list(ctx context.Context, m manager, f manage.Filter) error {
	page, err := m.List(ctx, f)
	if err != nil {
		return fmt.Errorf("listing executions: %w", err)
	}
	if a.json() {
		if page.Executions == nil {
			page.Executions = []models.WorkflowExecution{}
		}
		return writeJSON(a.stdout, page)
	}
	if len(page.Executions) == 0 {
		fmt.Fprintln(a.stdout, "no executions")
		return nil
	}
	if err := a.executionTable(a.stdout, page.Executions); err != nil {
		return err
	}
	if page.Next != "" {
		fmt.Fprintf(a.stdout, "next page: --after %s\n", page.Next)
	}
	return nil
}
