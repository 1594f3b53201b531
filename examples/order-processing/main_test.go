package main

import (
	"bytes"
	"context"
	"os"
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
