package manage_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

func seed(t *testing.T, s *repository.Storage, in repository.NewExecution) *models.WorkflowExecution {
	t.Helper()
	if in.DefinitionID == "" {
		in.DefinitionID, in.DefinitionVersion = "order", "v1"
	}
	in.Definition = &models.WorkflowDefinition{ID: in.DefinitionID, Version: in.DefinitionVersion, Name: in.DefinitionID}
	e, err := s.CreateExecution(t.Context(), in)
	require.NoError(t, err)
	return e
}

func TestList_PagesWithTheCursor(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		c := manage.New(s)
		var want []string
		for range 7 {
			want = append(want, seed(t, s, repository.NewExecution{Labels: map[string]string{"tenant": "acme"}}).ExecutionID)
		}
		seed(t, s, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v2"})
		var got []string
		f := manage.Filter{DefinitionID: "order", DefinitionVersion: "v1", Labels: map[string]string{"tenant": "acme"},
			CreatedSince: time.Now().Add(-time.Hour), Limit: 3}
		for pages := 0; ; pages++ {
			require.Less(t, pages, 4)
			page, err := c.List(ctx, f)
			require.NoError(t, err)
			for _, x := range page.Executions {
				got = append(got, x.ExecutionID)
				require.Equal(t, "acme", x.Labels["tenant"])
			}
			if page.Next == "" {
				break
			}
			f.After = page.Next
		}
		require.Equal(t, want, got)

		empty, err := c.List(ctx, manage.Filter{Statuses: []models.ExecutionStatus{models.ExecutionFailed}})
		require.NoError(t, err)
		require.NotNil(t, empty.Executions, "an empty page is [] in JSON")
		require.Empty(t, empty.Next)
		raw, err := json.Marshal(empty)
		require.NoError(t, err)
		require.JSONEq(t, `{"executions":[]}`, string(raw))

		for _, f := range []manage.Filter{{Limit: -1}, {Limit: repository.ListLimitMax + 1}, {DefinitionVersion: "v1"}, {Statuses: []models.ExecutionStatus{"DONE"}}} {
			_, err := c.List(ctx, f)
			require.ErrorIs(t, err, manage.ErrInvalidArgument, "%+v", f)
		}
	})
}

func TestGet_ExecutionJournalAndPendingSignals(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		c := manage.New(s)
		x := seed(t, s, repository.NewExecution{Labels: map[string]string{"k": "v"}, Input: map[string]int{"n": 1}})
		_, err := s.CreateStepExecution(ctx, x.ExecutionID, "one", nil, 1)
		require.NoError(t, err)
		require.NoError(t, c.Signal(ctx, x.ExecutionID, "go", map[string]string{"say": "hi"}))
		require.NoError(t, c.Signal(ctx, x.ExecutionID, "go", json.RawMessage(`2`)))

		d, err := c.Get(ctx, x.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, x.ExecutionID, d.Execution.ExecutionID)
		require.Equal(t, map[string]string{"k": "v"}, d.Execution.Labels)
		require.Len(t, d.Steps, 1)
		require.Len(t, d.PendingSignals, 2)
		require.JSONEq(t, `{"say":"hi"}`, string(d.PendingSignals[0].Payload))

		raw, err := json.Marshal(d)
		require.NoError(t, err)
		var doc map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(raw, &doc))
		require.Contains(t, doc, "execution")
		require.Contains(t, doc, "steps")
		require.Contains(t, doc, "pending_signals")

		_, err = c.Get(ctx, "nobody")
		require.ErrorIs(t, err, manage.ErrNotFound)
		require.ErrorContains(t, err, "nobody")
	})
}

func TestCancelAndSignal_Errors(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		c := manage.New(s)
		x := seed(t, s, repository.NewExecution{})
		require.ErrorIs(t, c.Cancel(ctx, "nobody"), manage.ErrNotFound)
		require.ErrorIs(t, c.Signal(ctx, "nobody", "go", nil), manage.ErrNotFound)
		require.ErrorIs(t, c.Cancel(ctx, ""), manage.ErrInvalidArgument)
		require.ErrorIs(t, c.Signal(ctx, x.ExecutionID, "", nil), manage.ErrInvalidArgument)

		require.NoError(t, c.Cancel(ctx, x.ExecutionID))
		cur, err := s.GetExecution(ctx, x.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCancelled, cur.Status)
		require.NotNil(t, cur.CompletedAt)
		require.NoError(t, c.Cancel(ctx, x.ExecutionID), "no-op")
		again, err := s.GetExecution(ctx, x.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, cur.Version, again.Version, "a no-op writes nothing")
		require.ErrorIs(t, c.Signal(ctx, x.ExecutionID, "go", nil), manage.ErrExecutionEnded)
	})
}

// TestSignal_ReachesARunningWorkflow: a signal sent without the engine's
// help wakes a workflow parked for it on another node.
func TestSignal_ReachesARunningWorkflow(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		wf := engine.Define("greet", "v1", func(ctx *engine.Context, _ struct{}) (string, error) {
			return engine.AwaitSignal[string](ctx, "name", 0)
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		h, err := wf.Start(ctx, e, struct{}{})
		require.NoError(t, err)
		require.NoError(t, manage.New(s).Signal(ctx, h.ID(), "name", "ada"))
		out, err := h.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, "ada", out)
	})
}

// TestCancel_StopsAWorkflowOnItsNode: the node running the workflow notices
// a Cancel made without its engine.
func TestCancel_StopsAWorkflowOnItsNode(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		entered := make(chan struct{}, 1)
		wf := engine.Define("forever", "v1", func(ctx *engine.Context, _ struct{}) (int, error) {
			return engine.Step(ctx, "block", func(c context.Context) (int, error) {
				entered <- struct{}{}
				<-c.Done()
				return 0, c.Err()
			})
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		h, err := wf.Start(ctx, e, struct{}{})
		require.NoError(t, err)
		receive(t, entered)
		require.NoError(t, manage.New(s).Cancel(ctx, h.ID()))
		_, err = h.Result(ctx)
		require.ErrorIs(t, err, engine.ErrCancelled)
	})
}

func TestNodesAndStale(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		c := manage.New(s)
		nodes, err := c.Nodes(ctx)
		require.NoError(t, err)
		require.NotNil(t, nodes)
		require.Empty(t, nodes)

		release := make(chan struct{})
		entered := make(chan struct{}, 1)
		wf := engine.Define("hold", "v1", func(ctx *engine.Context, _ struct{}) (int, error) {
			return engine.Step(ctx, "hold", func(context.Context) (int, error) {
				entered <- struct{}{}
				<-release
				return 1, nil
			})
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		h, err := wf.Start(ctx, e, struct{}{})
		require.NoError(t, err)
		receive(t, entered)
		require.Eventually(t, func() bool {
			nodes, err := c.Nodes(ctx)
			require.NoError(t, err)
			return len(nodes) == 1 && nodes[0].NodeID == "n1" && nodes[0].Executions == 1
		}, time.Minute, 10*time.Millisecond)

		stale, err := c.Stale(ctx, time.Minute)
		require.NoError(t, err)
		require.Empty(t, stale, "n1 beats for it")
		orphan := seed(t, s, repository.NewExecution{DefinitionID: "other", DefinitionVersion: "v1", NodeID: "gone"})
		require.NoError(t, s.DB().Model(&models.WorkflowExecution{}).Where("execution_id = ?", orphan.ExecutionID).
			UpdateColumn("last_heartbeat", time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)).Error)
		stale, err = c.Stale(ctx, time.Minute)
		require.NoError(t, err)
		require.Len(t, stale, 1)
		require.Equal(t, orphan.ExecutionID, stale[0].ExecutionID)
		for _, d := range []time.Duration{0, -time.Second} {
			_, err := c.Stale(ctx, d)
			require.ErrorIs(t, err, manage.ErrInvalidArgument)
		}
		close(release)
		_, err = h.Result(ctx)
		require.NoError(t, err)
	})
}

// TestPurge_WhileAnEngineRuns: purges of everything that has ended, again
// and again, while an engine starts and finishes workflows: every workflow
// runs to its last step (a live execution is never deleted under it), and
// what ended is gone at the end.
func TestPurge_WhileAnEngineRuns(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		var finished atomic.Int32
		wf := engine.Define("brief", "v1", func(ctx *engine.Context, n int) (int, error) {
			a, err := engine.Step(ctx, "one", func(context.Context) (int, error) { return n, nil })
			if err != nil {
				return 0, err
			}
			if err := engine.Sleep(ctx, "pause", time.Millisecond); err != nil {
				return 0, err
			}
			return engine.Step(ctx, "two", func(context.Context) (int, error) {
				finished.Add(1)
				return a + 1, nil
			})
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		c := manage.New(s)

		const n = 60
		stop := make(chan struct{})
		var purges sync.WaitGroup
		var purged atomic.Int64
		purges.Go(func() {
			// A purge every few milliseconds: back to back, they would hold
			// SQLite's one write lock most of the time.
			tick := time.NewTicker(3 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				got, err := c.Purge(ctx, manage.PurgeOptions{EndedBefore: time.Now().Add(time.Hour), BatchSize: 7})
				if err != nil {
					t.Errorf("purging: %v", err)
					return
				}
				purged.Add(got.Executions)
			}
		})
		ids := make([]string, n)
		for i := range ids {
			h, err := wf.Start(ctx, e, i)
			require.NoError(t, err)
			ids[i] = h.ID()
		}
		require.Eventually(t, func() bool { return finished.Load() == n }, time.Minute, 10*time.Millisecond,
			"every workflow ran its last step")
		// Each ends right after its last step: wait until none is live.
		require.Eventually(t, func() bool {
			page, err := c.List(ctx, manage.Filter{Statuses: models.LiveExecutionStatuses()})
			require.NoError(t, err)
			return len(page.Executions) == 0
		}, time.Minute, 10*time.Millisecond)
		close(stop)
		purges.Wait()
		got, err := c.Purge(ctx, manage.PurgeOptions{EndedBefore: time.Now().Add(time.Hour)})
		require.NoError(t, err)
		require.EqualValues(t, n, purged.Load()+got.Executions)
		for _, id := range ids {
			_, err := s.GetExecution(ctx, id)
			require.ErrorIs(t, err, manage.ErrNotFound)
		}
	})
}

func TestPurge_DryRunAndBadOptions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		c := manage.New(s)
		x := seed(t, s, repository.NewExecution{Labels: map[string]string{"k": "v"}})
		require.NoError(t, c.Cancel(ctx, x.ExecutionID))
		var progress []manage.PurgeCounts
		dry, err := c.Purge(ctx, manage.PurgeOptions{EndedBefore: time.Now().Add(time.Minute), DryRun: true,
			Progress: func(p manage.PurgeCounts) { progress = append(progress, p) }})
		require.NoError(t, err)
		require.Equal(t, manage.PurgeCounts{Executions: 1, Labels: 1}, dry)
		require.Equal(t, []manage.PurgeCounts{dry}, progress)
		_, err = s.GetExecution(ctx, x.ExecutionID)
		require.NoError(t, err, "a dry run deletes nothing")
		got, err := c.Purge(ctx, manage.PurgeOptions{OlderThan: time.Hour})
		require.NoError(t, err)
		require.Zero(t, got, "it ended just now")
		raw, err := json.Marshal(dry)
		require.NoError(t, err)
		require.JSONEq(t, `{"executions":1,"steps":0,"signals":0,"labels":1}`, string(raw))
		for _, o := range []manage.PurgeOptions{{}, {OlderThan: -time.Hour}, {OlderThan: time.Hour, BatchSize: -1}} {
			_, err := c.Purge(ctx, o)
			require.ErrorIs(t, err, manage.ErrInvalidArgument, "%+v", o)
		}
	})
}

// TestClient_BadInputBeforeSQL: on sqlmock with no expectations, any
// statement would fail the test.
func TestClient_BadInputBeforeSQL(t *testing.T) {
	t.Parallel()
	s, _ := testutil.NewMockStorage(t)
	ctx := t.Context()
	c := manage.New(s)
	_, err := c.Retry(ctx, "")
	require.ErrorIs(t, err, manage.ErrInvalidArgument)
	_, err = c.Get(ctx, "")
	require.ErrorIs(t, err, manage.ErrInvalidArgument)
	require.ErrorIs(t, c.Cancel(ctx, " "), manage.ErrInvalidArgument)
	require.ErrorIs(t, c.Signal(ctx, "x", "", nil), manage.ErrInvalidArgument)
	_, err = c.Stale(ctx, 0)
	require.ErrorIs(t, err, manage.ErrInvalidArgument)
	_, err = c.Purge(ctx, manage.PurgeOptions{})
	require.ErrorIs(t, err, manage.ErrInvalidArgument)
	_, err = c.List(ctx, manage.Filter{Limit: -5})
	require.ErrorIs(t, err, manage.ErrInvalidArgument)
}

// fakeStore fails every call the way a database that is down would.
type fakeStore struct{ manage.Store }

var errDown = errors.New("database is down")

func (fakeStore) GetExecution(context.Context, string) (*models.WorkflowExecution, error) {
	return nil, errDown
}

// TestClient_OnAFakeStore: the client works on any Store, and keeps its
// errors matchable.
func TestClient_OnAFakeStore(t *testing.T) {
	t.Parallel()
	c := manage.New(fakeStore{})
	err := c.Cancel(t.Context(), "x")
	require.ErrorIs(t, err, errDown)
	require.ErrorContains(t, err, "cancelling execution x")
	_, err = c.Get(t.Context(), "x")
	require.ErrorIs(t, err, errDown)
}
