package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// BenchmarkWorkflows runs b.N workflows of three steps, C at a time (C
// clients each starting one and awaiting it), and reports workflows/s,
// steps/s and SQL statements per step, all of them, heartbeats and sweeps
// included (countedStorage). BenchmarkBaseline issues the same number of single-row
// UPDATE transactions as there are steps, C at a time, straight through the
// same driver: the physical ceiling to compare steps/s with. Run both with
// `make bench` (PostgreSQL when WORKFLOW_TEST_POSTGRES_DSN is set).

func benchStorage(b *testing.B, dialect string, conns int) *repository.Storage {
	b.Helper()
	s, _ := countedStorage(b, dialect, conns)
	return s
}

// countedStorage is a fresh storage and a count of the statements it sends
// from then on: on SQLite every statement goes through GORM (BEGIN and
// COMMIT not counted); on PostgreSQL the checkpoints run on pgx itself, so
// pgx counts what it sends (simple-protocol BEGIN and COMMIT included).
func countedStorage(b *testing.B, dialect string, conns int) (*repository.Storage, *atomic.Int64) {
	b.Helper()
	ctx := context.Background()
	if dialect == testutil.SQLite {
		// A file, as in production: the in-memory store has no fsync to pay.
		s, err := repository.NewSQLite(ctx, "sqlite://"+b.TempDir()+"/bench.db", repository.WithMaxOpenConns(conns))
		require.NoError(b, err)
		b.Cleanup(func() { _ = s.Close() })
		return s, testutil.CountStatements(b, s.DB())
	}
	cfg, err := pgx.ParseConfig(testutil.PostgresSchemaDSN(b))
	require.NoError(b, err)
	var sent atomic.Int64
	cfg.Tracer = statementCounter{&sent}
	pool := stdlib.OpenDB(*cfg)
	pool.SetMaxOpenConns(conns)
	pool.SetMaxIdleConns(conns)
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: pool}), &gorm.Config{Logger: logger.Discard})
	require.NoError(b, err)
	s, err := repository.New(ctx, db)
	require.NoError(b, err)
	b.Cleanup(func() { _ = s.Close(); _ = pool.Close() })
	sent.Store(0) // the migrations are not the workload's
	return s, &sent
}

// statementCounter counts the statements pgx sends.
type statementCounter struct{ n *atomic.Int64 }

func (c statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

var benchConcurrency = []int{1, 16}

func BenchmarkWorkflows(b *testing.B) {
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		for _, c := range benchConcurrency {
			b.Run(fmt.Sprintf("%s/C=%d", dialect, c), func(b *testing.B) {
				s, stmts := countedStorage(b, dialect, c+4)
				e := engine.New(s, engine.Config{NodeID: "bench", MaxConcurrent: c, PollInterval: 10 * time.Millisecond})
				require.NoError(b, e.Register(engine.Dynamic(def("bench"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
					for _, step := range []string{"a", "b", "c"} {
						if _, err := engine.Step(ctx, step, func(context.Context) (int, error) { return 1, nil }); err != nil {
							return nil, err
						}
					}
					return nil, nil
				})))
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- e.Run(ctx) }()
				defer func() { cancel(); require.NoError(b, <-done) }()

				// C clients, each starting a workflow and awaiting it, until b.N ran.
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				before := stmts.Load() // Run's start-up (its node row, a first sweep) is not the workload's
				start := time.Now()
				for range c {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							id, err := e.Start(ctx, "bench", "v1", nil)
							if err != nil {
								b.Error(err)
								return
							}
							exec, err := e.Await(ctx, id)
							if err != nil || exec.Status != models.ExecutionCompleted {
								b.Errorf("workflow %s: %v %v", id, exec, err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				sent := stmts.Load() - before
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "workflows/s")
				b.ReportMetric(float64(3*b.N)/elapsed.Seconds(), "steps/s")
				b.ReportMetric(float64(sent)/float64(3*b.N), "stmts/step")
			})
		}
	}
}

func BenchmarkBaseline(b *testing.B) {
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		for _, c := range benchConcurrency {
			b.Run(fmt.Sprintf("%s/C=%d", dialect, c), func(b *testing.B) {
				s := benchStorage(b, dialect, c+4)
				db := s.DB()
				require.NoError(b, db.Exec(`CREATE TABLE baseline (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)`).Error)
				for i := range c {
					require.NoError(b, db.Exec(`INSERT INTO baseline (id, n) VALUES (?, 0)`, i).Error)
				}
				txs := 3 * b.N // one per workflow step
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for w := range c {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(txs) {
							err := db.Transaction(func(tx *gorm.DB) error {
								return tx.Exec(`UPDATE baseline SET n = n + 1 WHERE id = ?`, w).Error
							})
							if err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(txs)/elapsed.Seconds(), "tx/s")
			})
		}
	}
}
