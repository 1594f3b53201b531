package main

import (
	"context"
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/plexspaces/workflow/manage"
)

// The batch sizes of purge: how many executions it deletes per transaction,
// few enough that no lock is long.
const (
	purgeBatchDefault = 500
	purgeBatchMax     = 5000
)

// purgeDocument is purge's JSON output: the counts and what they are of.
type purgeDocument struct {
	DryRun    bool   `json:"dry_run"`
	OlderThan string `json:"older_than"`
	manage.PurgeCounts
}

func (a *app) purgeCommand() *cobra.Command {
	var (
		olderThan duration
		dryRun    bool
		batchSize int
	)
	cmd := &cobra.Command{
		Use:   "purge --older-than DURATION [--dry-run]",
		Short: "Delete ended executions and their history",
		Long: "Delete the executions that ended (COMPLETED, FAILED, CANCELLED, TIMED_OUT) more\n" +
			"than DURATION ago, with their steps, signals and labels, in batches of\n" +
			"--batch-size executions per transaction. --dry-run only counts them.\n" +
			"On a terminal, a purge of more than one batch shows a progress bar.",
		Example: "  workflowctl purge --older-than 30d --dry-run\n  workflowctl purge --older-than 720h",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderThan == 0 {
				return usagef("purge needs --older-than")
			}
			if batchSize < 1 || batchSize > purgeBatchMax {
				return usagef("--batch-size %d: want 1 to %d", batchSize, purgeBatchMax)
			}
			opts := manage.PurgeOptions{OlderThan: time.Duration(olderThan), BatchSize: batchSize, DryRun: dryRun}
			return a.withManager(cmd.Context(), func(m manager) error { return a.purge(cmd.Context(), m, opts) })
		},
	}
	flags := cmd.Flags()
	flags.Var(&olderThan, "older-than", "purge executions that ended longer ago than this (90s, 12h, 30d)")
	flags.BoolVar(&dryRun, "dry-run", false, "count what would be deleted, delete nothing")
	flags.IntVar(&batchSize, "batch-size", purgeBatchDefault, "executions deleted per transaction")
	return cmd
}

func (a *app) purge(ctx context.Context, m manager, opts manage.PurgeOptions) error {
	if !opts.DryRun && a.isTerminal(a.stderr) {
		// A bar needs the total: a dry run counts it first.
		preview := opts
		preview.DryRun = true
		total, err := m.Purge(ctx, preview)
		if err != nil {
			return fmt.Errorf("counting what to purge: %w", err)
		}
		if total.Executions > int64(opts.BatchSize) {
			bar := progressbar.NewOptions64(total.Executions,
				progressbar.OptionSetWriter(a.stderr),
				progressbar.OptionSetDescription("purging"),
				progressbar.OptionShowCount(),
				progressbar.OptionSetItsString("executions"),
				progressbar.OptionShowIts(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
			opts.Progress = func(c manage.PurgeCounts) { _ = bar.Set64(min(c.Executions, total.Executions)) }
			defer func() { _ = bar.Finish() }()
		}
	}
	counts, err := m.Purge(ctx, opts)
	if err != nil {
		return fmt.Errorf("purging executions that ended more than %s ago (%d purged before the error): %w",
			formatAge(opts.OlderThan), counts.Executions, err)
	}
	if a.json() {
		return writeJSON(a.stdout, purgeDocument{DryRun: opts.DryRun, OlderThan: formatAge(opts.OlderThan), PurgeCounts: counts})
	}
	verb := "purged"
	if opts.DryRun {
		verb = "would purge"
	}
	_, err = fmt.Fprintf(a.stdout, "%s %d executions, %d steps, %d signals, %d labels (ended more than %s ago)\n",
		verb, counts.Executions, counts.Steps, counts.Signals, counts.Labels, formatAge(opts.OlderThan))
	return err
}
