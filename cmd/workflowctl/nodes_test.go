package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func TestNodes(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		out := c.ok("nodes")
		require.Regexp(t, `^NODE\s+STARTED\s+LAST SEEN\s+AGO\s+EXECUTIONS\n`, out)
		require.Regexp(t, `(?m)^node-a\s+\S+ \S+\s+\S+ \S+\s+\S+\s+0$`, out)

		var doc struct {
			Nodes []manage.NodeInfo `json:"nodes"`
		}
		require.NoError(t, json.Unmarshal([]byte(c.ok("nodes", "-o", "json")), &doc))
		require.Len(t, doc.Nodes, 1)
		require.Equal(t, "node-a", doc.Nodes[0].NodeID)
		require.False(t, doc.Nodes[0].LastSeen.IsZero())
		require.False(t, doc.Nodes[0].LastSeen.Before(doc.Nodes[0].StartedAt))

		c.fails(exitUsage, `unexpected argument "node-a"`, "nodes", "node-a")
	})
}

func TestNodes_None(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	c.manager = &fakeManager{}
	require.Equal(t, "no nodes\n", c.ok("nodes"))
	require.JSONEq(t, `{"nodes": []}`, c.ok("nodes", "-o", "json"))
}

func TestStale(t *testing.T) {
	forEachFixture(t, func(t *testing.T, f fixture, c *cli) {
		require.Equal(t, "no execution has gone 10s without a heartbeat\n", c.ok("stale"))
		require.JSONEq(t, `{"threshold": "1h0m0s", "executions": []}`, c.ok("stale", "--threshold", "1h", "-o", "json"))

		// An execution whose owner never beats again.
		_, err := f.store.CreateExecution(t.Context(), repository.NewExecution{
			ExecutionID: "order-orphan", DefinitionID: "order", DefinitionVersion: "v1", Input: order{ID: "order-orphan"}, NodeID: "node-dead",
		})
		require.NoError(t, err)
		var out string
		require.Eventually(t, func() bool {
			out = c.ok("stale", "--threshold", "1ms")
			return strings.Contains(out, "order-orphan")
		}, 10*time.Second, 10*time.Millisecond)
		require.Regexp(t, `^ID\s+DEFINITION\s+STATUS\s+STEP\s+NODE\s+STARTED\s+DURATION\s+LAST HEARTBEAT\n`, out)
		require.Regexp(t, `(?m)^order-orphan\s+order@v1\s+PENDING\s+-\s+node-dead\s+-\s+-\s+\S+ \S+$`, out)
		require.NotContains(t, out, f.waiting, "parked for an hour: not due")

		var doc struct {
			Threshold  string                     `json:"threshold"`
			Executions []models.WorkflowExecution `json:"executions"`
		}
		require.NoError(t, json.Unmarshal([]byte(c.ok("stale", "--threshold", "1ms", "-o", "json")), &doc))
		require.Equal(t, "1ms", doc.Threshold)
		require.Len(t, doc.Executions, 1)
		require.Equal(t, "node-dead", *doc.Executions[0].NodeID)

		c.fails(exitUsage, `invalid argument "never" for "--threshold" flag`, "stale", "--threshold", "never")
		c.fails(exitUsage, `invalid argument "-1s" for "--threshold" flag`, "stale", "--threshold", "-1s")
	})
}
