package engine_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func sleeper(started chan<- string) engine.WorkflowFunc {
	return func(wctx *engine.Context, _ json.RawMessage) (any, error) {
		select { // a resumed run replays this line too
		case started <- wctx.ExecutionID():
		default:
		}
		if err := engine.Sleep(wctx, "nap", time.Hour); err != nil {
			return nil, err
		}
		return "rested", nil
	}
}

func TestEngine_CancelWakesSleepLocally(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		started := make(chan string, 1)
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("sleepy"), sleeper(started))))
		run(t, e)
		id, err := e.Start(t.Context(), "sleepy", "v1", nil)
		require.NoError(t, err)
		receive(t, started)
		require.NoError(t, e.Cancel(t.Context(), id))
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCancelled, exec.Status)
		require.NotNil(t, exec.CompletedAt)
		require.NoError(t, e.Cancel(t.Context(), id), "cancelling a terminal execution changes nothing")
		require.Equal(t, models.ExecutionCancelled, await(t, e, id).Status)
	})
}

// TestEngine_CancelFromAnotherNode: the owner learns of the cancel at its next
// heartbeat, wakes the sleeping workflow and stops it.
func TestEngine_CancelFromAnotherNode(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		started := make(chan string, 1)
		stoppedWith := make(chan error, 1)
		owner := engine.New(s, fast("owner"))
		require.NoError(t, owner.Register(engine.Dynamic(def("busy"), func(wctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(wctx, "work", func(c context.Context) (int, error) {
				started <- wctx.ExecutionID()
				<-c.Done() // a long step: the cancel ends its context
				stoppedWith <- context.Cause(c)
				return 0, c.Err()
			})
		})))
		run(t, owner)
		id, err := owner.Start(t.Context(), "busy", "v1", nil)
		require.NoError(t, err)
		receive(t, started)
		client := engine.New(s, fast("client"))
		require.NoError(t, client.Cancel(t.Context(), id))
		require.ErrorIs(t, receive(t, stoppedWith), engine.ErrCancelled)
		require.Equal(t, models.ExecutionCancelled, await(t, client, id).Status)
	})
}

// TestEngine_CancelParked: a parked execution is cancelled in the database;
// nothing of it runs again.
func TestEngine_CancelParked(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var after atomic.Int32
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("parked"), func(wctx *engine.Context, _ json.RawMessage) (any, error) {
			if err := engine.Sleep(wctx, "nap", time.Hour); err != nil {
				return nil, err
			}
			after.Add(1)
			return nil, nil
		})))
		run(t, e)
		id, err := e.Start(t.Context(), "parked", "v1", nil)
		require.NoError(t, err)
		waitParked(t, s, id)
		require.NoError(t, e.Cancel(t.Context(), id))
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCancelled, exec.Status)
		require.Nil(t, exec.NodeID)
		require.Zero(t, after.Load())
	})
}

func TestEngine_Timeout(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		started := make(chan string, 1)
		e := engine.New(s, fast("n1"))
		d := def("slow")
		d.Spec = models.JSON(`{"timeout":"100ms"}`)
		require.NoError(t, e.Register(engine.Dynamic(d, sleeper(started))))
		run(t, e)
		id, err := e.Start(t.Context(), "slow", "v1", nil)
		require.NoError(t, err)
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionTimedOut, exec.Status)
		require.Contains(t, *exec.Error, "timed out")
	})
}

// TestEngine_SleepSurvivesRestart: the wake-up time is journaled once; a
// resumed workflow sleeps what is left, not the whole duration again.
func TestEngine_SleepSurvivesRestart(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		started := make(chan string, 10)
		workflow := func(wctx *engine.Context, _ json.RawMessage) (any, error) {
			started <- wctx.NodeID()
			if err := engine.Sleep(wctx, "nap", 300*time.Millisecond); err != nil {
				return nil, err
			}
			return engine.Step(wctx, "after", func(context.Context) (time.Time, error) { return time.Now().UTC(), nil })
		}
		n1 := engine.New(s, fast("n1"))
		require.NoError(t, n1.Register(engine.Dynamic(def("nap"), workflow)))
		stop1 := run(t, n1)
		id, err := n1.Start(t.Context(), "nap", "v1", nil)
		require.NoError(t, err)
		receive(t, started)
		var h []models.StepExecution
		require.Eventually(t, func() bool { h = history(t, s, id); return len(h) == 1 && h[0].Status == models.StepCompleted }, time.Minute, 5*time.Millisecond,
			"the sleep is journaled")
		stop1()
		require.Equal(t, []string{"nap:COMPLETED"}, statuses(h))
		var wakeAt time.Time
		require.NoError(t, json.Unmarshal(h[0].Output, &wakeAt))

		// The same node comes back: its execution is its own and fresh.
		again := engine.New(s, fast("n1"))
		require.NoError(t, again.Register(engine.Dynamic(def("nap"), workflow)))
		run(t, again)
		exec := await(t, again, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		var after time.Time
		require.NoError(t, json.Unmarshal(exec.Output, &after))
		require.False(t, after.Before(wakeAt), "woke at %s, before the journaled %s", after, wakeAt)
		require.Equal(t, []string{"nap:COMPLETED", "after:COMPLETED"}, statuses(history(t, s, id)), "the sleep was not journaled again")
	})
}

// TestEngine_FencedNodeWritesNothing: an execution is transferred away while
// its node is inside a step (as if the node had been paused and presumed
// dead); the node's checkpoint is refused and it stops the workflow.
func TestEngine_FencedNodeWritesNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		inStep := make(chan struct{}, 1)
		release := make(chan struct{})
		stoppedWith := make(chan error, 1)
		e := engine.New(s, engine.Config{NodeID: "zombie", HeartbeatInterval: time.Hour, StaleThreshold: 2 * time.Hour, PollInterval: 20 * time.Millisecond})
		require.NoError(t, e.Register(engine.Dynamic(def("fenced"), func(wctx *engine.Context, _ json.RawMessage) (any, error) {
			_, err := engine.Step(wctx, "charge", func(context.Context) (string, error) {
				inStep <- struct{}{}
				<-release
				return "charged", nil
			})
			if err == nil { // charge's result is journaled with ship's start: both are fenced
				_, err = engine.Step(wctx, "ship", func(context.Context) (string, error) { return "shipped", nil })
			}
			stoppedWith <- err
			return nil, err
		})))
		run(t, e)
		id, err := e.Start(ctx, "fenced", "v1", nil)
		require.NoError(t, err)
		receive(t, inStep)
		cur, err := s.GetExecution(ctx, id)
		require.NoError(t, err)
		require.NoError(t, s.TransferOwnership(ctx, id, "successor", int64(cur.Version)))
		close(release)
		require.ErrorIs(t, receive(t, stoppedWith), engine.ErrOwnershipLost)

		cur, err = s.GetExecution(ctx, id)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionRunning, cur.Status, "the zombie did not finish it")
		require.Equal(t, "successor", *cur.NodeID)
		require.Equal(t, []string{"charge:RUNNING"}, statuses(history(t, s, id)), "the zombie's result was not written")
	})
}

// TestEngine_CrashLoopEndsFailed: a step whose attempts keep dying with their
// node fails the workflow instead of being resumed forever.
func TestEngine_CrashLoopEndsFailed(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		require.NoError(t, s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: "crashy", Version: "v1", Name: "crashy"}))
		exec, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "crashy", DefinitionVersion: "v1", NodeID: "dead"})
		require.NoError(t, err)
		require.NoError(t, s.UpdateExecutionStatus(ctx, exec.ExecutionID, models.ExecutionRunning))
		for attempt := 1; attempt <= 3; attempt++ { // three attempts that died with their node
			_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: exec.ExecutionID, StepID: "oom", NodeID: "dead", Attempt: attempt})
			require.NoError(t, err)
		}
		cfg := fast("n1")
		cfg.MaxStepCrashes = 3
		e := engine.New(s, cfg)
		ran := make(chan struct{}, 1)
		require.NoError(t, e.Register(engine.Dynamic(def("crashy"), func(wctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(wctx, "oom", func(context.Context) (int, error) { ran <- struct{}{}; return 1, nil })
		})))
		run(t, e)
		got := await(t, e, exec.ExecutionID)
		require.Equal(t, models.ExecutionFailed, got.Status)
		require.Contains(t, *got.Error, engine.ErrTooManyCrashes.Error())
		require.Empty(t, ran, "the step was not tried a fourth time")
	})
}

func TestEngine_MapAndParallel(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("fanout"), func(wctx *engine.Context, _ json.RawMessage) (any, error) {
			squares, err := engine.Map(wctx, []int{1, 2, 3, 4, 5}, 2, func(c *engine.Context, i int, n int) (int, error) {
				return engine.Step(c, "square-"+string(rune('a'+i)), func(context.Context) (int, error) { return n * n, nil })
			})
			if err != nil {
				return nil, err
			}
			err = engine.Parallel(wctx, 0,
				func(c *engine.Context) error { return engine.Sleep(c, "nap-1", time.Millisecond) },
				func(c *engine.Context) error { return engine.Sleep(c, "nap-2", time.Millisecond) },
			)
			return squares, err
		})))
		run(t, e)
		id, err := e.Start(t.Context(), "fanout", "v1", nil)
		require.NoError(t, err)
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.JSONEq(t, `[1,4,9,16,25]`, string(exec.Output))
		require.Len(t, history(t, s, id), 7)
	})
}
