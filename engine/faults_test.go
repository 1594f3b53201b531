package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// runCounter counts how often each step function ran.
type runCounter struct {
	mu   sync.Mutex
	runs map[string]int
}

func (r *runCounter) ran(step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil {
		r.runs = map[string]int{}
	}
	r.runs[step]++
}

func (r *runCounter) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.runs {
		out[k] = v
	}
	return out
}

// everyCheckpoint is a workflow that passes through every kind of checkpoint:
// steps, Parallel branches, a sleep, a signal wait that times out and one that
// receives.
func everyCheckpoint(runs *runCounter) engine.WorkflowFunc {
	step := func(ctx *engine.Context, id string) error {
		_, err := engine.Step(ctx, id, func(context.Context) (string, error) {
			runs.ran(id)
			return id, nil
		})
		return err
	}
	return func(ctx *engine.Context, _ json.RawMessage) (any, error) {
		for _, id := range []string{"a", "b"} {
			if err := step(ctx, id); err != nil {
				return nil, err
			}
		}
		if err := engine.Parallel(ctx, 2,
			func(ctx *engine.Context) error { return step(ctx, "p0") },
			func(ctx *engine.Context) error { return step(ctx, "p1") },
		); err != nil {
			return nil, err
		}
		if err := engine.Sleep(ctx, "nap", 5*time.Millisecond); err != nil {
			return nil, err
		}
		if _, err := engine.AwaitSignal[string](ctx, "never", 20*time.Millisecond); !errors.Is(err, engine.ErrSignalTimeout) {
			return nil, fmt.Errorf("want a signal timeout, got %w", err)
		}
		got, err := engine.AwaitSignal[string](ctx, "go", 0)
		if err != nil {
			return nil, err
		}
		if err := step(ctx, "c"); err != nil {
			return nil, err
		}
		return got, nil
	}
}

// TestEngine_FaultInEveryCheckpoint fails one call of each storage method the
// engine checkpoints through, before it runs and after it committed (the
// answer lost): the workflow completes and no completed step runs again.
func TestEngine_FaultInEveryCheckpoint(t *testing.T) {
	// HeartbeatExecutions, not HeartbeatNode: the engine beats only what it
	// runs. ParkExecution: the signal wait without a timeout parks.
	methods := []string{"StartStep", "FinishStep", "ReceiveSignal", "FinishExecution", "GetStepExecutionHistory",
		"UpdateExecutionStatusWithVersion", "HeartbeatExecutions", "ClaimExecutions", "GetExecution",
		"ParkExecution", "BeatNode", "Backlog"}
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		for _, method := range methods {
			for _, call := range []int{1, 2, 3} {
				for _, after := range []bool{false, true} {
					name := fmt.Sprintf("%s-%d-after-%v", method, call, after)
					t.Run(name, func(t *testing.T) {
						faulty := testutil.NewFaultyStorage(s, testutil.Fault{Method: method, Call: call, Fail: true, After: after})
						var runs runCounter
						e := engine.New(faulty, fast("n-"+name))
						require.NoError(t, e.Register(engine.Dynamic(def("wf-"+name), everyCheckpoint(&runs))))
						run(t, e)
						id, err := e.Start(t.Context(), "wf-"+name, "v1", nil)
						require.NoError(t, err)
						require.NoError(t, s.SendSignal(t.Context(), id, "go", "payload"))
						exec := await(t, engine.New(s, fast("client")), id) // Await's own reads are not under test
						require.Equal(t, models.ExecutionCompleted, exec.Status, "error: %v", exec.Error)
						require.JSONEq(t, `"payload"`, string(exec.Output))
						for _, step := range []string{"a", "b", "p0", "p1", "c"} {
							require.Equal(t, 1, runs.snapshot()[step], "step %s ran once", step)
						}
						completed := map[string]int{}
						for _, h := range history(t, s, id) {
							if h.Status == models.StepCompleted {
								completed[h.StepID]++
							}
						}
						for step, n := range completed {
							require.Equal(t, 1, n, "one COMPLETED row for %s", step)
						}
					})
				}
			}
		}
	})
}

// TestEngine_GracefulStopMidStep: the engine stops while a step function is
// finishing; the function returns success, so the step is journaled COMPLETED
// and a restarted engine does not run it again.
func TestEngine_GracefulStopMidStep(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var runs atomic.Int64
		entered := make(chan struct{}, 1)
		wf := func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "charge", func(c context.Context) (string, error) {
				if runs.Add(1) == 1 {
					entered <- struct{}{}
					<-c.Done() // the stop arrives while the charge goes through
				}
				return "charged", nil
			})
		}
		id := startThenStop(t, s, "graceful", "graceful", wf, entered)
		require.Equal(t, []string{"charge:COMPLETED"}, statuses(history(t, s, id)))
		stopped, err := s.GetExecution(t.Context(), id)
		require.NoError(t, err)
		require.Nil(t, stopped.NodeID, "a graceful stop hands the execution back")

		exec := runAgain(t, s, "graceful-2", "graceful", wf, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.JSONEq(t, `"charged"`, string(exec.Output))
		require.EqualValues(t, 1, runs.Load(), "the charge ran once")
	})
}

// stallSaves blocks SaveDefinition of the definition "blocker" until its
// context ends, to hold Run in its start-up.
type stallSaves struct {
	repository.WorkflowStorage
	entered chan struct{}
}

func (s *stallSaves) SaveDefinition(ctx context.Context, d *models.WorkflowDefinition) error {
	if d.ID == "blocker" {
		s.entered <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	return s.WorkflowStorage.SaveDefinition(ctx, d)
}

// TestEngine_StartDuringStartupLeavesItForAnyNode: while Run still starts up
// (here it saves definitions, stalled), Start does not run the execution
// here: it stays unowned, Run returns as soon as its context ends, and
// another node runs it. (Started here, a recovery that read the execution
// before could resume it a second time.)
func TestEngine_StartDuringStartupLeavesItForAnyNode(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		store := &stallSaves{WorkflowStorage: s, entered: make(chan struct{}, 1)}
		var runs atomic.Int32
		work := func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "work", func(context.Context) (string, error) {
				runs.Add(1)
				return ctx.NodeID(), nil
			})
		}
		e := engine.New(store, fast("startup"))
		require.NoError(t, e.Register(engine.Dynamic(def("blocker"), func(*engine.Context, json.RawMessage) (any, error) { return nil, nil })))
		require.NoError(t, e.Register(engine.Dynamic(def("work"), work)))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		receive(t, store.entered)
		id, err := e.Start(t.Context(), "work", "v1", nil)
		require.NoError(t, err)
		exec, err := s.GetExecution(t.Context(), id)
		require.NoError(t, err)
		require.Nil(t, exec.NodeID, "left for any node")
		cancel()
		require.NoError(t, receive(t, done))
		require.Zero(t, runs.Load())

		exec = runAgain(t, s, "other", "work", work, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.JSONEq(t, `"other"`, string(exec.Output))
		require.EqualValues(t, 1, runs.Load())
	})
}

// TestEngine_OwnSweepClaimsItsPendingExecution: the node's heartbeats lapse
// (they fail), so its own sweep claims the execution it is about to start and
// bumps the version under it; ownership decides, and the workflow completes.
func TestEngine_OwnSweepClaimsItsPendingExecution(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		faulty := testutil.NewFaultyStorage(s,
			testutil.Fault{Method: "HeartbeatNode", Fail: true},
			testutil.Fault{Method: "UpdateExecutionStatusWithVersion", Call: 1, Delay: 1500 * time.Millisecond},
		)
		var runs atomic.Int64
		e := engine.New(faulty, fast("lapsed"))
		require.NoError(t, e.Register(engine.Dynamic(def("lapsed"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "once", func(context.Context) (int64, error) { return runs.Add(1), nil })
		})))
		run(t, e)
		id, err := e.Start(t.Context(), "lapsed", "v1", nil)
		require.NoError(t, err)
		exec := await(t, engine.New(s, fast("client")), id)
		require.Equal(t, models.ExecutionCompleted, exec.Status, "error: %v", exec.Error)
		require.EqualValues(t, 1, runs.Load())
		require.Greater(t, faulty.Calls("ClaimExecutions"), 0)
	})
}

// TestEngine_OwnedButNotRunIsTakenOver: a live node owns an execution it does
// not run (it gave up on it, or cannot run it); it does not beat for it, so
// another node takes it over and finishes it.
func TestEngine_OwnedButNotRunIsTakenOver(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		a := engine.New(s, fast("owner-a"))
		require.NoError(t, a.Register(engine.Dynamic(def("other"), func(*engine.Context, json.RawMessage) (any, error) { return nil, nil })))
		run(t, a)
		require.NoError(t, s.SaveDefinition(t.Context(), &models.WorkflowDefinition{ID: "left", Version: "v1", Name: "left"}))
		exec, err := s.CreateExecution(t.Context(), repository.NewExecution{DefinitionID: "left", DefinitionVersion: "v1", NodeID: "owner-a"})
		require.NoError(t, err)

		b := engine.New(s, fast("owner-b"))
		require.NoError(t, b.Register(engine.Dynamic(def("left"), func(*engine.Context, json.RawMessage) (any, error) { return "taken", nil })))
		run(t, b)
		done := await(t, b, exec.ExecutionID)
		require.Equal(t, models.ExecutionCompleted, done.Status)
		require.Equal(t, "owner-b", *done.NodeID)
	})
}
