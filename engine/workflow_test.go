package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

type greeting struct {
	Name string `json:"name"`
}

type reply struct {
	Text  string `json:"text"`
	Steps int    `json:"steps"`
}

var greet = engine.Define("greet", "v1", func(ctx *engine.Context, in greeting) (reply, error) {
	text, err := engine.Step(ctx, "compose", func(context.Context) (string, error) { return "hello " + in.Name, nil })
	if err != nil {
		return reply{}, err
	}
	return reply{Text: text, Steps: 1}, nil
})

func countExecutions(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Model(&models.WorkflowExecution{}).Count(&n).Error)
	return n
}

func TestWorkflow_TypedStartAndResult(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(greet))
		run(t, e)

		h, err := greet.Start(t.Context(), e, greeting{Name: "ada"}, engine.WithLabels(map[string]string{"k": "v"}))
		require.NoError(t, err)
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, reply{Text: "hello ada", Steps: 1}, out)

		exec, err := h.Execution(t.Context())
		require.NoError(t, err)
		require.Equal(t, h.ID(), exec.ExecutionID)
		require.Equal(t, models.ExecutionCompleted, exec.Status)
		require.Equal(t, map[string]string{"k": "v"}, exec.Labels)

		// A handle made from the id alone sees the same result.
		again, err := greet.Handle(e, h.ID()).Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, out, again)
	})
}

func TestWorkflow_ResultOfFailedCancelledAndTimedOut(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		fails := engine.Define("fails", "v1", func(*engine.Context, int) (int, error) { return 0, errors.New("out of stock") })
		waits := engine.Define("waits", "v1", func(ctx *engine.Context, _ int) (int, error) {
			return 0, engine.Sleep(ctx, "nap", time.Hour)
		})
		slow := engine.Define("slow", "v1", func(ctx *engine.Context, _ int) (int, error) {
			return 0, engine.Sleep(ctx, "nap", time.Hour)
		}, engine.WithTimeout(100*time.Millisecond))
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(fails, waits, slow))
		run(t, e)

		h, err := fails.Start(t.Context(), e, 1)
		require.NoError(t, err)
		_, err = h.Result(t.Context())
		var wfErr *engine.WorkflowError
		require.ErrorAs(t, err, &wfErr)
		require.Equal(t, models.ExecutionFailed, wfErr.Status)
		require.Equal(t, h.ID(), wfErr.ExecutionID)
		require.Contains(t, wfErr.Message, "out of stock")
		require.NotErrorIs(t, err, engine.ErrCancelled)
		require.NotErrorIs(t, err, engine.ErrTimedOut)

		w, err := waits.Start(t.Context(), e, 1)
		require.NoError(t, err)
		require.NoError(t, e.Cancel(t.Context(), w.ID()))
		_, err = w.Result(t.Context())
		require.ErrorIs(t, err, engine.ErrCancelled)
		require.ErrorAs(t, err, &wfErr)
		require.Equal(t, models.ExecutionCancelled, wfErr.Status)

		sl, err := slow.Start(t.Context(), e, 1)
		require.NoError(t, err)
		_, err = sl.Result(t.Context())
		require.ErrorIs(t, err, engine.ErrTimedOut)
		require.NotErrorIs(t, err, engine.ErrCancelled)
	})
}

func TestWorkflow_ResultPassesContextErrors(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(greet))
		h, err := greet.Start(t.Context(), e, greeting{Name: "nobody runs me"})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err = h.Result(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		var wfErr *engine.WorkflowError
		require.False(t, errors.As(err, &wfErr))
	})
}

func TestWorkflow_UnencodableInputWritesNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		nums := engine.Define("nums", "v1", func(_ *engine.Context, in float64) (float64, error) { return in, nil })
		e := engine.New(s, fast("n1"))
		_, err := nums.Start(t.Context(), e, math.NaN())
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		_, err = e.Start(t.Context(), "nums", "v1", make(chan int))
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		require.Zero(t, countExecutions(t, s.DB()))
		_, err = s.GetDefinition(t.Context(), "nums", "v1")
		require.ErrorIs(t, err, repository.ErrNotFound, "nothing half-written: no definition either")
	})
}

func TestWorkflow_StartStoresTheDefinitionAndIsIdempotent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		// The starting engine neither registered nor ran the workflow: the
		// definition goes in with the first execution.
		client := engine.New(s, fast("client"))
		h1, err := greet.Start(t.Context(), client, greeting{Name: "bo"}, engine.WithExecutionID("greet-bo"))
		require.NoError(t, err)
		stored, err := s.GetDefinition(t.Context(), "greet", "v1")
		require.NoError(t, err)
		require.Equal(t, "greet", stored.Name)

		h2, err := greet.Start(t.Context(), client, greeting{Name: "bo"}, engine.WithExecutionID("greet-bo"))
		require.NoError(t, err)
		require.Equal(t, h1.ID(), h2.ID())
		_, err = greet.Start(t.Context(), client, greeting{Name: "someone else"}, engine.WithExecutionID("greet-bo"))
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		require.EqualValues(t, 1, countExecutions(t, s.DB()))

		worker := engine.New(s, fast("worker"))
		require.NoError(t, worker.Register(greet))
		run(t, worker)
		out, err := h1.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "hello bo", out.Text)
	})
}

func TestWorkflow_UnknownDefinitionIsNotFound(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		_, err := e.Start(t.Context(), "nobody-registered", "v1", nil)
		require.ErrorIs(t, err, engine.ErrNotFound)
		require.Zero(t, countExecutions(t, s.DB()))
	})
}

func TestWorkflow_DefinitionDeletedAfterFirstStartIsStoredAgain(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(greet))
		h, err := greet.Start(t.Context(), e, greeting{Name: "a"})
		require.NoError(t, err)
		require.NoError(t, s.DB().Where("execution_id = ?", h.ID()).Delete(&models.WorkflowExecution{}).Error)
		require.NoError(t, s.DeleteDefinition(t.Context(), "greet", "v1"))
		_, err = e.Start(t.Context(), "greet", "v1", greeting{Name: "b"})
		require.NoError(t, err)
	})
}

func TestWorkflow_StartTx(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		type account struct {
			ID   string `gorm:"primaryKey"`
			Name string
		}
		require.NoError(t, s.DB().Table("app_accounts_tx").AutoMigrate(&account{}))
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(greet))

		// Rolled back: neither the app's row nor the workflow exists.
		rollback := errors.New("the app changed its mind")
		var rolledBack string
		err := s.DB().WithContext(t.Context()).Transaction(func(tx *gorm.DB) error {
			require.NoError(t, tx.Table("app_accounts_tx").Create(&account{ID: "a1", Name: "ann"}).Error)
			h, err := greet.StartTx(t.Context(), e, tx, greeting{Name: "ann"})
			require.NoError(t, err)
			rolledBack = h.ID()
			return rollback
		})
		require.ErrorIs(t, err, rollback)
		_, err = s.GetExecution(t.Context(), rolledBack)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = s.GetDefinition(t.Context(), "greet", "v1")
		require.ErrorIs(t, err, repository.ErrNotFound, "the definition went with the rollback")

		// Committed (db.Begin form), with an idempotent id started twice in it.
		tx := s.DB().WithContext(t.Context()).Begin()
		require.NoError(t, tx.Error)
		require.NoError(t, tx.Table("app_accounts_tx").Create(&account{ID: "b1", Name: "bob"}).Error)
		h, err := greet.StartTx(t.Context(), e, tx, greeting{Name: "bob"}, engine.WithExecutionID("signup-b1"))
		require.NoError(t, err)
		_, err = greet.StartTx(t.Context(), e, tx, greeting{Name: "bob"}, engine.WithExecutionID("signup-b1"))
		require.NoError(t, err)
		_, err = greet.StartTx(t.Context(), e, tx, greeting{Name: "eve"}, engine.WithExecutionID("signup-b1"))
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		require.NoError(t, tx.Commit().Error, "an idempotent start must not abort the app's transaction")

		run(t, e) // picks it up at its first sweep
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "hello bob", out.Text)
		var n int64
		require.NoError(t, s.DB().Table("app_accounts_tx").Count(&n).Error)
		require.EqualValues(t, 1, n)
	})
}

func TestWorkflow_StartTxWhileRunningIsPickedUp(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(greet))
		run(t, e)
		var h *engine.Handle[reply]
		require.NoError(t, s.DB().WithContext(t.Context()).Transaction(func(tx *gorm.DB) error {
			var err error
			h, err = greet.StartTx(t.Context(), e, tx, greeting{Name: "cy"})
			return err
		}))
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "hello cy", out.Text)
	})
}

func TestWorkflow_RegisterRejectsMistakes(t *testing.T) {
	t.Parallel()
	e := engine.New(nil, engine.Config{})
	ok := engine.Define("ok", "v1", func(*engine.Context, int) (int, error) { return 1, nil })
	for name, w := range map[string]engine.Registrable{
		"no id":       engine.Define("", "v1", func(*engine.Context, int) (int, error) { return 1, nil }),
		"no version":  engine.Define("x", "", func(*engine.Context, int) (int, error) { return 1, nil }),
		"nil func":    engine.Define[int, int]("x", "v1", nil),
		"bad spec":    engine.Define("x", "v1", func(*engine.Context, int) (int, error) { return 1, nil }, engine.WithSpec(models.JSON(`{"timeout":"soon"}`))),
		"neg timeout": engine.Define("x", "v1", func(*engine.Context, int) (int, error) { return 1, nil }, engine.WithTimeout(-time.Second)),
		"dynamic":     engine.Dynamic(models.WorkflowDefinition{ID: "x"}, func(*engine.Context, json.RawMessage) (any, error) { return nil, nil }),
		"nil":         (*engine.Workflow[int, int])(nil),
	} {
		require.ErrorIs(t, e.Register(ok, w), repository.ErrInvalidArgument, name)
	}
}

func TestWorkflow_NonRetryableFailsAtOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		declined := errors.New("card declined")
		var runs atomic.Int32
		charge := engine.Define("charge", "v1", func(ctx *engine.Context, _ int) (string, error) {
			_, err := engine.Step(ctx, "charge", func(context.Context) (string, error) {
				runs.Add(1)
				return "", engine.NonRetryable(fmt.Errorf("charging: %w", declined))
			}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 5}), engine.WithErrors(declined))
			if errors.Is(err, declined) {
				return "declined", nil
			}
			return "charged", err
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(charge))
		run(t, e)
		h, err := charge.Start(t.Context(), e, 1)
		require.NoError(t, err)
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "declined", out)
		require.EqualValues(t, 1, runs.Load())
		require.Equal(t, []string{"charge:FAILED"}, statuses(history(t, s, h.ID())))
		require.Nil(t, engine.NonRetryable(nil))
		require.ErrorIs(t, engine.NonRetryable(declined), declined)
	})
}

func TestWorkflow_InterceptStepStubsAndCounts(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		var seen []string
		cfg := fast("n1")
		cfg.InterceptStep = func(ctx context.Context, step engine.StepInfo, next func(context.Context) (any, error)) (any, error) {
			seen = append(seen, fmt.Sprintf("%s#%d", step.StepID, step.Attempt))
			if step.StepID == "compose" {
				return "stubbed", nil
			}
			return next(ctx)
		}
		napper := engine.Define("napper", "v1", func(ctx *engine.Context, _ int) (string, error) {
			if err := engine.Sleep(ctx, "nap", time.Millisecond); err != nil {
				return "", err
			}
			return engine.Step(ctx, "compose", func(context.Context) (string, error) { return "real", nil })
		})
		e := engine.New(s, cfg)
		require.NoError(t, e.Register(napper))
		run(t, e)
		h, err := napper.Start(t.Context(), e, 0)
		require.NoError(t, err)
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "stubbed", out)
		require.Equal(t, []string{"compose#1"}, seen, "Sleep's own step is not the interceptor's")
	})
}
