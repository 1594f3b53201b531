package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// gatedBranches is a workflow whose Map branches each wait for their gate,
// await the signal "go", journal what they got in step "got-<i>" and return
// it. The test opens the gates, so it decides the order in which the branches
// call AwaitSignal. Each branch reports on received what it got.
func gatedBranches(n int, gates []chan struct{}, received chan<- [2]string) engine.WorkflowFunc {
	return func(ctx *engine.Context, _ json.RawMessage) (any, error) {
		return engine.Map(ctx, make([]struct{}, n), 0, func(c *engine.Context, i int, _ struct{}) (string, error) {
			select {
			case <-gates[i]:
			case <-c.Done():
				return "", context.Cause(c)
			}
			got, err := engine.AwaitSignal[string](c, "go", 0)
			if err != nil {
				return "", err
			}
			journaled, err := engine.Step(c, "got-"+strconv.Itoa(i), func(context.Context) (string, error) { return got, nil })
			if err != nil {
				return "", err
			}
			if journaled != got {
				return "", fmt.Errorf("branch %d: AwaitSignal returned %q, its first run %q", i, got, journaled)
			}
			received <- [2]string{strconv.Itoa(i), got}
			return got, nil
		})
	}
}

// TestBranch_SignalIdsSurviveReschedule: four Map branches await the same
// signal name. Branches 0 and 1 receive p0 and p1, in that order; the engine
// stops gracefully while 2 and 3 have not called AwaitSignal yet. A new engine
// resumes the execution with the branches calling AwaitSignal in the opposite
// order (3, 2, 1, 0): 3 and 2 receive the signals sent for them, and 1 and 0
// get p1 and p0 again from the journal without consuming another signal.
func TestBranch_SignalIdsSurviveReschedule(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		const n = 4
		newGates := func() []chan struct{} {
			g := make([]chan struct{}, n)
			for i := range g {
				g[i] = make(chan struct{})
			}
			return g
		}
		received := make(chan [2]string, 2*n)
		gates1 := newGates()
		wf1 := gatedBranches(n, gates1, received)
		e1 := engine.New(s, fast("n1"))
		require.NoError(t, e1.Register(engine.Dynamic(def("gated"), wf1)))
		stop1 := run(t, e1)
		id, err := e1.Start(t.Context(), "gated", "v1", nil)
		require.NoError(t, err)
		for _, i := range []int{0, 1} {
			p := "p" + strconv.Itoa(i)
			require.NoError(t, s.SendSignal(t.Context(), id, "go", p))
			close(gates1[i])
			require.Equal(t, [2]string{strconv.Itoa(i), p}, receive(t, received))
		}
		stop1()
		require.Subset(t, statuses(history(t, s, id)), []string{
			"branch:0/signal:go:1:COMPLETED", "branch:1/signal:go:1:COMPLETED", "got-0:COMPLETED", "got-1:COMPLETED",
		})

		gates2 := newGates()
		wf2 := gatedBranches(n, gates2, received)
		e2 := engine.New(s, fast("n2"))
		require.NoError(t, e2.Register(engine.Dynamic(def("gated"), wf2)))
		run(t, e2)
		for _, i := range []int{3, 2, 1, 0} {
			p := "p" + strconv.Itoa(i)
			if i >= 2 { // 1 and 0 were received in the first run
				require.NoError(t, s.SendSignal(t.Context(), id, "go", p))
			}
			close(gates2[i])
			require.Equal(t, [2]string{strconv.Itoa(i), p}, receive(t, received), "branch %d", i)
		}
		exec := await(t, e2, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status, "error: %v", exec.Error)
		require.JSONEq(t, `["p0","p1","p2","p3"]`, string(exec.Output))

		_, left, err := s.CheckSignal(t.Context(), id, "go")
		require.NoError(t, err)
		require.False(t, left, "every signal consumed, none twice")
		payloads := map[string]string{}
		for _, h := range history(t, s, id) {
			if strings.Contains(h.StepID, "signal:") {
				require.Equal(t, models.StepCompleted, h.Status, h.StepID)
				_, dup := payloads[h.StepID]
				require.False(t, dup, "one journal entry for %s", h.StepID)
				var p string
				require.NoError(t, json.Unmarshal(h.Output, &p))
				payloads[h.StepID] = p
			}
		}
		require.Equal(t, map[string]string{
			"branch:0/signal:go:1": "p0", "branch:1/signal:go:1": "p1",
			"branch:2/signal:go:1": "p2", "branch:3/signal:go:1": "p3",
		}, payloads)
	})
}

// TestBranch_SignalIdsCompose: AwaitSignal ids outside branches are as they
// always were; in branches they carry the branch path, nested Parallel and
// Map compose it, each branch numbers its own calls, and a later Map numbers
// on in the same branch paths.
func TestBranch_SignalIdsCompose(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		await1 := func(c *engine.Context) error {
			_, err := engine.AwaitSignal[int](c, "x", 0)
			return err
		}
		wf := func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			if err := await1(ctx); err != nil {
				return nil, err
			}
			inner := func(c *engine.Context) error {
				_, err := engine.Map(c, []int{0, 1}, 0, func(c *engine.Context, _ int, _ int) (struct{}, error) {
					if err := await1(c); err != nil {
						return struct{}{}, err
					}
					return struct{}{}, await1(c)
				})
				return err
			}
			if err := engine.Parallel(ctx, 0, inner, func(c *engine.Context) error {
				if err := await1(c); err != nil {
					return err
				}
				return inner(c)
			}); err != nil {
				return nil, err
			}
			if _, err := engine.Map(ctx, []int{0, 1}, 0, func(c *engine.Context, _ int, _ int) (struct{}, error) {
				return struct{}{}, await1(c)
			}); err != nil {
				return nil, err
			}
			return nil, await1(ctx)
		}
		want := []string{
			"signal:x:1",
			"branch:0/branch:0/signal:x:1", "branch:0/branch:0/signal:x:2",
			"branch:0/branch:1/signal:x:1", "branch:0/branch:1/signal:x:2",
			"branch:1/signal:x:1",
			"branch:1/branch:0/signal:x:1", "branch:1/branch:0/signal:x:2",
			"branch:1/branch:1/signal:x:1", "branch:1/branch:1/signal:x:2",
			// The later Map's branches number on from the Parallel's: its
			// branch 0 had awaited only in its nested Map, branch 1 once.
			"branch:0/signal:x:1", "branch:1/signal:x:2",
			"signal:x:2",
		}
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("nested"), wf)))
		run(t, e)
		id, err := e.Start(t.Context(), "nested", "v1", nil)
		require.NoError(t, err)
		for i := range want {
			require.NoError(t, s.SendSignal(t.Context(), id, "x", i))
		}
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status, "error: %v", exec.Error)
		var got []string
		for _, h := range history(t, s, id) {
			require.Equal(t, models.StepCompleted, h.Status, h.StepID)
			got = append(got, h.StepID)
		}
		sort.Strings(got)
		sort.Strings(want)
		require.Equal(t, want, got)
	})
}
