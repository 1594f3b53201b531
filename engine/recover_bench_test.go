package engine_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// BenchmarkRecoverStale: a node starts beside STALE_N (default 10,000)
// stale executions of a dead node (one step each) and takes them all over:
// it reports how long until the first is resumed and until every one
// completed, and the claims per second. Run it alone:
//
//	go test -run '^$' -bench RecoverStale -benchtime 1x ./engine/
func BenchmarkRecoverStale(b *testing.B) {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("STALE_N")); err == nil && v > 0 {
		n = v
	}
	one := engine.Define("stale-one", "v1", func(ctx *engine.Context, _ int) (int, error) {
		return engine.Step(ctx, "only", func(context.Context) (int, error) { return 1, nil })
	})
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		b.Run(dialect, func(b *testing.B) {
			for range b.N {
				s := benchStorage(b, dialect, 16)
				ctx := context.Background()
				def := models.WorkflowDefinition{ID: "stale-one", Version: "v1", Name: "stale-one"}
				require.NoError(b, s.SaveDefinition(ctx, &def))
				require.NoError(b, s.Transaction(ctx, func(tx *repository.Storage) error {
					for range n {
						if _, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "stale-one", DefinitionVersion: "v1", Input: 1, NodeID: "dead"}); err != nil {
							return err
						}
					}
					return nil
				}))
				old := time.Now().UTC().Add(-time.Hour)
				require.NoError(b, s.DB().Model(&models.WorkflowExecution{}).Where("node_id = ?", "dead").
					UpdateColumn("last_heartbeat", old).Error)

				e := engine.New(s, engine.Config{NodeID: "survivor"})
				require.NoError(b, e.Register(one))
				started := time.Now()
				runCtx, stop := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- e.Run(runCtx) }()
				var first time.Duration
				for {
					var left int64
					require.NoError(b, s.DB().Model(&models.WorkflowExecution{}).Where("status <> ?", models.ExecutionCompleted).Count(&left).Error)
					if first == 0 && left < int64(n) {
						first = time.Since(started)
					}
					if left == 0 {
						break
					}
					require.Less(b, time.Since(started), 30*time.Minute)
					time.Sleep(20 * time.Millisecond)
				}
				all := time.Since(started)
				stop()
				require.NoError(b, <-done)
				b.ReportMetric(first.Seconds(), "s-first-done")
				b.ReportMetric(all.Seconds(), "s-all-done")
				b.ReportMetric(float64(n)/all.Seconds(), "executions/s")
			}
		})
	}
}
