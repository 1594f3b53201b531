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

// napper runs step "before", sleeps an hour, then returns the clock's time
// from step "after".
func napper(clock func() *workflowtest.Clock) *engine.Workflow[int, time.Time] {
	return engine.Define("napper", "v1", func(ctx *engine.Context, _ int) (time.Time, error) {
		if _, err := engine.Step(ctx, "before", func(context.Context) (int, error) { return 1, nil }); err != nil {
			return time.Time{}, err
		}
		if err := engine.Sleep(ctx, "nap", time.Hour); err != nil {
			return time.Time{}, err
		}
		return engine.Step(ctx, "after", func(context.Context) (time.Time, error) { return clock().Now(), nil })
	})
}

func TestTester_AdvanceBeforeTheWorkflowSleeps(t *testing.T) {
	t.Parallel()
	var tt *workflowtest.Tester
	w := napper(func() *workflowtest.Clock { return tt.Clock() })
	tt = workflowtest.New(t, w)
	start := tt.Clock().Now()

	// Hold the workflow in its first step.
	release := make(chan struct{})
	entered := make(chan struct{})
	tt.StubStep("before", func(context.Context) (any, error) {
		close(entered)
		<-release
		return 1, nil
	})
	h := workflowtest.Start(tt, w, 0)
	<-entered

	// Moving the clock itself does not reach a Sleep that has not begun: the
	// nap counts from the new time.
	tt.Clock().Advance(time.Hour)
	// Tester.Advance waits for the nap, whichever comes first: this call or
	// the nap (the release is not ordered with it).
	time.AfterFunc(10*time.Millisecond, func() { close(release) })
	tt.Advance(time.Hour)

	woke, err := workflowtest.Result(tt, h)
	require.NoError(t, err)
	require.True(t, start.Add(2*time.Hour).Equal(woke), "woke at %s, want start + 2h", woke.Sub(start))
	require.Zero(t, tt.StepRuns("before"), "stubbed")
	require.Equal(t, 1, tt.StepRuns("after"))
}

func TestTester_RetryBackoffFollowsTheClock(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	flaky := engine.Define("flaky", "v1", func(ctx *engine.Context, _ int) (int32, error) {
		return engine.Step(ctx, "call", func(context.Context) (int32, error) {
			if n := calls.Add(1); n < 3 {
				return 0, fmt.Errorf("attempt %d: service unavailable", n)
			}
			return calls.Load(), nil
		}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Minute, BackoffMultiplier: 2}))
	})
	tt := workflowtest.New(t, flaky)
	h := workflowtest.Start(tt, flaky, 0)
	tt.Advance(time.Minute)     // the first backoff
	tt.Advance(2 * time.Minute) // the second, doubled
	out, err := workflowtest.Result(tt, h)
	require.NoError(t, err)
	require.EqualValues(t, 3, out)
	require.Equal(t, 3, tt.StepRuns("call"), "every attempt counts")
}

func TestTester_WithTimeoutFiresOnAdvance(t *testing.T) {
	t.Parallel()
	slow := engine.Define("slow", "v1", func(ctx *engine.Context, _ int) (int, error) {
		return 0, engine.Sleep(ctx, "nap", 2*time.Hour)
	}, engine.WithTimeout(time.Hour))
	tt := workflowtest.New(t, slow)
	h := workflowtest.Start(tt, slow, 0)
	tt.Advance(time.Hour)
	_, err := workflowtest.Result(tt, h)
	require.ErrorIs(t, err, engine.ErrTimedOut)
	var we *engine.WorkflowError
	require.ErrorAs(t, err, &we)
	require.Equal(t, models.ExecutionTimedOut, we.Status)
}

func TestTester_CancelWakesASleepingWorkflow(t *testing.T) {
	t.Parallel()
	w := napper(nil)
	tt := workflowtest.New(t, w)
	h := workflowtest.Start(tt, w, 0)
	require.NoError(t, tt.Clock().BlockUntil(t.Context(), 1), "the workflow sleeps")
	require.NoError(t, tt.Engine().Cancel(t.Context(), h.ID()))
	_, err := workflowtest.Result(tt, h)
	require.ErrorIs(t, err, engine.ErrCancelled)
	require.Zero(t, tt.StepRuns("after"))
}

func TestTester_SignalsQueueAndAreReceivedInOrder(t *testing.T) {
	t.Parallel()
	collect := engine.Define("collect", "v1", func(ctx *engine.Context, n int) ([]string, error) {
		var got []string
		for range n {
			v, err := engine.AwaitSignal[string](ctx, "item", 0)
			if err != nil {
				return nil, err
			}
			got = append(got, v)
		}
		return got, nil
	})
	tt := workflowtest.New(t, collect)
	h := workflowtest.Start(tt, collect, 3)
	tt.Signal(h.ID(), "item", "a")
	tt.Signal(h.ID(), "item", "b")
	tt.Signal(h.ID(), "item", "c")
	out, err := workflowtest.Result(tt, h)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, out)

	// A signal nobody can receive fails the test.
	failures := failuresOf(func(t testing.TB) {
		tt := workflowtest.New(t, collect)
		h := workflowtest.Start(tt, collect, 0)
		if _, err := workflowtest.Result(tt, h); err != nil {
			t.Fatalf("%v", err)
		}
		tt.Signal(h.ID(), "item", "late")
	})
	require.Len(t, failures, 1)
	require.Contains(t, failures[0], "has ended")
}

func TestTester_StubStep(t *testing.T) {
	t.Parallel()
	var real atomic.Int32
	charge := engine.Define("charge", "v1", func(ctx *engine.Context, cents int) (string, error) {
		return engine.Step(ctx, "charge", func(context.Context) (string, error) {
			real.Add(1)
			return fmt.Sprintf("charged %d", cents), nil
		}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 2}))
	})
	tt := workflowtest.New(t, charge)

	// A stub's error fails the attempt; the retry policy applies.
	var stubCalls atomic.Int32
	tt.StubStep("charge", func(context.Context) (any, error) {
		if stubCalls.Add(1) == 1 {
			return nil, errors.New("card declined")
		}
		return "stubbed", nil
	})
	out, err := workflowtest.Run(tt, charge, 100)
	require.NoError(t, err)
	require.Equal(t, "stubbed", out)
	require.EqualValues(t, 2, stubCalls.Load())
	require.Zero(t, tt.StepRuns("charge"), "stub calls are not counted")

	// A result of the wrong type fails the step when it is decoded.
	tt.StubStep("charge", func(context.Context) (any, error) { return 42, nil })
	_, err = workflowtest.Run(tt, charge, 100)
	var we *engine.WorkflowError
	require.ErrorAs(t, err, &we)
	require.Equal(t, models.ExecutionFailed, we.Status)

	// A nil stub brings the function back.
	tt.StubStep("charge", nil)
	out, err = workflowtest.Run(tt, charge, 100)
	require.NoError(t, err)
	require.Equal(t, "charged 100", out)
	require.Equal(t, 1, tt.StepRuns("charge"))
	require.EqualValues(t, 1, real.Load())
}

func TestRunWithRestart_ResumesOnTheSameClock(t *testing.T) {
	t.Parallel()
	var tt *workflowtest.Tester
	w := napper(func() *workflowtest.Clock { return tt.Clock() })
	tt = workflowtest.New(t, w)
	start := tt.Clock().Now()
	// The test goroutine is inside RunWithRestart; move the clock from
	// another once the resumed workflow sleeps. The stop comes before the
	// nap, so the only timer is the new engine's.
	advanced := make(chan error, 1)
	go func() {
		err := tt.Clock().BlockUntil(t.Context(), 1)
		tt.Clock().Advance(time.Hour)
		advanced <- err
	}()
	woke, err := workflowtest.RunWithRestart(tt, w, 0, "before")
	require.NoError(t, err)
	require.NoError(t, <-advanced)
	require.True(t, start.Add(time.Hour).Equal(woke))
	require.Equal(t, 1, tt.StepRuns("before"), "completed before the stop: not run again")
	require.Equal(t, 1, tt.StepRuns("after"))
	require.Equal(t, "workflowtest-2", tt.Engine().NodeID())

	// A restart after the last step: the workflow returns while its engine
	// drains, and that engine finishes it; the nap, over already, does not
	// wait again.
	go func() {
		err := tt.Clock().BlockUntil(t.Context(), 1)
		tt.Clock().Advance(time.Hour)
		advanced <- err
	}()
	woke2, err := workflowtest.RunWithRestart(tt, w, 0, "after", engine.WithExecutionID("second"))
	require.NoError(t, err)
	require.NoError(t, <-advanced)
	require.True(t, start.Add(2*time.Hour).Equal(woke2))
	require.Equal(t, 2, tt.StepRuns("before"))
	require.Equal(t, 2, tt.StepRuns("after"))
	require.Equal(t, "workflowtest-3", tt.Engine().NodeID())
	exec, err := w.Handle(tt.Engine(), "second").Execution(t.Context())
	require.NoError(t, err)
	require.Equal(t, "workflowtest-2", *exec.NodeID, "finished by the draining engine")
}

func TestRunWithRestart_FailsWhenTheStepNeverCompletes(t *testing.T) {
	t.Parallel()
	failing := engine.Define("failing", "v1", func(ctx *engine.Context, _ int) (int, error) {
		return engine.Step(ctx, "boom", func(context.Context) (int, error) { return 0, errors.New("boom") })
	})
	var err error
	failures := failuresOf(func(t testing.TB) {
		tt := workflowtest.New(t, failing)
		_, err = workflowtest.RunWithRestart(tt, failing, 0, "boom")
	})
	require.Len(t, failures, 1)
	require.Contains(t, failures[0], `ended before step "boom" completed`)
	require.Error(t, err, "the workflow's own outcome is returned too")
}

func TestNew_FailsOnAnInvalidWorkflow(t *testing.T) {
	t.Parallel()
	invalid := engine.Define("", "v1", func(*engine.Context, int) (int, error) { return 0, nil })
	failures := failuresOf(func(t testing.TB) { workflowtest.New(t, invalid) })
	require.Len(t, failures, 1)
	require.Contains(t, failures[0], "registering workflow")
}

func TestTester_ConcurrentUse(t *testing.T) {
	t.Parallel()
	const n = 6
	w := engine.Define("wait-then-count", "v1", func(ctx *engine.Context, i int) (int, error) {
		if err := engine.Sleep(ctx, "nap", time.Hour); err != nil {
			return 0, err
		}
		bonus, err := engine.AwaitSignal[int](ctx, "go", 0)
		if err != nil {
			return 0, err
		}
		return engine.Step(ctx, "count", func(context.Context) (int, error) { return i + bonus, nil })
	})
	tt := workflowtest.New(t, w)

	handles := make([]*engine.Handle[int], n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			h, err := w.Start(t.Context(), tt.Engine(), i)
			if err == nil {
				handles[i] = h
			}
		})
	}
	wg.Wait()
	for _, h := range handles {
		require.NotNil(t, h)
	}
	require.NoError(t, tt.Clock().BlockUntil(t.Context(), n), "every workflow sleeps")
	tt.Advance(time.Hour)

	results := make([]int, n)
	errs := make([]error, n)
	for i, h := range handles {
		wg.Go(func() {
			if err := tt.Engine().Signal(t.Context(), h.ID(), "go", 100); err != nil {
				errs[i] = err
				return
			}
			results[i], errs[i] = workflowtest.Result(tt, h)
			_ = tt.StepRuns("count")
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, 100+i, results[i])
	}
	require.Equal(t, n, tt.StepRuns("count"))
}
