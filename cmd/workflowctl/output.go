package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plexspaces/workflow/models"
)

// outputFormat is the -o flag: a table for people or one JSON document.
type outputFormat string

// The output formats.
const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
)

// String implements pflag.Value.
func (o *outputFormat) String() string { return string(*o) }

// Set implements pflag.Value.
func (o *outputFormat) Set(s string) error {
	switch f := outputFormat(strings.ToLower(s)); f {
	case outputTable, outputJSON:
		*o = f
		return nil
	}
	return fmt.Errorf("want table or json")
}

// Type implements pflag.Value.
func (o *outputFormat) Type() string { return "format" }

// json reports whether the command prints JSON.
func (a *app) json() bool { return a.output == outputJSON }

// writeJSON prints doc as one indented JSON document.
func writeJSON(w io.Writer, doc any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// table writes aligned columns; flush it once the rows are in.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		} else {
			cells[i] = strings.Join(strings.Fields(c), " ") // one line per row, no tabs
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// timeLayout is how tables print times: UTC, to the second.
const timeLayout = "2006-01-02 15:04:05"

func formatTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

// formatSpan is how long something that started at start took: until end,
// or until now while it goes on (then with a "+", as it is not over).
func formatSpan(start, end *time.Time, now time.Time) string {
	if start == nil {
		return ""
	}
	if end == nil {
		return formatDuration(now.Sub(*start)) + "+"
	}
	return formatDuration(end.Sub(*start))
}

// formatDuration rounds d to what a reader wants: milliseconds under a
// minute, seconds beyond.
func formatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// formatAge prints a flag's duration back as an operator wrote it: whole
// days as "30d".
func formatAge(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// definitionOf is "id@version".
func definitionOf(e models.WorkflowExecution) string {
	return e.DefinitionID + "@" + e.DefinitionVersion
}

// executionTable prints executions as list and stale do.
func (a *app) executionTable(w io.Writer, executions []models.WorkflowExecution, extra ...func(models.WorkflowExecution) (string, string)) error {
	header := []string{"ID", "DEFINITION", "STATUS", "STEP", "NODE", "STARTED", "DURATION"}
	for _, x := range extra {
		h, _ := x(models.WorkflowExecution{})
		header = append(header, h)
	}
	t := newTable(w, header...)
	now := a.now()
	for _, e := range executions {
		end := e.CompletedAt
		if end == nil && e.Status.Terminal() {
			end = &e.UpdatedAt
		}
		cells := []string{e.ExecutionID, definitionOf(e), string(e.Status), deref(e.CurrentStepID), deref(e.NodeID),
			formatTime(e.StartedAt), formatSpan(e.StartedAt, end, now)}
		for _, x := range extra {
			_, c := x(e)
			cells = append(cells, c)
		}
		t.row(cells...)
	}
	return t.flush()
}
