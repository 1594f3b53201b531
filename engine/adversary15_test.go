package engine_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Adversary 15: engines record the definitions they register
// (workflow_node_definitions) and their sweeps' fair shares count only the
// live nodes that run one of them.

// adv15Runs records which node ran each execution and how often each step
// ran.
type adv15Runs struct {
	mu    sync.Mutex
	node  map[string][]string // execution -> nodes that ran its first step
	steps map[string]int      // execution/step -> runs
}

func (r *adv15Runs) workflow(node string) engine.WorkflowFunc {
	return func(ctx *engine.Context, _ json.RawMessage) (any, error) {
		for _, id := range []string{"s1", "s2"} {
			if _, err := engine.Step(ctx, id, func(context.Context) (string, error) {
				r.mu.Lock()
				defer r.mu.Unlock()
				if id == "s1" {
					r.node[ctx.ExecutionID()] = append(r.node[ctx.ExecutionID()], node)
				}
				r.steps[ctx.ExecutionID()+"/"+id]++
				return node, nil
			}); err != nil {
				return nil, err
			}
		}
		return node, nil
	}
}

// adv15Engine runs an engine of node with 3 slots and the definitions ids.
func adv15Engine(t *testing.T, s *repository.Storage, r *adv15Runs, node string, ids ...string) (stop func()) {
	t.Helper()
	cfg := fast(node)
	cfg.MaxConcurrent = 3
	e := engine.New(s, cfg)
	for _, id := range ids {
		require.NoError(t, e.Register(engine.Dynamic(def(id), r.workflow(node))))
	}
	return run(t, e)
}

// adv15Served is what node recorded, as sorted definition ids.
func adv15Served(t *testing.T, s *repository.Storage, node string) []string {
	t.Helper()
	var ids []string
	require.NoError(t, s.DB().Table("workflow_node_definitions").Where("node_id = ?", node).Pluck("definition_id", &ids).Error)
	slices.Sort(ids)
	return ids
}

// adv15Complete creates n unowned executions of each definition and waits
// (at most 45 s in all) until every one has ended; every one must be
// COMPLETED, run by a node in runners[definition], each step once.
func adv15Complete(t *testing.T, s *repository.Storage, r *adv15Runs, n int, runners map[string][]string) {
	t.Helper()
	ctx := context.Background()
	defOf := map[string]string{}
	for d := range runners {
		for range n {
			x, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: d, DefinitionVersion: "v1", Input: map[string]any{"d": d}})
			require.NoError(t, err)
			defOf[x.ExecutionID] = d
		}
	}
	deadline := time.Now().Add(45 * time.Second)
	for id, d := range defOf {
		var x *models.WorkflowExecution
		for {
			var err error
			x, err = s.GetExecution(ctx, id)
			require.NoError(t, err)
			if x.Status.Terminal() || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		require.Equal(t, models.ExecutionCompleted, x.Status, "execution %s of %s never completed", id, d)
		r.mu.Lock()
		ran := slices.Clone(r.node[id])
		steps := []int{r.steps[id+"/s1"], r.steps[id+"/s2"]}
		r.mu.Unlock()
		require.Len(t, ran, 1, "execution %s of %s: first step ran on %v", id, d, ran)
		require.Contains(t, runners[d], ran[0], "execution %s of %s ran on a node that does not register it", id, d)
		require.Equal(t, []int{1, 1}, steps, "execution %s", id)
	}
}

// TestAdversary15_EnginesOfDisjointAndOverlappingDefinitions: four engines
// on one storage register {alpha, beta}, {beta}, {gamma}, {alpha, gamma};
// ten unowned executions of each definition, claimed by the sweeps, all
// complete, each on an engine that registers it, every step once. Then the
// {gamma} node restarts registering {alpha} instead: it records that, and
// the next work of alpha and gamma completes as well (gamma now only on the
// {alpha, gamma} node). Two engines under one node id with disjoint
// definitions: the last recorded wins and the work of both completes.
func TestAdversary15_EnginesOfDisjointAndOverlappingDefinitions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := context.Background()
		for _, id := range []string{"adv15alpha", "adv15beta", "adv15gamma"} {
			d := def(id)
			require.NoError(t, s.SaveDefinition(ctx, &d))
		}
		r := &adv15Runs{node: map[string][]string{}, steps: map[string]int{}}
		adv15Engine(t, s, r, "ab", "adv15alpha", "adv15beta")
		adv15Engine(t, s, r, "b", "adv15beta")
		stopG := adv15Engine(t, s, r, "g", "adv15gamma")
		adv15Engine(t, s, r, "ag", "adv15alpha", "adv15gamma")
		adv15Complete(t, s, r, 10, map[string][]string{
			"adv15alpha": {"ab", "ag"}, "adv15beta": {"ab", "b"}, "adv15gamma": {"g", "ag"},
		})
		require.Equal(t, []string{"adv15alpha", "adv15beta"}, adv15Served(t, s, "ab"))
		require.Equal(t, []string{"adv15gamma"}, adv15Served(t, s, "g"))

		stopG()
		adv15Engine(t, s, r, "g", "adv15alpha")
		require.Eventually(t, func() bool { return slices.Equal(adv15Served(t, s, "g"), []string{"adv15alpha"}) }, 30*time.Second, 5*time.Millisecond)
		adv15Complete(t, s, r, 6, map[string][]string{"adv15alpha": {"ab", "ag", "g"}, "adv15gamma": {"ag"}})

		// One node id, two engines.
		for _, id := range []string{"adv15delta", "adv15epsilon"} {
			d := def(id)
			require.NoError(t, s.SaveDefinition(ctx, &d))
		}
		adv15Engine(t, s, r, "dup", "adv15delta")
		require.Eventually(t, func() bool { return slices.Equal(adv15Served(t, s, "dup"), []string{"adv15delta"}) }, 30*time.Second, 5*time.Millisecond)
		adv15Engine(t, s, r, "dup", "adv15epsilon")
		require.Eventually(t, func() bool { return slices.Equal(adv15Served(t, s, "dup"), []string{"adv15epsilon"}) }, 30*time.Second, 5*time.Millisecond)
		adv15Complete(t, s, r, 4, map[string][]string{"adv15delta": {"dup"}, "adv15epsilon": {"dup"}})
	})
}
