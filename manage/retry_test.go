package manage_test

import (
	"context"
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
)

// payment is a two-step workflow whose second step fails, non-retryably,
// until ok is set; it counts the runs of each step.
type payment struct {
	ok           atomic.Bool
	loads, tries atomic.Int32
}

func (p *payment) workflow() *engine.Workflow[struct{}, int] {
	return engine.Define("pay", "v1", func(ctx *engine.Context, _ struct{}) (int, error) {
		a, err := engine.Step(ctx, "load", func(context.Context) (int, error) {
			p.loads.Add(1)
			return 1, nil
		})
		if err != nil {
			return 0, err
		}
		return engine.Step(ctx, "charge", func(context.Context) (int, error) {
			p.tries.Add(1)
			if !p.ok.Load() {
				return 0, engine.NonRetryable(errors.New("card declined"))
			}
			return a + 1, nil
		}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 3}))
	})
}

func TestRetry_FailedRunsAgainFromTheStepThatFailed(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		p := &payment{}
		wf := p.workflow()
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		c := manage.New(s)

		h, err := wf.Start(ctx, e, struct{}{})
		require.NoError(t, err)
		failed := await(t, e, h.ID())
		require.Equal(t, models.ExecutionFailed, failed.Status)
		require.Contains(t, deref(failed.Error), "card declined")
		require.Equal(t, []string{"load#COMPLETED", "charge#FAILED"}, journal(t, s, h.ID()))

		p.ok.Store(true)
		retried, err := c.Retry(ctx, h.ID())
		require.NoError(t, err)
		require.Equal(t, models.ExecutionPending, retried.Status)
		require.Equal(t, failed.Version+1, retried.Version)
		require.Nil(t, retried.Error)

		out, err := h.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, out)
		require.EqualValues(t, 1, p.loads.Load(), "the completed step kept its result")
		require.EqualValues(t, 2, p.tries.Load())
		prefix := repository.RetiredStepPrefix(int64(retried.Version))
		require.Equal(t, []string{"load#COMPLETED", prefix + "charge#FAILED", "charge#COMPLETED"}, journal(t, s, h.ID()))

		d, err := c.Get(ctx, h.ID())
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCompleted, d.Execution.Status)
		require.Len(t, d.Steps, 3)
		require.Equal(t, 1, d.Steps[2].Attempt, "the failed step starts over at attempt 1")

		_, err = c.Retry(ctx, h.ID())
		require.ErrorIs(t, err, manage.ErrNotRetryable, "a COMPLETED execution")
		_, err = c.Retry(ctx, "nobody")
		require.ErrorIs(t, err, manage.ErrNotFound)
	})
}

// TestRetry_CancelledRunsAgain: a workflow cancelled mid-step (its journal
// row stays RUNNING) runs that step again after a retry, and not the one
// before it.
func TestRetry_CancelledRunsAgain(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		var loads atomic.Int32
		var block atomic.Bool
		block.Store(true)
		entered, left := make(chan struct{}, 1), make(chan struct{}, 1)
		wf := engine.Define("cancellable", "v1", func(ctx *engine.Context, _ struct{}) (string, error) {
			if _, err := engine.Step(ctx, "load", func(context.Context) (int, error) { return int(loads.Add(1)), nil }); err != nil {
				return "", err
			}
			return engine.Step(ctx, "wait", func(c context.Context) (string, error) {
				if !block.Load() {
					return "done", nil
				}
				entered <- struct{}{}
				<-c.Done()
				left <- struct{}{}
				return "", c.Err()
			})
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		c := manage.New(s)

		h, err := wf.Start(ctx, e, struct{}{})
		require.NoError(t, err)
		receive(t, entered)
		require.NoError(t, c.Cancel(ctx, h.ID()))
		receive(t, left) // the node noticed and stopped the step
		require.Equal(t, models.ExecutionCancelled, await(t, e, h.ID()).Status)
		require.NoError(t, c.Cancel(ctx, h.ID()), "cancelling an ended execution changes nothing")

		block.Store(false)
		retried, err := c.Retry(ctx, h.ID())
		require.NoError(t, err)
		out, err := h.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, "done", out)
		require.EqualValues(t, 1, loads.Load())
		prefix := repository.RetiredStepPrefix(int64(retried.Version))
		require.Equal(t, []string{"load#COMPLETED", prefix + "wait#RUNNING", "wait#COMPLETED"}, journal(t, s, h.ID()))
	})
}

// TestRetry_TimedOutRunsAgainWithAFreshTimeout: the timeout of a retried
// execution counts from the retry, not from its first start.
func TestRetry_TimedOutRunsAgainWithAFreshTimeout(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		var loads atomic.Int32
		var slow atomic.Bool
		slow.Store(true)
		const timeout = 700 * time.Millisecond
		wf := engine.Define("deadline", "v1", func(ctx *engine.Context, _ struct{}) (int, error) {
			if _, err := engine.Step(ctx, "load", func(context.Context) (int, error) { return int(loads.Add(1)), nil }); err != nil {
				return 0, err
			}
			return engine.Step(ctx, "work", func(c context.Context) (int, error) {
				if slow.Load() {
					<-c.Done()
					return 0, c.Err()
				}
				return 7, nil
			})
		}, engine.WithTimeout(timeout))
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		c := manage.New(s)

		h, err := wf.Start(ctx, e, struct{}{})
		require.NoError(t, err)
		require.Equal(t, models.ExecutionTimedOut, await(t, e, h.ID()).Status)
		first, err := s.GetExecution(ctx, h.ID())
		require.NoError(t, err)

		// Long after the first start, the retry still has its whole timeout.
		require.Eventually(t, func() bool { return time.Since(*first.StartedAt) > 2*timeout }, time.Minute, 10*time.Millisecond)
		slow.Store(false)
		retried, err := c.Retry(ctx, h.ID())
		require.NoError(t, err)
		out, err := h.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, 7, out)
		require.EqualValues(t, 1, loads.Load())
		done, err := s.GetExecution(ctx, h.ID())
		require.NoError(t, err)
		require.True(t, done.StartedAt.After(*first.StartedAt), "started anew by the retry")
		prefix := repository.RetiredStepPrefix(int64(retried.Version))
		require.Equal(t, []string{"load#COMPLETED", prefix + "work#RUNNING", "work#COMPLETED"}, journal(t, s, h.ID()))
	})
}

// TestRetry_ConcurrentRetriesRunItOnce: of retries at once, one wins, and
// the workflow runs its failed step once more, not once per retry.
func TestRetry_ConcurrentRetriesRunItOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		p := &payment{}
		wf := p.workflow()
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		c := manage.New(s)
		h, err := wf.Start(ctx, e, struct{}{})
		require.NoError(t, err)
		require.Equal(t, models.ExecutionFailed, await(t, e, h.ID()).Status)
		p.ok.Store(true)

		const n = 8
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				_, errs[i] = c.Retry(ctx, h.ID())
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
				continue
			}
			require.True(t, errors.Is(err, manage.ErrNotRetryable) || errors.Is(err, manage.ErrConcurrentUpdate), "%v", err)
		}
		require.Equal(t, 1, won)
		_, err = h.Result(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 2, p.tries.Load())
		require.EqualValues(t, 1, p.loads.Load())
	})
}

// TestRetry_RacingCancel: a retry and a cancel at once, many times, with an
// engine running: the execution ends COMPLETED (the cancel saw it FAILED,
// or came after it completed) or CANCELLED (it saw it PENDING or RUNNING),
// never stuck, and a CANCELLED one retries to completion.
func TestRetry_RacingCancel(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		p := &payment{}
		wf := p.workflow()
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		c := manage.New(s)
		for round := range 10 {
			p.ok.Store(false)
			h, err := wf.Start(ctx, e, struct{}{})
			require.NoError(t, err)
			require.Equal(t, models.ExecutionFailed, await(t, e, h.ID()).Status)
			p.ok.Store(true)
			var retryErr, cancelErr error
			var wg sync.WaitGroup
			wg.Go(func() { _, retryErr = c.Retry(ctx, h.ID()) })
			wg.Go(func() { cancelErr = c.Cancel(ctx, h.ID()) })
			wg.Wait()
			require.NoError(t, retryErr, "round %d", round)
			require.NoError(t, cancelErr, "round %d", round)
			end := await(t, e, h.ID())
			switch end.Status {
			case models.ExecutionCompleted:
			case models.ExecutionCancelled:
				_, err := c.Retry(ctx, h.ID())
				require.NoError(t, err)
				end = await(t, e, h.ID())
				require.Equal(t, models.ExecutionCompleted, end.Status, "round %d", round)
			default:
				t.Fatalf("round %d ended %s", round, end.Status)
			}
			_, err = h.Result(ctx)
			require.NoError(t, err)
		}
		require.EqualValues(t, 10, p.loads.Load(), "load ran once per execution, whatever the retries")
	})
}
