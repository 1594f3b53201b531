package workflowtest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/testutil/workflowtest"
)

// Adversarial tests of issue 8's workflow tester, as a user writes them.

// A signal sent at fake time T, before the wait's deadline, is received even
// when the test then advances past the deadline at once (before the workflow
// polled for it).
func TestAdversary8_SignalBeforeTheDeadlineWins(t *testing.T) {
	t.Parallel()
	wait := engine.Define("adv8-wait", "v1", func(ctx *engine.Context, doc string) (string, error) {
		by, err := engine.AwaitSignal[string](ctx, "approve", time.Hour)
		if errors.Is(err, engine.ErrSignalTimeout) {
			return "expired", nil
		}
		return "approved by " + by, err
	})
	for i := range 10 {
		tt := workflowtest.New(t, wait)
		signalled := workflowtest.Start(tt, wait, fmt.Sprint(i))
		other := workflowtest.Start(tt, wait, "other")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		require.NoError(t, tt.Clock().BlockUntil(ctx, 2), "both wait")
		cancel()
		// Sent through another node's engine, as a web process would: the
		// workflow finds it at its next poll, not at once.
		web := engine.New(tt.Storage(), engine.Config{NodeID: "web"})
		require.NoError(t, web.Signal(t.Context(), signalled.ID(), "approve", "bo"))
		tt.Advance(time.Hour)
		out, err := workflowtest.Result(tt, signalled)
		require.NoError(t, err)
		require.Equal(t, "approved by bo", out, "round %d: the signal came before the deadline", i)
		out, err = workflowtest.Result(tt, other)
		require.NoError(t, err)
		require.Equal(t, "expired", out)
	}
}

// Advance waits until some timer is due within d. With two workflows started
// one after the other, the documented way is to let both reach their wait
// (Clock().BlockUntil with 2) before advancing; then both expire.
func TestAdversary8_AdvanceWithTwoWorkflowsStartedTogether(t *testing.T) {
	t.Parallel()
	wait := engine.Define("adv8-two", "v1", func(ctx *engine.Context, doc string) (string, error) {
		// Some work before the wait, as real workflows have.
		if _, err := engine.Step(ctx, "prepare", func(context.Context) (string, error) { return doc, nil }); err != nil {
			return "", err
		}
		_, err := engine.AwaitSignal[string](ctx, "approve", time.Hour)
		if errors.Is(err, engine.ErrSignalTimeout) {
			return doc + ": expired", nil
		}
		return doc, err
	})
	for i := range 10 {
		tt := workflowtest.New(t, wait)
		first := workflowtest.Start(tt, wait, "first")
		second := workflowtest.Start(tt, wait, "second")
		ctx, cancel := context.WithTimeout(context.Background(), workflowtest.MaxWait)
		require.NoError(t, tt.Clock().BlockUntil(ctx, 2), "both workflows wait")
		cancel()
		tt.Advance(time.Hour)
		for _, h := range []*engine.Handle[string]{first, second} {
			out, err := workflowtest.Result(tt, h)
			require.NoError(t, err, "round %d", i)
			require.Contains(t, out, "expired")
		}
	}
}

// adv8AutoAdvance advances tt's clock by a second whenever a timer is
// pending (retry backoffs wait on the fake clock), until the test ends.
func adv8AutoAdvance(t *testing.T, tt *workflowtest.Tester) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for tt.Clock().BlockUntil(ctx, 1) == nil {
			tt.Clock().Advance(time.Second)
		}
	}()
}

// The workflow's timeout is earlier than its sleep: advancing past both ends
// it TIMED_OUT, never COMPLETED.
func TestAdversary8_TimeoutBeforeALongerSleep(t *testing.T) {
	t.Parallel()
	slow := engine.Define("adv8-slow", "v1", func(ctx *engine.Context, _ int) (string, error) {
		if err := engine.Sleep(ctx, "nap", 2*time.Hour); err != nil {
			return "", err
		}
		return engine.Step(ctx, "after", func(context.Context) (string, error) { return "woke", nil })
	}, engine.WithTimeout(time.Hour))
	for i := range 5 {
		tt := workflowtest.New(t, slow)
		h := workflowtest.Start(tt, slow, i)
		tt.Advance(3 * time.Hour)
		_, err := workflowtest.Result(tt, h)
		require.ErrorIs(t, err, engine.ErrTimedOut, "round %d", i)
		require.Zero(t, tt.StepRuns("after"))
	}
	// A timeout longer than the sleep leaves it be.
	ok := engine.Define("adv8-ok", "v1", func(ctx *engine.Context, _ int) (string, error) {
		if err := engine.Sleep(ctx, "nap", 30*time.Minute); err != nil {
			return "", err
		}
		return engine.Step(ctx, "after", func(context.Context) (string, error) { return "woke", nil })
	}, engine.WithTimeout(time.Hour))
	tt := workflowtest.New(t, ok)
	h := workflowtest.Start(tt, ok, 1)
	tt.Advance(30 * time.Minute)
	out, err := workflowtest.Result(tt, h)
	require.NoError(t, err)
	require.Equal(t, "woke", out)
}

// RunWithRestart after the last step, after a retried step, and before a
// sleep: no completed step runs again.
func TestAdversary8_RunWithRestartEdges(t *testing.T) {
	t.Parallel()
	var failOnce atomic.Bool
	flow := engine.Define("adv8-flow", "v1", func(ctx *engine.Context, n int) (string, error) {
		a, err := engine.Step(ctx, "a", func(context.Context) (string, error) { return "a", nil })
		if err != nil {
			return "", err
		}
		b, err := engine.Step(ctx, "b", func(context.Context) (string, error) {
			if failOnce.CompareAndSwap(false, true) {
				return "", errors.New("flaky")
			}
			return "b", nil
		}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Nanosecond}))
		if err != nil {
			return "", err
		}
		c, err := engine.Step(ctx, "c", func(context.Context) (string, error) { return fmt.Sprint(n), nil })
		return a + b + c, err
	})

	for _, after := range []string{"a", "b", "c"} {
		t.Run("after "+after, func(t *testing.T) {
			failOnce.Store(false)
			tt := workflowtest.New(t, flow)
			adv8AutoAdvance(t, tt)
			out, err := workflowtest.RunWithRestart(tt, flow, 7, after)
			require.NoError(t, err)
			require.Equal(t, "ab7", out)
			require.Equal(t, 1, tt.StepRuns("a"))
			require.Equal(t, 2, tt.StepRuns("b"), "one failed attempt, one that completed")
			require.Equal(t, 1, tt.StepRuns("c"))
			require.Equal(t, "workflowtest-2", tt.Engine().NodeID())
		})
	}
}

// A stub returning the wrong type fails the step with an error, it does not
// panic or hang; a stub's error is retried like the real function's.
func TestAdversary8_StubOfTheWrongType(t *testing.T) {
	t.Parallel()
	flow := engine.Define("adv8-typed", "v1", func(ctx *engine.Context, _ int) (int, error) {
		return engine.Step(ctx, "n", func(context.Context) (int, error) { return 1, nil })
	})
	tt := workflowtest.New(t, flow)
	tt.StubStep("n", func(context.Context) (any, error) { return "not a number", nil })
	_, err := workflowtest.Run(tt, flow, 1)
	var we *engine.WorkflowError
	require.ErrorAs(t, err, &we)
	require.Equal(t, models.ExecutionFailed, we.Status)

	var calls atomic.Int32
	retried := engine.Define("adv8-retried", "v1", func(ctx *engine.Context, _ int) (int, error) {
		return engine.Step(ctx, "n", func(context.Context) (int, error) { return 1, nil },
			engine.WithRetry(engine.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Nanosecond}))
	})
	tt2 := workflowtest.New(t, retried)
	adv8AutoAdvance(t, tt2)
	tt2.StubStep("n", func(context.Context) (any, error) {
		if calls.Add(1) < 3 {
			return nil, errors.New("down")
		}
		return 5, nil
	})
	out, err := workflowtest.Run(tt2, retried, 1)
	require.NoError(t, err)
	require.Equal(t, 5, out)
	require.Zero(t, tt2.StepRuns("n"))
}

// Many goroutines start, signal and advance one Tester under -race.
func TestAdversary8_ConcurrentSignalsAndAdvances(t *testing.T) {
	t.Parallel()
	flow := engine.Define("adv8-many", "v1", func(ctx *engine.Context, n int) (int, error) {
		if err := engine.Sleep(ctx, "s", time.Minute); err != nil {
			return 0, err
		}
		got, err := engine.AwaitSignal[int](ctx, "go", 0)
		return got + n, err
	})
	tt := workflowtest.New(t, flow)
	const n = 8
	handles := make([]*engine.Handle[int], n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			handles[i] = workflowtest.Start(tt, flow, i)
		}()
	}
	wg.Wait()
	require.NoError(t, tt.Clock().BlockUntil(t.Context(), n))
	tt.Advance(time.Minute)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tt.Signal(handles[i].ID(), "go", 100)
		}()
	}
	wg.Wait()
	for i, h := range handles {
		out, err := workflowtest.Result(tt, h)
		require.NoError(t, err)
		require.Equal(t, 100+i, out)
	}
}
