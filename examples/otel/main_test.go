package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRun runs the example with a deadline and checks that it printed the
// spans of the run, of each step attempt and of the sleep, and the metrics.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out))
	for _, want := range []string{
		`"Name": "run order"`, `"Name": "step reserve"`, `"Name": "step charge"`, `"Name": "sleep cool-off"`,
		`"Name": "step ship"`, `"Name": "POST /orders"`, `"Key": "workflow.execution.id"`,
		"result: shipped after P-42-1999",
		"workflow.executions.finished{workflow.definition.id=order,workflow.definition.version=v1,workflow.execution.status=COMPLETED} = 1",
		"workflow.steps{workflow.definition.id=order,workflow.definition.version=v1,workflow.step.status=RETRYING} = 1",
		"workflow.step.duration{",
	} {
		require.Contains(t, out.String(), want)
	}
}
