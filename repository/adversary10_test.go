package repository_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Adversary 10: attacks on group commit (groupcommit.go,
// groupcommit_postgres.go), the ordered heartbeat locks and the claim probe.

func adv10Ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func adv10Exec(t *testing.T, s *repository.Storage, node string) string {
	t.Helper()
	e, err := s.CreateExecution(adv10Ctx(t), repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: node, Running: true})
	require.NoError(t, err)
	return e.ExecutionID
}

// adv10WaitBlocked waits (at most 10 s) until a statement of this test's
// schema that starts with prefix waits for a lock on PostgreSQL.
func adv10WaitBlocked(t *testing.T, s *repository.Storage, prefix string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int64
		require.NoError(t, s.DB().Raw(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE ?`, prefix+"%").Scan(&n).Error)
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no statement %q waited for a lock within 10 s", prefix)
}

// TestAdversary10_CancelledInFlightIsNotReportedUnwritten: a caller whose
// context ends after its checkpoint was taken into a shared write (no longer
// queued, not yet committed) returns at once with "checkpoint not written:
// context canceled", while the shared write goes on and commits it. A failed
// call must leave nothing behind (README): either the call waits for the
// write it is part of, or the write must leave its checkpoint out.
//
// SQLite: the shared transaction runs the victim's op, then stalls (a GORM
// callback) on the next checkpoint's statement while the victim gives up.
// PostgreSQL: the one grouped statement waits for a row lock held by another
// transaction while the victim gives up (startSteps never looks at the
// callers' contexts).
func TestAdversary10_CancelledInFlightIsNotReportedUnwritten(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv10Ctx(t)
		victim := adv10Exec(t, s, "n1")
		other := adv10Exec(t, s, "n1")
		var unblock func()
		var arm func()
		var stalled <-chan struct{}
		if s.Dialect() == "sqlite" {
			stall := testutil.StallStatement(t, s.DB(), "other", other)
			arm, stalled, unblock = stall.Arm, stall.Stalled(), stall.Release
		} else {
			tx := s.DB().Begin()
			require.NoError(t, tx.Error)
			require.NoError(t, tx.Exec(`SELECT 1 FROM workflow_executions WHERE execution_id = ? FOR UPDATE`, other).Error)
			unblock = func() { require.NoError(t, tx.Commit().Error) }
		}
		release, grouped := repository.HoldCheckpoints(s)
		if !grouped {
			if s.Dialect() == "postgres" {
				unblock()
			}
			t.Skip("this storage writes checkpoints one by one")
		}
		victimCtx, cancelVictim := context.WithCancel(ctx)
		defer cancelVictim()
		victimErr := make(chan error, 1)
		go func() {
			_, err := s.StartStep(victimCtx, repository.StartStepParams{ExecutionID: victim, StepID: "a", NodeID: "n1", Attempt: 1})
			victimErr <- err
		}()
		require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 1 }, 10*time.Second, time.Millisecond)
		otherErr := make(chan error, 1)
		go func() {
			_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: other, StepID: "a", NodeID: "n1", Attempt: 1})
			otherErr <- err
		}()
		require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 2 }, 10*time.Second, time.Millisecond)
		if arm != nil {
			arm()
		}
		release()
		if stalled != nil {
			select {
			case <-stalled:
			case <-time.After(10 * time.Second):
				t.Fatal("the shared transaction never reached the other checkpoint")
			}
		} else {
			adv10WaitBlocked(t, s, "WITH input AS MATERIALIZED")
		}
		// The victim's checkpoint is in flight now: its caller gives up.
		cancelVictim()
		var errV error
		select {
		case errV = <-victimErr:
		case <-time.After(500 * time.Millisecond):
			// It waits for the write it is part of: fine, its outcome is
			// then the write's.
		}
		unblock()
		require.NoError(t, <-otherErr)
		if errV == nil {
			errV = <-victimErr
		}
		rows := history(t, s, victim)
		if errV != nil {
			require.Empty(t, rows, "StartStep returned %q, yet its step row was written after it returned", errV)
		} else {
			require.Len(t, rows, 1)
		}
	})
}

// TestAdversary10_LostOwnerWhileGroupedStartWaitsWritesNoOutcome (PostgreSQL,
// grouped path): a node's grouped step starts (one statement) wait on an
// execution's row lock while another node takes the execution over and
// commits. The start is refused (ErrConcurrentUpdate), but the previous step's
// outcome, carried by the same start, must not be written either: the node
// lost ownership before anything of its statement was written.
func TestAdversary10_LostOwnerWhileGroupedStartWaitsWritesNoOutcome(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		if s.Dialect() != "postgres" {
			t.Skip("SQLite serializes writers: no statement waits on a row lock")
		}
		ctx := adv10Ctx(t)
		stolen := adv10Exec(t, s, "n1")
		healthy := adv10Exec(t, s, "n1")
		a, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: stolen, StepID: "a", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)

		// Node n2 takes the execution over, in a transaction still open.
		tx := s.DB().Begin()
		require.NoError(t, tx.Error)
		res := tx.Exec(`UPDATE workflow_executions SET node_id = 'n2', version = version + 1 WHERE execution_id = ?`, stolen)
		require.NoError(t, res.Error)
		require.EqualValues(t, 1, res.RowsAffected)

		release, grouped := repository.HoldCheckpoints(s)
		if !grouped {
			require.NoError(t, tx.Rollback().Error)
			t.Skip("this storage writes step starts one by one")
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, errs[0] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: stolen, StepID: "b", NodeID: "n1", Attempt: 1,
				Previous: &repository.FinishStepParams{ExecutionID: stolen, StepExecutionID: a.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: "n1 was here"}})
		}()
		go func() {
			defer wg.Done()
			_, errs[1] = s.StartStep(ctx, repository.StartStepParams{ExecutionID: healthy, StepID: "a", NodeID: "n1", Attempt: 1})
		}()
		require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 2 }, 10*time.Second, time.Millisecond)
		release()
		adv10WaitBlocked(t, s, "WITH input AS MATERIALIZED")
		require.NoError(t, tx.Commit().Error) // n2 owns it now
		wg.Wait()

		require.ErrorIs(t, errs[0], repository.ErrConcurrentUpdate)
		require.NoError(t, errs[1])
		steps := history(t, s, stolen)
		require.Len(t, steps, 1, "n1 journaled step b after losing the execution")
		require.Equal(t, models.StepRunning, steps[0].Status,
			"n1's StartStep was refused (ErrConcurrentUpdate), yet it wrote step a's outcome %s after n2 took the execution over", steps[0].Output)
	})
}

// TestAdversary10_LostOwnerWhileFinishWaitsWritesNoOutcome (PostgreSQL,
// single statements, not grouped): FinishExecution and StartStep with
// Previous run while another node's takeover is uncommitted; after it
// commits they are refused, and must have written nothing, the last step's
// outcome included.
func TestAdversary10_LostOwnerWhileFinishWaitsWritesNoOutcome(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		if s.Dialect() != "postgres" {
			t.Skip("SQLite serializes writers: no statement waits on a row lock")
		}
		for _, kind := range []string{"finish", "start"} {
			t.Run(kind, func(t *testing.T) {
				ctx := adv10Ctx(t)
				stolen := adv10Exec(t, s, "n1")
				a, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: stolen, StepID: "a", NodeID: "n1", Attempt: 1})
				require.NoError(t, err)
				tx := s.DB().Begin()
				require.NoError(t, tx.Error)
				require.NoError(t, tx.Exec(`UPDATE workflow_executions SET node_id = 'n2', version = version + 1 WHERE execution_id = ?`, stolen).Error)
				prev := &repository.FinishStepParams{ExecutionID: stolen, StepExecutionID: a.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: "n1 was here"}
				done := make(chan error, 1)
				go func() {
					if kind == "finish" {
						done <- s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: stolen, NodeID: "n1", Status: models.ExecutionCompleted, Output: 1, Previous: prev})
					} else {
						_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: stolen, StepID: "b", NodeID: "n1", Attempt: 1, Previous: prev})
						done <- err
					}
				}()
				adv10WaitBlocked(t, s, "WITH done AS")
				require.NoError(t, tx.Commit().Error)
				err = <-done
				require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
				x, err := s.GetExecution(ctx, stolen)
				require.NoError(t, err)
				require.Equal(t, "n2", *x.NodeID)
				require.False(t, x.Status.Terminal())
				steps := history(t, s, stolen)
				require.Len(t, steps, 1)
				require.Equal(t, models.StepRunning, steps[0].Status,
					"the call was refused (ErrConcurrentUpdate), yet n1 wrote step a's outcome %s after n2 took the execution over", steps[0].Output)
			})
		}
	})
}

// TestAdversary10_MixedBatchEachOwnOutcome: one held batch holds, on every
// driver, healthy starts, a start of a stolen execution, a duplicate attempt,
// starts whose previous step id is wrong, payloads no dialect stores (NUL,
// invalid UTF-8, refused before SQL), a 4 MB input, an end of a cancelled
// execution and creations; each gets the outcome it has alone and the
// journal holds exactly the successful ones.
func TestAdversary10_MixedBatchEachOwnOutcome(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv10Ctx(t)
		var healthy []string
		for range 5 {
			healthy = append(healthy, adv10Exec(t, s, "n1"))
		}
		stolen := adv10Exec(t, s, "n1")
		x, err := s.GetExecution(ctx, stolen)
		require.NoError(t, err)
		require.NoError(t, s.TransferOwnership(ctx, stolen, "n2", int64(x.Version)))
		dup := adv10Exec(t, s, "n1")
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: dup, StepID: "a", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)
		wrongPrev := adv10Exec(t, s, "n1")
		cancelled := adv10Exec(t, s, "n1")
		require.NoError(t, repository.CancelExecution(ctx, s, cancelled))
		big := adv10Exec(t, s, "n1")
		bigInput := strings.Repeat("x", 4<<20)

		release, grouped := repository.HoldCheckpoints(s)
		type call struct {
			name string
			fn   func() error
			want error // nil: success
		}
		start := func(id, step string, in any, prev *repository.FinishStepParams) func() error {
			return func() error {
				_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: step, NodeID: "n1", Attempt: 1, Input: in, Previous: prev})
				return err
			}
		}
		calls := []call{
			{"stolen", start(stolen, "a", nil, nil), repository.ErrConcurrentUpdate},
			{"dup", start(dup, "a", nil, nil), repository.ErrAlreadyExists},
			{"wrong previous", start(wrongPrev, "b", nil, &repository.FinishStepParams{ExecutionID: wrongPrev, StepExecutionID: "no-such-step", NodeID: "n1", Status: models.StepCompleted}), repository.ErrConcurrentUpdate},
			{"nul", start(healthy[0], "nul", map[string]string{"k": "a\x00b"}, nil), repository.ErrInvalidArgument},
			{"utf8", start(healthy[0], "utf8", "\xff\xfe", nil), repository.ErrInvalidArgument},
			{"big", start(big, "a", bigInput, nil), nil},
			{"cancelled end", func() error {
				return s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: cancelled, NodeID: "n1", Status: models.ExecutionCompleted})
			}, repository.ErrConcurrentUpdate},
			{"create existing", func() error {
				_, err := s.CreateExecution(ctx, repository.NewExecution{ExecutionID: dup, DefinitionID: "order", DefinitionVersion: "v1"})
				return err
			}, repository.ErrAlreadyExists},
			{"create missing definition", func() error {
				_, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "nope", DefinitionVersion: "v1"})
				return err
			}, repository.ErrNotFound},
		}
		for i, id := range healthy {
			calls = append(calls, call{fmt.Sprint("healthy ", i), start(id, "a", i, nil), nil})
		}
		errs := make([]error, len(calls))
		var wg sync.WaitGroup
		for i, c := range calls {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = c.fn() }()
		}
		if grouped {
			time.Sleep(200 * time.Millisecond) // let them queue (invalid ones never do)
		}
		release()
		wg.Wait()
		for i, c := range calls {
			if c.want == nil {
				require.NoError(t, errs[i], c.name)
			} else {
				require.ErrorIs(t, errs[i], c.want, c.name)
			}
		}
		require.Empty(t, history(t, s, stolen))
		require.Len(t, history(t, s, dup), 1)
		require.Empty(t, history(t, s, wrongPrev))
		h := history(t, s, healthy[0])
		require.Len(t, h, 1)
		require.Equal(t, "a", h[0].StepID)
		bh := history(t, s, big)
		require.Len(t, bh, 1)
		require.Len(t, bh[0].Input, len(bigInput)+2)
		cx, err := s.GetExecution(ctx, cancelled)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCancelled, cx.Status)
		for _, id := range healthy[1:] {
			require.Len(t, history(t, s, id), 1)
		}
	})
}

// TestAdversary10_StormNoWriteAfterLoss: workers drive executions through
// steps (StartStep with the previous step's outcome, then FinishExecution
// with the last one) concurrently, so their checkpoints are grouped, while a
// thief takes some executions over (TransferOwnership, or a stale claim) and
// cancels others. Checked: a call that began after its execution was taken
// never succeeds; each call's error matches the journal (a refused start
// wrote neither its row nor its previous step's outcome, a successful one
// wrote both); an ended execution was ended by its owner only.
func TestAdversary10_StormNoWriteAfterLoss(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv10Ctx(t)
		const executions, steps = 24, 6
		ids := make([]string, executions)
		for i := range ids {
			ids[i] = adv10Exec(t, s, "n1")
		}
		lost := make([]atomic.Bool, executions) // set once the thief's write returned
		type outcome struct {
			stepID string
			err    error
			prevID string // the step execution whose outcome the call carried
		}
		results := make([][]outcome, executions)
		finishErrs := make([]error, executions)
		var violations sync.Map
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var prev *repository.FinishStepParams
				for k := range steps {
					wasLost := lost[i].Load()
					stepID := fmt.Sprint("s", k)
					st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: ids[i], StepID: stepID, NodeID: "n1", Attempt: 1, Input: k, Previous: prev})
					o := outcome{stepID: stepID, err: err}
					if prev != nil {
						o.prevID = prev.StepExecutionID
					}
					results[i] = append(results[i], o)
					if err == nil && wasLost {
						violations.Store(ids[i]+"/"+stepID, "started after the execution was taken")
					}
					if err != nil {
						return
					}
					prev = &repository.FinishStepParams{ExecutionID: ids[i], StepExecutionID: st.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: k}
					if rand.IntN(3) == 0 {
						time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
					}
				}
				wasLost := lost[i].Load()
				finishErrs[i] = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: ids[i], NodeID: "n1", Status: models.ExecutionCompleted, Output: "end", Previous: prev})
				if finishErrs[i] == nil && wasLost {
					violations.Store(ids[i]+"/end", "ended after the execution was taken")
				}
			}()
		}
		// The thief: every third execution, at a random moment.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < executions; i += 3 {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				x, err := s.GetExecution(ctx, ids[i])
				if err != nil || x.Status.Terminal() {
					continue
				}
				switch (i / 3) % 3 {
				case 0:
					if s.TransferOwnership(ctx, ids[i], "n2", int64(x.Version)) == nil {
						lost[i].Store(true)
					}
				case 1:
					if repository.CancelExecution(ctx, s, ids[i]) == nil {
						if y, err := s.GetExecution(ctx, ids[i]); err == nil && y.Status == models.ExecutionCancelled {
							lost[i].Store(true)
						}
					}
				case 2:
					if s.DB().Exec(`UPDATE workflow_executions SET last_heartbeat = ? WHERE execution_id = ? AND status IN ('PENDING', 'RUNNING')`,
						time.Now().UTC().Add(-time.Hour), ids[i]).Error != nil {
						continue
					}
					claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 10})
					if err == nil {
						for _, c := range claimed {
							for j := range ids {
								if ids[j] == c.ExecutionID {
									lost[j].Store(true)
								}
							}
						}
					}
				}
			}
		}()
		wg.Wait()

		violations.Range(func(k, v any) bool { t.Errorf("%s: %s", k, v); return true })
		for i, id := range ids {
			h := history(t, s, id)
			byStep := map[string]models.StepExecution{}
			byID := map[string]models.StepExecution{}
			for _, st := range h {
				byStep[st.StepID] = st
				byID[st.StepExecutionID] = st
			}
			for _, o := range results[i] {
				_, ok := byStep[o.stepID]
				switch {
				case o.err == nil:
					require.True(t, ok, "%s %s: started but no row", id, o.stepID)
					if o.prevID != "" {
						require.Equal(t, models.StepCompleted, byID[o.prevID].Status, "%s %s: started, previous outcome missing", id, o.stepID)
					}
				case errors.Is(o.err, repository.ErrConcurrentUpdate):
					require.False(t, ok, "%s %s: refused (%v) but its row exists", id, o.stepID, o.err)
					if o.prevID != "" {
						require.Equal(t, models.StepRunning, byID[o.prevID].Status,
							"%s %s: refused (%v) but the previous step's outcome was written", id, o.stepID, o.err)
					}
				default:
					t.Errorf("%s %s: unexpected error %v (row %v)", id, o.stepID, o.err, ok)
				}
			}
			x, err := s.GetExecution(ctx, id)
			require.NoError(t, err)
			last := results[i][len(results[i])-1]
			if last.err == nil {
				switch {
				case finishErrs[i] == nil:
					require.Equal(t, models.ExecutionCompleted, x.Status, id)
					require.Equal(t, "n1", *x.NodeID)
				case errors.Is(finishErrs[i], repository.ErrConcurrentUpdate):
					require.NotEqual(t, models.ExecutionCompleted, x.Status, "%s: end refused but written", id)
					require.Equal(t, models.StepRunning, byStep[last.stepID].Status, "%s: end refused but the last step's outcome was written", id)
				default:
					t.Errorf("%s: unexpected end error %v", id, finishErrs[i])
				}
			}
		}
		t.Logf("shared transactions: %d", repository.SharedTransactions(s))
	})
}

// TestAdversary10_HeartbeatsAndGroupedStartsNeverDeadlock (PostgreSQL): two
// nodes' storages (two pools, one schema) start steps concurrently (grouped
// statements) while each beats its executions (HeartbeatExecutions and
// HeartbeatNode in loops) and a third storage claims stale ones: no call may
// fail with a deadlock (40P01).
func TestAdversary10_HeartbeatsAndGroupedStartsNeverDeadlock(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresSchemaDSN(t)
	open := func() *repository.Storage {
		s, err := repository.Open(context.Background(), dsn, repository.WithMaxOpenConns(6))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s1, s2 := open(), open()
	seedDefinition(t, s1, "order", "v1")
	ctx := adv10Ctx(t)
	nodes := map[string]*repository.Storage{"n1": s1, "n2": s2}
	ids := map[string][]string{}
	for node, s := range nodes {
		for range 30 {
			ids[node] = append(ids[node], adv10Exec(t, s, node))
		}
	}
	var failures sync.Map
	note := func(what string, err error) {
		if err != nil && strings.Contains(err.Error(), "deadlock") {
			failures.Store(what, err)
		}
	}
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for node, s := range nodes {
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := ids[node][w*5 : w*5+5]
				for k := 0; k < 200 && time.Now().Before(stop); k++ {
					for _, id := range mine {
						_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: fmt.Sprint("s", k), NodeID: node, Attempt: 1})
						note("start "+id, err)
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			all := append([]string(nil), ids[node]...)
			for k := 0; k < 2000 && time.Now().Before(stop); k++ {
				rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
				_, err := s.HeartbeatExecutions(ctx, node, all)
				note("heartbeat executions", err)
				_, err = s.HeartbeatNode(ctx, node)
				note("heartbeat node", err)
			}
		}()
	}
	wg.Wait()
	failures.Range(func(k, v any) bool { t.Errorf("%s: %v", k, v); return true })
	for node, s := range nodes {
		for _, id := range ids[node] {
			x, err := s.GetExecution(ctx, id)
			require.NoError(t, err)
			require.Equal(t, node, *x.NodeID)
		}
	}
}
