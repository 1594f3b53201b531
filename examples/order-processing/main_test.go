package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// TestMain lets the demo start this test binary as its node process.
func TestMain(m *testing.M) {
	if node := os.Getenv(envNode); node != "" {
		os.Exit(runNode(node, os.Getenv(envDSN), &lockedWriter{w: os.Stdout}))
	}
	os.Exit(m.Run())
}

// TestDemo runs the whole demo, node-1 killed and all, and checks its exit
// status and the final tables.
func TestDemo(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			dsn := "sqlite://" + t.TempDir() + "/orders.db"
			if dialect == testutil.Postgres {
				dsn = testutil.PostgresSchemaDSN(t)
			}
			var out bytes.Buffer
			code := run([]string{"-dsn", dsn, "-orders", "4"}, &out, &out)
			require.Equal(t, 0, code, out.String())
			require.Contains(t, out.String(), "*** SIGKILL node-")
			require.Contains(t, out.String(), "*** SIGTERM node-")
			require.Contains(t, out.String(), " has exited")
			require.Contains(t, out.String(), "node-2  order-")
			require.Contains(t, out.String(), "claimed it (version")
			require.Contains(t, out.String(), "parked, waiting for the approval signal")

			ctx := context.Background()
			store, err := repository.Open(ctx, dsn)
			require.NoError(t, err)
			defer store.Close()
			db := store.DB()
			for _, id := range []string{"order-1", "order-2", "order-3", "order-4"} {
				e, err := store.GetExecution(ctx, id)
				require.NoError(t, err)
				require.Equal(t, models.ExecutionCompleted, e.Status, id)
			}
			count := func(table, where string) int64 {
				var n int64
				require.NoError(t, db.Table(table).Where(where).Count(&n).Error)
				return n
			}
			require.EqualValues(t, 4, count("demo_payments", "1 = 1"), "one payment per order")
			require.EqualValues(t, 1, count("demo_payments", "refunded = 1"), "the unapproved order was refunded")
			require.EqualValues(t, 3, count("demo_shipments", "1 = 1"), "every approved order shipped once")
			require.EqualValues(t, 1, count("demo_reservations", "released = 1"), "the cancelled order's stock was released")
			var dup int64
			require.NoError(t, db.Raw(`SELECT COUNT(*) FROM (SELECT idempotency_key FROM demo_payments GROUP BY idempotency_key HAVING COUNT(*) > 1) d`).Scan(&dup).Error)
			require.Zero(t, dup)
		})
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.Equal(t, 2, run([]string{"-orders", "0"}, &out, &out))
	require.Equal(t, 2, run([]string{"-nope"}, &out, &out))
}

// TestKeep: -keep (or ORDER_DEMO_KEEP=1) keeps the demo's SQLite file and
// says where it is; without it the file is gone.
func TestKeep(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the demo's temporary directory goes here
	var out bytes.Buffer
	require.Equal(t, 0, run([]string{"-keep", "-orders", "2"}, &out, &out), out.String())
	_, kept, ok := strings.Cut(out.String(), "The database is kept: sqlite://")
	require.True(t, ok, out.String())
	path, _, _ := strings.Cut(kept, "\n")
	require.FileExists(t, path)
	require.True(t, strings.HasPrefix(path, tmp), path)
	require.Contains(t, out.String(), "Look at it with: WORKFLOW_DSN=sqlite://"+path+" workflowctl list\n")

	store, err := repository.Open(context.Background(), "sqlite://"+path)
	require.NoError(t, err)
	defer store.Close()
	e, err := store.GetExecution(context.Background(), "order-1")
	require.NoError(t, err)
	require.Equal(t, models.ExecutionCompleted, e.Status)

	t.Setenv(envKeep, "1")
	out.Reset()
	require.Equal(t, 0, run([]string{"-orders", "1"}, &out, &out), out.String())
	require.Contains(t, out.String(), "The database is kept: sqlite://"+tmp)

	t.Setenv(envKeep, "")
	out.Reset()
	require.Equal(t, 0, run([]string{"-orders", "1"}, &out, &out), out.String())
	require.NotContains(t, out.String(), "The database is kept")
	entries, err := os.ReadDir(tmp)
	require.NoError(t, err)
	require.Len(t, entries, 2, "only the kept ones remain")
}
