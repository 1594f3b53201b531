package repository_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/migrations"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Adversary 15: nodes record the definitions they run
// (workflow_node_definitions, ServeDefinitions) and Backlog counts only the
// live nodes that could run the claim's work; on SQLite, in a transaction of
// the library's own, the previous step's outcome is written without its own
// owner check, the execution's fenced write that follows it deciding, and the
// transaction (or the shared one) rolls back when that write misses.

func adv15Ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// adv15Served is what node recorded, as sorted "id@version".
func adv15Served(t *testing.T, db *gorm.DB, node string) []string {
	t.Helper()
	var rows []struct{ DefinitionID, DefinitionVersion string }
	require.NoError(t, db.Table("workflow_node_definitions").Select("definition_id, definition_version").
		Where("node_id = ?", node).Scan(&rows).Error)
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.DefinitionID+"@"+r.DefinitionVersion)
	}
	slices.Sort(out)
	return out
}

func adv15Keys(defs []repository.DefinitionKey) []string {
	out := make([]string, 0, len(defs))
	for _, d := range defs {
		if !slices.Contains(out, d.ID+"@"+d.Version) {
			out = append(out, d.ID+"@"+d.Version)
		}
	}
	slices.Sort(out)
	return out
}

// adv15Live is Backlog's count of live nodes for a claim of defs, with one
// execution of each of defs waiting (Backlog counts the nodes that could run
// some of the waiting work).
func adv15Live(t *testing.T, s *repository.Storage, defs ...repository.DefinitionKey) int {
	t.Helper()
	ctx := context.Background()
	for _, d := range defs {
		due, err := s.ListExecutions(ctx, repository.ExecutionFilter{DefinitionID: d.ID, DefinitionVersion: d.Version,
			Statuses: []models.ExecutionStatus{models.ExecutionPending}, Limit: 1})
		require.NoError(t, err)
		if len(due) > 0 {
			continue
		}
		_, err = s.CreateExecution(ctx, repository.NewExecution{DefinitionID: d.ID, DefinitionVersion: d.Version,
			Definition: &models.WorkflowDefinition{ID: d.ID, Version: d.Version, Name: "adv15"}})
		require.NoError(t, err)
	}
	_, n, err := s.Backlog(ctx, repository.ClaimParams{NodeID: "asker", StaleThreshold: time.Minute, Definitions: defs, Limit: 4})
	require.NoError(t, err)
	return n
}

// adv15Contention: the only errors concurrent writers may meet, a lost race
// or SQLite's busy beyond the retries.
func adv15Contention(err error) bool {
	if err == nil || errors.Is(err, repository.ErrConcurrentUpdate) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "database is locked") || strings.Contains(msg, "SQLITE_BUSY")
}

// TestAdversary15_ServeDefinitionsRacingAnOpenTransaction: one node's
// definitions are recorded in a caller's transaction that stays open while
// the same node records another set outside it (two processes with one node
// id, or a restart overlapping the old process). When both are done the
// node has exactly one of the two sets, never their union, and neither call
// fails with anything but contention. PostgreSQL (READ COMMITTED) is the
// case to watch: the DELETE of the second call does not see (nor wait for)
// rows the first inserted and has not committed yet.
func TestAdversary15_ServeDefinitionsRacingAnOpenTransaction(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv15Ctx(t)
		k := func(id string) repository.DefinitionKey { return repository.DefinitionKey{ID: id, Version: "v1"} }
		for _, variant := range []struct {
			name   string
			before []repository.DefinitionKey // recorded first, committed
			first  []repository.DefinitionKey // in the open transaction
			second []repository.DefinitionKey // outside it, meanwhile
		}{
			{"fresh-disjoint", nil, []repository.DefinitionKey{k("b1"), k("b2")}, []repository.DefinitionKey{k("c")}},
			{"replacing-disjoint", []repository.DefinitionKey{k("a")}, []repository.DefinitionKey{k("b1"), k("b2")}, []repository.DefinitionKey{k("c")}},
			{"fresh-overlapping", nil, []repository.DefinitionKey{k("b1"), k("b2")}, []repository.DefinitionKey{k("b2"), k("c")}},
			{"to-every-definition", []repository.DefinitionKey{k("a")}, nil, []repository.DefinitionKey{k("c")}},
		} {
			t.Run(variant.name, func(t *testing.T) {
				node := "node-" + variant.name
				require.NoError(t, s.BeatNode(ctx, node))
				require.NoError(t, s.ServeDefinitions(ctx, node, variant.before))

				inTx := make(chan int64, 1) // the transaction's backend pid (0 on SQLite)
				release := make(chan struct{})
				firstDone := make(chan error, 1)
				go func() {
					firstDone <- s.Transaction(ctx, func(tx *repository.Storage) error {
						if err := tx.ServeDefinitions(ctx, node, variant.first); err != nil {
							inTx <- 0
							return err
						}
						var pid int64
						if tx.Dialect() == "postgres" {
							if err := tx.DB().Raw(`SELECT pg_backend_pid()`).Scan(&pid).Error; err != nil {
								inTx <- 0
								return err
							}
						}
						inTx <- pid
						<-release
						return nil
					})
				}()
				pid := <-inTx
				secondDone := make(chan error, 1)
				go func() { secondDone <- s.ServeDefinitions(ctx, node, variant.second) }()
				// On PostgreSQL let the second call finish, or block on the open
				// transaction, before that commits; SQLite serializes writers.
				var second error
				gotSecond := false
				if s.Dialect() == "postgres" {
					deadline := time.Now().Add(10 * time.Second)
				wait:
					for time.Now().Before(deadline) {
						select {
						case second = <-secondDone:
							gotSecond = true
							break wait
						default:
						}
						var n int64
						require.NoError(t, s.DB().Raw(`SELECT count(*) FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid))`, pid).Scan(&n).Error)
						if n > 0 {
							break
						}
						time.Sleep(5 * time.Millisecond)
					}
				}
				close(release)
				first := <-firstDone
				if !gotSecond {
					second = <-secondDone
				}
				require.NoError(t, first, variant.name)
				require.True(t, adv15Contention(second), "%s: the second call failed with %v", variant.name, second)
				got := adv15Served(t, s.DB(), node)
				if second != nil {
					require.Equal(t, adv15Keys(variant.first), got, variant.name)
					return
				}
				require.True(t, slices.Equal(got, adv15Keys(variant.first)) || slices.Equal(got, adv15Keys(variant.second)),
					"%s: node %s runs %v, a mix of %v and %v", variant.name, node, got, adv15Keys(variant.first), adv15Keys(variant.second))
			})
		}
	})
}

// TestAdversary15_ServeDefinitionsFromManyGoroutines: eight goroutines
// record eight different sets (overlapping, and one empty: every
// definition) for one node, four rounds: after each round the node has
// exactly one of the sets, and no call failed with anything but contention.
func TestAdversary15_ServeDefinitionsFromManyGoroutines(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv15Ctx(t)
		require.NoError(t, s.BeatNode(ctx, "shared-id"))
		sets := make([][]repository.DefinitionKey, 8)
		for i := range sets {
			if i == 0 {
				continue // every definition
			}
			sets[i] = []repository.DefinitionKey{{ID: "shared", Version: "v1"}, {ID: fmt.Sprint("own", i), Version: "v1"}, {ID: fmt.Sprint("own", i), Version: "v2"}}
		}
		for round := range 4 {
			var wg sync.WaitGroup
			errs := make([]error, len(sets))
			start := make(chan struct{})
			for i := range sets {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					errs[i] = s.ServeDefinitions(ctx, "shared-id", sets[i])
				}()
			}
			close(start)
			wg.Wait()
			var ok []int
			for i, err := range errs {
				require.True(t, adv15Contention(err), "round %d, set %d: %v", round, i, err)
				if err == nil {
					ok = append(ok, i)
				}
			}
			got := adv15Served(t, s.DB(), "shared-id")
			one := false
			for _, i := range ok {
				one = one || slices.Equal(got, adv15Keys(sets[i]))
			}
			require.True(t, one, "round %d: the node runs %v, none of the sets recorded", round, got)
			require.Equal(t, 1, adv15Live(t, s, repository.DefinitionKey{ID: "shared", Version: "v1"}), "round %d", round)
		}
	})
}

// TestAdversary15_ServeDefinitionsOddKeys: definition keys and node ids with
// quotes, backslashes, LIKE wildcards, unicode, case and space variants and
// 255 bytes are recorded as they are and matched exactly by Backlog; 256
// bytes are refused and change nothing.
func TestAdversary15_ServeDefinitionsOddKeys(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv15Ctx(t)
		long := strings.Repeat("é", 127) + "x" // 255 bytes
		odd := []repository.DefinitionKey{
			{ID: `it's "quoted"`, Version: `v'1`},
			{ID: `back\slash`, Version: `\`},
			{ID: `%`, Version: `_`},
			{ID: "漢字🙂", Version: "版本"},
			{ID: long, Version: strings.Repeat("z", 255)},
			{ID: "Order", Version: "v1"},
			{ID: "order ", Version: "v1"},
			{ID: "e\u0301", Version: "v1"}, // é decomposed
		}
		nodes := []string{`n'ode "1" 🙂`, strings.Repeat("ñ", 127) + "n", `%`}
		for i, n := range nodes {
			require.NoError(t, s.BeatNode(ctx, n))
			require.NoError(t, s.ServeDefinitions(ctx, n, odd[i:i+3]))
		}
		for i, n := range nodes {
			require.Equal(t, adv15Keys(odd[i:i+3]), adv15Served(t, s.DB(), n), "node %q", n)
		}
		for i, d := range odd {
			want := 0
			for j := range nodes {
				if i >= j && i < j+3 {
					want++
				}
			}
			require.Equal(t, want, adv15Live(t, s, d), "definition %q@%q", d.ID, d.Version)
		}
		for _, d := range []repository.DefinitionKey{{ID: "order", Version: "v1"}, {ID: "é", Version: "v1"}, {ID: "it's", Version: `v'1`}, {ID: "x", Version: "v1"}} {
			require.Zero(t, adv15Live(t, s, d), "definition %q@%q matched a node that does not run it", d.ID, d.Version)
		}
		require.Equal(t, 3, adv15Live(t, s), "a claim of every definition counts every live node")

		before := adv15Served(t, s.DB(), nodes[0])
		for _, bad := range []repository.DefinitionKey{{ID: long + "y", Version: "v1"}, {ID: "ok", Version: strings.Repeat("z", 256)}, {ID: "nul\x00", Version: "v1"}, {ID: " ", Version: "v1"}, {ID: "ok", Version: "\xff"}} {
			err := s.ServeDefinitions(ctx, nodes[0], []repository.DefinitionKey{{ID: "fine", Version: "v1"}, bad})
			require.ErrorIs(t, err, repository.ErrInvalidArgument, "%q@%q", bad.ID, bad.Version)
		}
		require.ErrorIs(t, s.ServeDefinitions(ctx, strings.Repeat("n", 256), nil), repository.ErrInvalidArgument)
		require.Equal(t, before, adv15Served(t, s.DB(), nodes[0]), "a refused call changed what the node runs")
	})
}

// TestAdversary15_ServeDefinitionsInTransactions: in Storage.Transaction the
// definitions commit or roll back with the caller's rows, Backlog inside it
// sees them, and a nested Transaction commits with the outer one; on
// InTransaction's storage ServeDefinitions records nothing (as documented)
// and Backlog still answers.
func TestAdversary15_ServeDefinitionsInTransactions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv15Ctx(t)
		order, invoice := repository.DefinitionKey{ID: "order", Version: "v1"}, repository.DefinitionKey{ID: "invoice", Version: "v1"}
		for _, n := range []string{"a", "b"} {
			require.NoError(t, s.BeatNode(ctx, n))
		}
		require.NoError(t, s.ServeDefinitions(ctx, "a", []repository.DefinitionKey{order}))

		// Rolled back: what a ran stays.
		boom := errors.New("adv15: roll back")
		err := s.Transaction(ctx, func(tx *repository.Storage) error {
			require.NoError(t, tx.ServeDefinitions(ctx, "a", []repository.DefinitionKey{invoice}))
			require.Equal(t, []string{"invoice@v1"}, adv15Served(t, tx.DB(), "a"))
			_, live, err := tx.Backlog(ctx, repository.ClaimParams{NodeID: "a", StaleThreshold: time.Minute, Definitions: []repository.DefinitionKey{order}, Limit: 4})
			require.NoError(t, err)
			require.Equal(t, 1, live, "inside the transaction a runs invoices only: b alone could take orders")
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.Equal(t, []string{"order@v1"}, adv15Served(t, s.DB(), "a"))
		require.Equal(t, 2, adv15Live(t, s, order))
		require.Equal(t, 1, adv15Live(t, s, invoice))

		// Committed, nested.
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			return tx.Transaction(ctx, func(inner *repository.Storage) error {
				if err := inner.ServeDefinitions(ctx, "b", []repository.DefinitionKey{invoice, invoice}); err != nil {
					return err
				}
				return inner.ServeDefinitions(ctx, "a", nil)
			})
		}))
		require.Equal(t, []string{"invoice@v1"}, adv15Served(t, s.DB(), "b"))
		require.Empty(t, adv15Served(t, s.DB(), "a"))
		require.Equal(t, 1, adv15Live(t, s, order))
		require.Equal(t, 2, adv15Live(t, s, invoice))

		// A refused call inside a transaction that then commits: nothing of
		// it, the rest of the transaction kept.
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			require.ErrorIs(t, tx.ServeDefinitions(ctx, "b", []repository.DefinitionKey{order, {ID: "", Version: "v1"}}), repository.ErrInvalidArgument)
			return tx.BeatNode(ctx, "c")
		}))
		require.Equal(t, []string{"invoice@v1"}, adv15Served(t, s.DB(), "b"))

		// InTransaction: records nothing, Backlog answers.
		require.NoError(t, s.DB().Transaction(func(gtx *gorm.DB) error {
			store, err := repository.InTransaction(gtx)
			require.NoError(t, err)
			require.NoError(t, store.ServeDefinitions(ctx, "b", []repository.DefinitionKey{order}))
			require.ErrorIs(t, store.ServeDefinitions(ctx, "", nil), repository.ErrInvalidArgument)
			_, live, err := store.Backlog(ctx, repository.ClaimParams{NodeID: "a", StaleThreshold: time.Minute, Definitions: []repository.DefinitionKey{order}, Limit: 4})
			require.NoError(t, err)
			require.GreaterOrEqual(t, live, 2)
			_, err = store.PruneNodes(ctx)
			return err
		}))
		require.Equal(t, []string{"invoice@v1"}, adv15Served(t, s.DB(), "b"))
		require.Equal(t, 2, adv15Live(t, s, order), "a (every definition) and c")
	})
}

// TestAdversary15_Migration013RollbackAndReapplyWithRows: with executions,
// steps, nodes and their definitions stored, 013 rolls back (its table and
// rows go), a storage opened on the database as it then is counts every
// live node and records nothing, 013 applies again (an empty table) and a
// storage opened then records and counts by definition again; Backlog and
// PruneNodes never fail.
func TestAdversary15_Migration013RollbackAndReapplyWithRows(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv15Ctx(t)
		order, invoice := repository.DefinitionKey{ID: "order", Version: "v1"}, repository.DefinitionKey{ID: "invoice", Version: "v1"}
		x := create(t, s, repository.NewExecution{NodeID: "orders", Running: true})
		_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "orders", Attempt: 1})
		require.NoError(t, err)
		create(t, s, repository.NewExecution{})
		for _, n := range []string{"orders", "invoices"} {
			require.NoError(t, s.BeatNode(ctx, n))
		}
		require.NoError(t, s.ServeDefinitions(ctx, "orders", []repository.DefinitionKey{order}))
		require.NoError(t, s.ServeDefinitions(ctx, "invoices", []repository.DefinitionKey{invoice}))
		require.Equal(t, 1, adv15Live(t, s, order))

		db := s.DB()
		for round := range 2 {
			var last []string
			require.NoError(t, db.Table(migrations.TableName).Order("id").Pluck("id", &last).Error)
			require.Equal(t, migrations.IDServedDefinitions, last[len(last)-1])
			require.NoError(t, migrations.RollbackLast(ctx, db))
			require.False(t, db.Migrator().HasTable("workflow_node_definitions"), "round %d", round)

			old, err := repository.New(ctx, db, repository.WithoutMigrations())
			require.NoError(t, err)
			require.NoError(t, old.ServeDefinitions(ctx, "orders", []repository.DefinitionKey{order}))
			claimable, live, err := old.Backlog(ctx, repository.ClaimParams{NodeID: "orders", StaleThreshold: time.Minute, Definitions: []repository.DefinitionKey{order}, Limit: 4})
			require.NoError(t, err)
			require.Equal(t, 2, live, "round %d: without 013 every live node counts", round)
			require.Equal(t, 1, claimable)
			_, err = old.PruneNodes(ctx)
			require.NoError(t, err)

			require.NoError(t, migrations.Migrate(ctx, db))
			require.True(t, db.Migrator().HasTable("workflow_node_definitions"))
			require.Empty(t, adv15Served(t, db, "orders"), "re-applied 013 starts empty")
			again, err := repository.New(ctx, db, repository.WithoutMigrations())
			require.NoError(t, err)
			require.Equal(t, 2, adv15Live(t, again, order))
			require.NoError(t, again.ServeDefinitions(ctx, "orders", []repository.DefinitionKey{order}))
			require.NoError(t, again.ServeDefinitions(ctx, "invoices", []repository.DefinitionKey{invoice}))
			require.Equal(t, 1, adv15Live(t, again, order))
			require.Equal(t, 1, adv15Live(t, again, invoice))
			require.Equal(t, 2, adv15Live(t, again, order, invoice))
		}
		require.Len(t, history(t, s, x.ExecutionID), 1)
	})
}

// adv15Step is what a step execution holds that an outcome writes.
type adv15Step struct {
	ID, StepID, Status string
	Output, Error      string
	Completed          bool
}

// adv15Steps is every step execution of id, in order.
func adv15Steps(t *testing.T, s *repository.Storage, id string) []adv15Step {
	t.Helper()
	var out []adv15Step
	for _, h := range history(t, s, id) {
		st := adv15Step{ID: h.StepExecutionID, StepID: h.StepID, Status: string(h.Status), Completed: h.CompletedAt != nil}
		st.Output = string(h.Output)
		if h.Error != nil {
			st.Error = *h.Error
		}
		out = append(out, st)
	}
	return out
}

// adv15Row is what an execution holds that an end or a step start writes.
type adv15Row struct {
	Status, Node, Step, Output string
	Version                    int64
	Completed                  bool
}

func adv15Exec(t *testing.T, s *repository.Storage, id string) adv15Row {
	t.Helper()
	x, err := s.GetExecution(context.Background(), id)
	require.NoError(t, err)
	r := adv15Row{Status: string(x.Status), Version: int64(x.Version), Completed: x.CompletedAt != nil}
	if x.NodeID != nil {
		r.Node = *x.NodeID
	}
	if x.CurrentStepID != nil {
		r.Step = *x.CurrentStepID
	}
	r.Output = string(x.Output)
	return r
}

// adv15Running makes an execution of node with step "a" running.
func adv15Running(t *testing.T, s *repository.Storage, node string) (string, string) {
	t.Helper()
	x := create(t, s, repository.NewExecution{NodeID: node, Running: true})
	st, err := s.StartStep(context.Background(), repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: node, Attempt: 1})
	require.NoError(t, err)
	return x.ExecutionID, st.StepExecutionID
}

func adv15Done(id, stepID, node, output string) *repository.FinishStepParams {
	return &repository.FinishStepParams{ExecutionID: id, StepExecutionID: stepID, NodeID: node, Status: models.StepCompleted, Output: output}
}

// adv15Op is a checkpoint of node n1 that carries the previous step's
// outcome: a step start or an end.
type adv15Op func(s *repository.Storage, id, prevStep string) error

func adv15Ops() map[string]adv15Op {
	ctx := context.Background()
	return map[string]adv15Op{
		"start": func(s *repository.Storage, id, prev string) error {
			_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1, Previous: adv15Done(id, prev, "n1", "by-n1")})
			return err
		},
		"finish": func(s *repository.Storage, id, prev string) error {
			return s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n1", Status: models.ExecutionCompleted, Output: "end-by-n1", Previous: adv15Done(id, prev, "n1", "by-n1")})
		},
	}
}

// adv15Takeovers take an execution of n1 (step a running) from it.
func adv15Takeovers() map[string]func(t *testing.T, s *repository.Storage, id, step string) {
	ctx := context.Background()
	return map[string]func(t *testing.T, s *repository.Storage, id, step string){
		"transfer": func(t *testing.T, s *repository.Storage, id, _ string) {
			require.NoError(t, s.TransferOwnership(ctx, id, "n2", adv15Exec(t, s, id).Version))
		},
		"release": func(t *testing.T, s *repository.Storage, id, _ string) {
			require.NoError(t, s.ReleaseExecution(ctx, id, "n1"))
		},
		"park": func(t *testing.T, s *repository.Storage, id, _ string) {
			require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: id, NodeID: "n1", For: time.Hour}))
		},
		"cancel": func(t *testing.T, s *repository.Storage, id, _ string) {
			require.NoError(t, repository.CancelExecution(ctx, s, id))
		},
		"claimed-stale": func(t *testing.T, s *repository.Storage, id, _ string) {
			ageHeartbeat(t, s, id, time.Hour)
			claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 100})
			require.NoError(t, err)
			ids := make([]string, len(claimed))
			for i, c := range claimed {
				ids[i] = c.ExecutionID
			}
			require.Contains(t, ids, id)
		},
		"finished-by-n2": func(t *testing.T, s *repository.Storage, id, step string) {
			require.NoError(t, s.TransferOwnership(ctx, id, "n2", adv15Exec(t, s, id).Version))
			require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n2", Status: models.ExecutionCompleted, Output: "end-by-n2",
				Previous: adv15Done(id, step, "n2", "by-n2")}))
		},
		"n2-started-next": func(t *testing.T, s *repository.Storage, id, step string) {
			require.NoError(t, s.TransferOwnership(ctx, id, "n2", adv15Exec(t, s, id).Version))
			_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n2", Attempt: 1, Previous: adv15Done(id, step, "n2", "by-n2")})
			require.NoError(t, err)
		},
	}
}

// adv15Count is how many rows the execution and step tables hold.
func adv15Count(t *testing.T, s *repository.Storage) [2]int64 {
	t.Helper()
	var out [2]int64
	for i, table := range []string{"workflow_executions", "step_executions"} {
		require.NoError(t, s.DB().Raw("SELECT count(*) FROM "+table).Scan(&out[i]).Error)
	}
	return out
}

// adv15Refused runs call alone on s ("alone") or inside a transaction of s
// that then commits ("transaction"), and requires ErrConcurrentUpdate.
func adv15Refused(t *testing.T, ctx context.Context, s *repository.Storage, mode, what string, call func(*repository.Storage) error) {
	t.Helper()
	if mode == "alone" {
		require.ErrorIs(t, call(s), repository.ErrConcurrentUpdate, what)
		return
	}
	require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
		require.ErrorIs(t, call(tx), repository.ErrConcurrentUpdate, what)
		return nil
	}))
}

// adv15Grouped runs calls while s holds its checkpoints, so that they queue
// in this order and are written as one group, and returns their errors.
func adv15Grouped(t *testing.T, s *repository.Storage, what string, calls []func() error) []error {
	t.Helper()
	release, grouped := repository.HoldCheckpoints(s)
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = call() }()
		if grouped { // queued in this order
			require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == i+1 }, 20*time.Second, time.Millisecond, what)
		}
	}
	release()
	wg.Wait()
	return errs
}

// TestAdversary15_PreviousOutcomeAfterEveryTakeover: after each way an
// execution leaves node n1 (transfer, release, park, cancel, a claim of its
// stale heartbeat, a transfer then n2 ending it or starting the next step
// with its own outcome of the same step), n1's step start and end carrying
// step a's outcome write nothing: not the outcome, not a step, not the end;
// alone, in a caller's transaction that commits, and grouped at each
// position beside an owned step start and an owned end, which are written.
func TestAdversary15_PreviousOutcomeAfterEveryTakeover(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv15Ctx(t)
		for tname, takeOver := range adv15Takeovers() {
			for oname, op := range adv15Ops() {
				for _, mode := range []string{"alone", "transaction", "grouped-0", "grouped-1", "grouped-2"} {
					what := tname + "/" + oname + "/" + mode
					lost, lostStep := adv15Running(t, s, "n1")
					takeOver(t, s, lost, lostStep)
					wantSteps, wantExec := adv15Steps(t, s, lost), adv15Exec(t, s, lost)
					counts := adv15Count(t, s)
					switch mode {
					case "alone", "transaction":
						adv15Refused(t, ctx, s, mode, what, func(st *repository.Storage) error { return op(st, lost, lostStep) })
					default:
						kept, keptStep := adv15Running(t, s, "n1")
						ending, endingStep := adv15Running(t, s, "n1")
						counts = adv15Count(t, s)
						calls := []func() error{
							func() error { return adv15Ops()["start"](s, kept, keptStep) },
							func() error { return adv15Ops()["finish"](s, ending, endingStep) },
						}
						at := int(mode[len(mode)-1] - '0')
						calls = slices.Insert(calls, at, func() error { return op(s, lost, lostStep) })
						errs := adv15Grouped(t, s, what, calls)
						for i, err := range errs {
							if i == at {
								require.ErrorIs(t, err, repository.ErrConcurrentUpdate, what)
							} else {
								require.NoError(t, err, what)
							}
						}
						counts[1]++ // kept's step b
						require.Equal(t, []string{"COMPLETED", "RUNNING"}, []string{adv15Steps(t, s, kept)[0].Status, adv15Steps(t, s, kept)[1].Status}, what)
						require.Equal(t, `"by-n1"`, adv15Steps(t, s, kept)[0].Output, what)
						require.Equal(t, "COMPLETED", adv15Exec(t, s, ending).Status, what)
						require.Equal(t, `"by-n1"`, adv15Steps(t, s, ending)[0].Output, what)
					}
					require.Equal(t, wantSteps, adv15Steps(t, s, lost), "%s: n1's outcome or step written after it lost the execution", what)
					require.Equal(t, wantExec, adv15Exec(t, s, lost), "%s: the execution changed by n1 after it lost it", what)
					require.Equal(t, counts, adv15Count(t, s), what)
				}
			}
		}
	})
}

// TestAdversary15_PreviousOfAnotherExecution: a Previous whose step
// execution id is of another execution (of the same node, or of another
// node) or does not exist writes nothing anywhere, and the start or end
// that carries it is refused: alone, in a caller's transaction and grouped
// beside an owned start.
func TestAdversary15_PreviousOfAnotherExecution(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv15Ctx(t)
		for oname, op := range adv15Ops() {
			for _, mode := range []string{"alone", "transaction", "grouped"} {
				for _, whose := range []string{"same-node", "other-node", "missing"} {
					what := oname + "/" + mode + "/" + whose
					x, _ := adv15Running(t, s, "n1")
					y, yStep := adv15Running(t, s, "n1")
					if whose == "other-node" {
						y, yStep = adv15Running(t, s, "n2")
					}
					if whose == "missing" {
						yStep = "no-such-step-execution"
					}
					wantX, wantY := adv15Steps(t, s, x), adv15Steps(t, s, y)
					wantXExec, wantYExec := adv15Exec(t, s, x), adv15Exec(t, s, y)
					counts := adv15Count(t, s)
					switch mode {
					case "alone", "transaction":
						adv15Refused(t, ctx, s, mode, what, func(st *repository.Storage) error { return op(st, x, yStep) })
					case "grouped":
						kept, keptStep := adv15Running(t, s, "n1")
						counts = adv15Count(t, s)
						errs := adv15Grouped(t, s, what, []func() error{
							func() error { return op(s, x, yStep) },
							func() error { return adv15Ops()["start"](s, kept, keptStep) },
						})
						require.ErrorIs(t, errs[0], repository.ErrConcurrentUpdate, what)
						require.NoError(t, errs[1], what)
						counts[1]++
					}
					require.Equal(t, wantX, adv15Steps(t, s, x), what)
					require.Equal(t, wantY, adv15Steps(t, s, y), "%s: another execution's step was written", what)
					require.Equal(t, wantXExec, adv15Exec(t, s, x), what)
					require.Equal(t, wantYExec, adv15Exec(t, s, y), what)
					require.Equal(t, counts, adv15Count(t, s), what)
				}
			}
		}
	})
}

// TestAdversary15_PreviousRacingTakeovers: 24 executions of n1, each with
// step a running; for each, n1's start of step b (or its end) carrying a's
// outcome races a takeover (transfer to n2, release, cancel, a stale claim
// by n2) from a barrier, all at once so that the checkpoints group. For
// every execution: n1's call succeeded and wrote a's outcome and its step
// (or end), or it failed and a is still running with no outcome and no
// step b, and the execution is not ended by n1.
func TestAdversary15_PreviousRacingTakeovers(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) { adv15Race(t, s, s) })
}

// TestAdversary15_PreviousRacingTakeoversOfAnotherProcess: the same race on
// a SQLite file, the takeovers through a second storage (another process in
// effect: its own pool, no shared group commit).
func TestAdversary15_PreviousRacingTakeoversOfAnotherProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "adv15.db")
	s := adv12SQLite(t, path)
	seedDefinition(t, s, "order", "v1")
	adv15Race(t, s, adv12SQLite(t, path))
}

// adv15Race races n1's checkpoints on s against takeovers on other.
func adv15Race(t *testing.T, s, other *repository.Storage) {
	ctx := adv15Ctx(t)
	kinds := []string{"transfer", "release", "cancel", "claim"}
	for round := range 3 {
		type item struct {
			id, step, kind, op string
			version            int64
			opErr, takeErr     error
		}
		items := make([]*item, 24)
		for i := range items {
			id, step := adv15Running(t, s, "n1")
			op := "start"
			if i%2 == 1 {
				op = "finish"
			}
			items[i] = &item{id: id, step: step, kind: kinds[(i/2)%len(kinds)], op: op, version: adv15Exec(t, s, id).Version}
			if items[i].kind == "claim" {
				ageHeartbeat(t, s, id, time.Hour)
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		ops := adv15Ops()
		for _, it := range items {
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				it.opErr = ops[it.op](s, it.id, it.step)
			}()
			go func() {
				defer wg.Done()
				<-start
				switch it.kind {
				case "transfer":
					it.takeErr = other.TransferOwnership(ctx, it.id, "n2", it.version)
				case "release":
					it.takeErr = other.ReleaseExecution(ctx, it.id, "n1")
				case "cancel":
					it.takeErr = repository.CancelExecution(ctx, other, it.id)
				case "claim":
					_, it.takeErr = other.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 1})
				}
			}()
		}
		close(start)
		wg.Wait()
		for _, it := range items {
			what := fmt.Sprintf("round %d, %s racing %s", round, it.op, it.kind)
			require.True(t, adv15Contention(it.opErr), "%s: %v", what, it.opErr)
			require.True(t, adv15Contention(it.takeErr), "%s: takeover: %v", what, it.takeErr)
			steps, x := adv15Steps(t, s, it.id), adv15Exec(t, s, it.id)
			if it.opErr == nil {
				require.Equal(t, "COMPLETED", steps[0].Status, what)
				require.Equal(t, `"by-n1"`, steps[0].Output, what)
				if it.op == "start" {
					require.Len(t, steps, 2, what)
				} else {
					require.Len(t, steps, 1, what)
					require.Equal(t, `"end-by-n1"`, x.Output, what)
				}
				continue
			}
			require.Len(t, steps, 1, "%s: n1's step b written by a call that failed", what)
			require.Equal(t, "RUNNING", steps[0].Status, "%s: n1's outcome written by a call that failed", what)
			require.Empty(t, steps[0].Output, what)
			require.False(t, steps[0].Completed, what)
			require.NotEqual(t, `"end-by-n1"`, x.Output, what)
			require.NotEqual(t, "COMPLETED", x.Status, what)
		}
		// The claims took stale executions of this round only, or
		// others already ended; nothing more to settle.
	}
}

// TestAdversary15_GroupedOwnersOfOneExecution: in one shared transaction,
// n1's start carrying step a's outcome (n1 lost the execution to n2) and
// n2's start carrying its own outcome of the same step, in both orders: n2's
// is written with its outcome, n1's writes nothing, and n1's outcome never
// overwrites n2's.
func TestAdversary15_GroupedOwnersOfOneExecution(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv15Ctx(t)
		for _, n2First := range []bool{true, false} {
			for _, n2Op := range []string{"start", "finish"} {
				what := fmt.Sprintf("n2 first %v, n2 %s", n2First, n2Op)
				id, step := adv15Running(t, s, "n1")
				require.NoError(t, s.TransferOwnership(ctx, id, "n2", adv15Exec(t, s, id).Version))
				n2 := func() error {
					if n2Op == "start" {
						_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n2", Attempt: 1, Previous: adv15Done(id, step, "n2", "by-n2")})
						return err
					}
					return s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n2", Status: models.ExecutionCompleted, Output: "end-by-n2", Previous: adv15Done(id, step, "n2", "by-n2")})
				}
				n1 := func() error {
					_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 2, Previous: adv15Done(id, step, "n1", "by-n1")})
					return err
				}
				calls := []func() error{n1, n2}
				if n2First {
					calls = []func() error{n2, n1}
				}
				release, grouped := repository.HoldCheckpoints(s)
				errs := make([]error, 2)
				var wg sync.WaitGroup
				for i, call := range calls {
					wg.Add(1)
					go func() { defer wg.Done(); errs[i] = call() }()
					if grouped {
						require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == i+1 }, 20*time.Second, time.Millisecond, what)
					}
				}
				release()
				wg.Wait()
				n1Err, n2Err := errs[0], errs[1]
				if n2First {
					n1Err, n2Err = errs[1], errs[0]
				}
				require.NoError(t, n2Err, what)
				require.ErrorIs(t, n1Err, repository.ErrConcurrentUpdate, what)
				steps := adv15Steps(t, s, id)
				require.Equal(t, "COMPLETED", steps[0].Status, what)
				require.Equal(t, `"by-n2"`, steps[0].Output, "%s: n1's outcome overwrote n2's", what)
				for _, st := range steps[1:] {
					require.Equal(t, "b", st.StepID, what)
				}
				if n2Op == "start" {
					require.Len(t, steps, 2, "%s: %v", what, steps)
				} else {
					require.Len(t, steps, 1, "%s: %v", what, steps)
				}
				x := adv15Exec(t, s, id)
				require.Equal(t, "n2", x.Node, what)
			}
		}
	})
}

// TestAdversary15_PreviousWithADuplicateAttempt: a step start whose attempt
// exists already (ErrAlreadyExists), carrying the outcome of the step that
// is running, writes nothing, not the outcome: on SQLite the outcome is
// written first, unfenced, and must go with the failed insert; alone and
// grouped beside an owned start, which is written.
func TestAdversary15_PreviousWithADuplicateAttempt(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv15Ctx(t)
		for _, mode := range []string{"alone", "grouped"} {
			id, a := adv15Running(t, s, "n1")
			b, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1, Previous: adv15Done(id, a, "n1", "by-n1")})
			require.NoError(t, err)
			want, counts := adv15Steps(t, s, id), adv15Count(t, s)
			again := func() error {
				_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1, Previous: adv15Done(id, b.StepExecutionID, "n1", "b-by-n1")})
				return err
			}
			if mode == "alone" {
				require.ErrorIs(t, again(), repository.ErrAlreadyExists)
			} else {
				kept, keptStep := adv15Running(t, s, "n1")
				counts = adv15Count(t, s)
				release, grouped := repository.HoldCheckpoints(s)
				errs := make([]error, 2)
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { defer wg.Done(); errs[0] = again() }()
				if grouped {
					require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 1 }, 20*time.Second, time.Millisecond)
				}
				go func() { defer wg.Done(); errs[1] = adv15Ops()["start"](s, kept, keptStep) }()
				if grouped {
					require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 2 }, 20*time.Second, time.Millisecond)
				}
				release()
				wg.Wait()
				require.ErrorIs(t, errs[0], repository.ErrAlreadyExists)
				require.NoError(t, errs[1])
				counts[1]++
				require.Equal(t, `"by-n1"`, adv15Steps(t, s, kept)[0].Output)
			}
			require.Equal(t, want, adv15Steps(t, s, id), "%s: the outcome of a refused start was written", mode)
			require.Equal(t, counts, adv15Count(t, s), mode)
		}
	})
}
