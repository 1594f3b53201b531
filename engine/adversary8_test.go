package engine_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	glebarez "github.com/glebarez/sqlite"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Adversarial tests of issue 8 ("Native to a GORM app"), written as a user
// of the library would write them.

// adv8Ctx is a test context bounded by a minute.
func adv8Ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// adv8Count counts the rows of a workflow table.
func adv8Count(t *testing.T, s *repository.Storage, table string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, s.DB().WithContext(adv8Ctx(t)).Raw("SELECT count(*) FROM "+table).Scan(&n).Error)
	return n
}

// Input JSON cannot hold is ErrInvalidArgument, and nothing is written: no
// execution and no definition, through Start, StartTx and the untyped Start.
func TestAdversary8_UnencodableInputWritesNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		wf := engine.Define("adv8-any", "v1", func(_ *engine.Context, in any) (string, error) { return "ran", nil })
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		inputs := map[string]any{
			"NaN":          math.NaN(),
			"+Inf":         math.Inf(1),
			"channel":      make(chan int),
			"func":         func() {},
			"NUL":          "a\x00b",
			"NUL in key":   map[string]int{"a\x00": 1},
			"complex":      complex(1, 2),
			"nested NaN":   []any{1, map[string]float64{"x": math.NaN()}},
			"raw NUL":      json.RawMessage(`"\u0000"`),
			"raw invalid":  json.RawMessage(`{"a":`),
			"raw bad utf8": json.RawMessage("\"\xff\""),
		}
		for name, in := range inputs {
			_, err := wf.Start(ctx, e, in)
			require.ErrorIs(t, err, repository.ErrInvalidArgument, "Start, %s", name)
			_, err = wf.Start(ctx, e, in, engine.WithExecutionID("adv8-"+strings.ReplaceAll(name, " ", "-")))
			require.ErrorIs(t, err, repository.ErrInvalidArgument, "Start with id, %s", name)
			_, err = e.Start(ctx, "adv8-any", "v1", in)
			require.ErrorIs(t, err, repository.ErrInvalidArgument, "untyped Start, %s", name)
			err = s.DB().WithContext(ctx).Transaction(func(tx *gorm.DB) error {
				_, err := wf.StartTx(ctx, e, tx, in)
				return err
			})
			require.ErrorIs(t, err, repository.ErrInvalidArgument, "StartTx, %s", name)
		}
		require.Zero(t, adv8Count(t, s, "workflow_executions"))
		require.Zero(t, adv8Count(t, s, "workflow_definitions"))
	})
}

// A Go string with invalid UTF-8 cannot be held by JSON: encoding/json would
// silently replace the bytes by U+FFFD and the workflow would get another
// input than the caller gave. The README promises "an input JSON cannot hold
// is repository.ErrInvalidArgument, and nothing is written" (and an output
// with invalid UTF-8 fails the workflow).
func TestAdversary8_InvalidUTF8InputIsRefused(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		wf := engine.Define("adv8-utf8", "v1", func(_ *engine.Context, in string) (string, error) { return in, nil })
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		h, err := wf.Start(ctx, e, "caf\xe9")
		if err == nil {
			out, rerr := h.Result(ctx)
			require.NoError(t, rerr)
			require.Equal(t, "caf\xe9", out, "the workflow got another input than the caller gave")
		}
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
	})
}

type adv8Out struct {
	N    int               `json:"n"`
	Tags []string          `json:"tags"`
	M    map[string]string `json:"m"`
}

// Result decodes every kind of Out; zero values and nil pointers come back as
// they went in.
func TestAdversary8_ResultOfManyOutTypes(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		ptr := engine.Define("adv8-ptr", "v1", func(_ *engine.Context, n int) (*adv8Out, error) {
			if n == 0 {
				return nil, nil
			}
			return &adv8Out{N: n, Tags: []string{"a"}}, nil
		})
		slice := engine.Define("adv8-slice", "v1", func(_ *engine.Context, n int) ([]int, error) {
			if n == 0 {
				return nil, nil
			}
			return make([]int, n), nil
		})
		raw := engine.Define("adv8-raw", "v1", func(_ *engine.Context, in json.RawMessage) (json.RawMessage, error) {
			return in, nil
		})
		iface := engine.Define("adv8-iface", "v1", func(_ *engine.Context, in any) (any, error) { return in, nil })
		zero := engine.Define("adv8-zero", "v1", func(_ *engine.Context, in adv8Out) (adv8Out, error) { return in, nil })
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(ptr, slice, raw, iface, zero))
		run(t, e)

		h1, err := ptr.Start(ctx, e, 0)
		require.NoError(t, err)
		p, err := h1.Result(ctx)
		require.NoError(t, err)
		require.Nil(t, p)
		h2, err := ptr.Start(ctx, e, 3)
		require.NoError(t, err)
		p, err = h2.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, &adv8Out{N: 3, Tags: []string{"a"}}, p)

		h3, err := slice.Start(ctx, e, 2)
		require.NoError(t, err)
		sl, err := h3.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, []int{0, 0}, sl)

		h4, err := raw.Start(ctx, e, json.RawMessage(`{"b": [1, 2], "a": "x"}`))
		require.NoError(t, err)
		r, err := h4.Result(ctx)
		require.NoError(t, err)
		require.JSONEq(t, `{"a":"x","b":[1,2]}`, string(r))
		h4n, err := raw.Start(ctx, e, nil)
		require.NoError(t, err)
		r, err = h4n.Result(ctx)
		require.NoError(t, err)
		require.True(t, len(r) == 0 || string(r) == "null", "got %q", r)

		h5, err := iface.Start(ctx, e, map[string]any{"k": []any{"v", 1.5, true, nil}})
		require.NoError(t, err)
		i, err := h5.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, map[string]any{"k": []any{"v", 1.5, true, nil}}, i)

		h6, err := zero.Start(ctx, e, adv8Out{})
		require.NoError(t, err)
		z, err := h6.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, adv8Out{}, z)
	})
}

// Result of FAILED, CANCELLED and TIMED_OUT executions: a *WorkflowError with
// the right status, errors.Is holding only for the matching sentinel; ctx
// errors and an unknown id come as they are.
func TestAdversary8_ResultOfEveryEnd(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		boom := errors.New("boom")
		failing := engine.Define("adv8-fail", "v1", func(ctx *engine.Context, _ int) (int, error) {
			return 0, fmt.Errorf("wrapped: %w", boom)
		})
		waiting := engine.Define("adv8-wait", "v1", func(ctx *engine.Context, _ int) (int, error) {
			return engine.AwaitSignal[int](ctx, "never", 0)
		})
		slow := engine.Define("adv8-slow", "v1", func(ctx *engine.Context, _ int) (int, error) {
			return 0, engine.Sleep(ctx, "long", time.Hour)
		}, engine.WithTimeout(200*time.Millisecond))
		nonRetry := engine.Define("adv8-nonretry", "v1", func(ctx *engine.Context, _ int) (int, error) {
			var attempts int
			// The StepError matches boom because it is declared (WithErrors),
			// as for any step failure; NonRetryable only stops the retries.
			_, err := engine.Step(ctx, "s", func(context.Context) (int, error) {
				attempts++
				return 0, engine.NonRetryable(boom)
			}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond}), engine.WithErrors(boom))
			if !errors.Is(err, boom) {
				return 0, fmt.Errorf("step error %v does not match boom", err)
			}
			return attempts, nil
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(failing, waiting, slow, nonRetry))
		run(t, e)

		check := func(err error, id string, status models.ExecutionStatus) {
			t.Helper()
			var we *engine.WorkflowError
			require.ErrorAs(t, err, &we)
			require.Equal(t, id, we.ExecutionID)
			require.Equal(t, status, we.Status)
			require.Equal(t, status == models.ExecutionCancelled, errors.Is(err, engine.ErrCancelled))
			require.Equal(t, status == models.ExecutionTimedOut, errors.Is(err, engine.ErrTimedOut))
			require.NotErrorIs(t, err, context.Canceled)
			require.NotErrorIs(t, err, context.DeadlineExceeded)
		}

		h, err := failing.Start(ctx, e, 1)
		require.NoError(t, err)
		out, err := h.Result(ctx)
		check(err, h.ID(), models.ExecutionFailed)
		require.Zero(t, out)
		require.Contains(t, err.Error(), "boom")

		h, err = waiting.Start(ctx, e, 1)
		require.NoError(t, err)
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err = h.Result(short)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded, "ctx errors come as they are")
		var we *engine.WorkflowError
		require.False(t, errors.As(err, &we))
		require.NoError(t, e.Cancel(ctx, h.ID()))
		_, err = h.Result(ctx)
		check(err, h.ID(), models.ExecutionCancelled)

		gone, cancelGone := context.WithCancel(ctx)
		cancelGone()
		_, err = h.Result(gone)
		// The execution has ended; a cancelled ctx may still read it, or say
		// context.Canceled; it must not be anything else.
		if err != nil {
			var we *engine.WorkflowError
			if !errors.As(err, &we) {
				require.ErrorIs(t, err, context.Canceled)
			}
		}

		h, err = slow.Start(ctx, e, 1)
		require.NoError(t, err)
		_, err = h.Result(ctx)
		check(err, h.ID(), models.ExecutionTimedOut)

		hn, err := nonRetry.Start(ctx, e, 1)
		require.NoError(t, err)
		attempts, err := hn.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, attempts, "NonRetryable is not retried")

		missing := failing.Handle(e, "adv8-no-such-execution")
		require.Equal(t, "adv8-no-such-execution", missing.ID())
		_, err = missing.Result(ctx)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = missing.Execution(ctx)
		require.ErrorIs(t, err, repository.ErrNotFound)
	})
}

// Idempotent start compares inputs "as a JSON value": two int64 inputs that
// differ must not be taken for the same start, even beyond 2^53 where a
// float64 cannot tell them apart.
func TestAdversary8_IdempotentStartTellsLargeIntegersApart(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		wf := engine.Define("adv8-big", "v1", func(_ *engine.Context, n int64) (int64, error) { return n, nil })
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		const big = int64(1)<<53 + 1
		_, err := wf.Start(ctx, e, big, engine.WithExecutionID("adv8-big-1"))
		require.NoError(t, err)
		_, err = wf.Start(ctx, e, big, engine.WithExecutionID("adv8-big-1"))
		require.NoError(t, err, "the same input")
		_, err = wf.Start(ctx, e, big-1, engine.WithExecutionID("adv8-big-1"))
		require.ErrorIs(t, err, repository.ErrAlreadyExists, "another input (%d, not %d) is not the same start", big-1, big)

		// The same value written differently is the same start.
		raw := engine.Define("adv8-raw-same", "v1", func(_ *engine.Context, in json.RawMessage) (int, error) { return 0, nil })
		require.NoError(t, e.Register(raw))
		_, err = raw.Start(ctx, e, json.RawMessage(`{"a": 1.0, "b": [1e2]}`), engine.WithExecutionID("adv8-raw-1"))
		require.NoError(t, err)
		_, err = raw.Start(ctx, e, json.RawMessage(`{"b":[100],"a":1}`), engine.WithExecutionID("adv8-raw-1"))
		require.NoError(t, err, "the same JSON value")
		_, err = raw.Start(ctx, e, json.RawMessage(`{"b":[100],"a":1.000000000000000001}`), engine.WithExecutionID("adv8-raw-1"))
		require.ErrorIs(t, err, repository.ErrAlreadyExists, "another JSON number")
	})
}

// StartTx: the execution and the definition exist iff the transaction
// commits, in db.Transaction (error, panic) and db.Begin form; a running
// engine picks a committed one up; WithExecutionID is idempotent in the
// transaction and does not abort it; a refused start leaves the transaction
// usable.
func TestAdversary8_StartTxExistsIffCommit(t *testing.T) {
	t.Parallel()
	testutil.ForEachDriver(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		var ran atomic.Int32
		wf := engine.Define("adv8-tx", "v1", func(ctx *engine.Context, in string) (string, error) {
			return engine.Step(ctx, "s", func(context.Context) (string, error) {
				ran.Add(1)
				return "done " + in, nil
			})
		})
		// An engine that never registered the workflow starts it: the
		// definition must come with the execution.
		starter := engine.New(s, fast("starter"))
		db := s.DB().WithContext(ctx)
		require.NoError(t, db.Exec("CREATE TABLE adv8_app_rows (id INTEGER PRIMARY KEY, note TEXT)").Error)

		rollback := errors.New("app says no")
		err := db.Transaction(func(tx *gorm.DB) error {
			require.NoError(t, tx.Exec("INSERT INTO adv8_app_rows (id, note) VALUES (1, 'x')").Error)
			_, err := wf.StartTx(ctx, starter, tx, "a", engine.WithExecutionID("adv8-rolled-back"))
			require.NoError(t, err)
			return rollback
		})
		require.ErrorIs(t, err, rollback)
		require.Zero(t, adv8Count(t, s, "workflow_executions"))
		require.Zero(t, adv8Count(t, s, "workflow_definitions"), "the definition is stored only if the tx commits")
		require.Zero(t, adv8Count(t, s, "adv8_app_rows"))

		func() {
			defer func() { require.NotNil(t, recover()) }()
			_ = db.Transaction(func(tx *gorm.DB) error {
				_, err := wf.StartTx(ctx, starter, tx, "a", engine.WithExecutionID("adv8-panicked"))
				require.NoError(t, err)
				panic("app panics")
			})
		}()
		require.Zero(t, adv8Count(t, s, "workflow_executions"))

		tx := db.Begin()
		require.NoError(t, tx.Error)
		_, err = wf.StartTx(ctx, starter, tx, "b", engine.WithExecutionID("adv8-begin-rollback"))
		require.NoError(t, err)
		require.NoError(t, tx.Rollback().Error)
		require.Zero(t, adv8Count(t, s, "workflow_executions"))

		// Committed, with an idempotent repeat and a refused conflict in the
		// same transaction, then the app's own write: all commit.
		tx = db.Begin()
		require.NoError(t, tx.Error)
		h, err := wf.StartTx(ctx, starter, tx, "c", engine.WithExecutionID("adv8-committed"))
		require.NoError(t, err)
		h2, err := wf.StartTx(ctx, starter, tx, "c", engine.WithExecutionID("adv8-committed"))
		require.NoError(t, err, "idempotent inside the transaction")
		require.Equal(t, h.ID(), h2.ID())
		_, err = wf.StartTx(ctx, starter, tx, "other", engine.WithExecutionID("adv8-committed"))
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		require.NoError(t, tx.Exec("INSERT INTO adv8_app_rows (id, note) VALUES (2, 'y')").Error, "the transaction is still usable")
		require.NoError(t, tx.Commit().Error)
		require.EqualValues(t, 1, adv8Count(t, s, "workflow_executions"))
		require.EqualValues(t, 1, adv8Count(t, s, "adv8_app_rows"))
		def, err := s.GetDefinition(ctx, "adv8-tx", "v1")
		require.NoError(t, err)
		require.Equal(t, "adv8-tx", def.Name)

		// Idempotent StartTx after the commit, in another transaction.
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
			_, err := wf.StartTx(ctx, starter, tx, "c", engine.WithExecutionID("adv8-committed"))
			return err
		}))

		runner := engine.New(s, fast("runner"))
		require.NoError(t, runner.Register(wf))
		run(t, runner)
		out, err := h.Result(ctx) // the starter's handle: it never ran anything
		require.NoError(t, err)
		require.Equal(t, "done c", out)
		require.EqualValues(t, 1, ran.Load())

		// A *gorm.DB that is not a transaction is refused, nothing written.
		_, err = wf.StartTx(ctx, starter, s.DB(), "d")
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		_, err = wf.StartTx(ctx, starter, nil, "d")
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
		require.EqualValues(t, 1, adv8Count(t, s, "workflow_executions"))
	})
}

// Start of a registered workflow never meets "definition not found", even
// when the definitions were deleted after a first Start; a workflow neither
// registered nor stored is ErrNotFound and writes nothing, on every driver.
func TestAdversary8_StartMakesSureOfTheDefinition(t *testing.T) {
	t.Parallel()
	testutil.ForEachDriver(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		wf := engine.Define("adv8-def", "v1", func(_ *engine.Context, n int) (int, error) { return n, nil })
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		_, err := wf.Start(ctx, e, 1)
		require.NoError(t, err)
		db := s.DB().WithContext(ctx)
		for _, table := range []string{"signals", "step_executions", "workflow_execution_labels", "workflow_executions", "workflow_definitions"} {
			require.NoError(t, db.Exec("DELETE FROM "+table).Error)
		}
		_, err = wf.Start(ctx, e, 2)
		require.NoError(t, err, "the definition was deleted after the first Start")
		_, err = e.Start(ctx, "adv8-def", "v1", 3)
		require.NoError(t, err, "untyped Start of the registered workflow")
		require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
			_, err := wf.StartTx(ctx, e, tx, 4)
			return err
		}))

		_, err = e.Start(ctx, "adv8-nobody", "v1", 1)
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = e.Start(ctx, "adv8-nobody", "v1", 1, engine.WithExecutionID("adv8-nobody-1"), engine.WithLabels(map[string]string{"k": "v"}))
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = e.Start(ctx, "adv8-def", "v2", 1)
		require.ErrorIs(t, err, repository.ErrNotFound, "another version of a registered workflow")
		require.EqualValues(t, 3, adv8Count(t, s, "workflow_executions"))
		require.EqualValues(t, 0, adv8Count(t, s, "workflow_execution_labels"))
		require.EqualValues(t, 1, adv8Count(t, s, "workflow_definitions"))
	})
}

// One *Workflow registered on two running engines, started through a third
// that never registered it: every execution runs exactly once.
func TestAdversary8_OneWorkflowOnManyEngines(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		var mu sync.Mutex
		runs := map[int]int{}
		wf := engine.Define("adv8-shared", "v1", func(ctx *engine.Context, n int) (int, error) {
			return engine.Step(ctx, "count", func(context.Context) (int, error) {
				mu.Lock()
				runs[n]++
				mu.Unlock()
				return n * 2, nil
			})
		})
		// No node may be presumed dead under a loaded CI machine: a takeover
		// would rightly run a step again (at least once), and this test is
		// about sharing one Workflow, not about takeovers.
		patient := func(node string) engine.Config {
			cfg := fast(node)
			cfg.StaleThreshold = time.Minute
			return cfg
		}
		a, b, c := engine.New(s, patient("a")), engine.New(s, patient("b")), engine.New(s, patient("c"))
		require.NoError(t, a.Register(wf))
		require.NoError(t, a.Register(wf, wf), "registering twice replaces")
		require.NoError(t, b.Register(wf))
		run(t, a)
		run(t, b)
		const n = 20
		handles := make([]*engine.Handle[int], n)
		for i := range n {
			starter := []*engine.Engine{a, b, c}[i%3]
			h, err := wf.Start(ctx, starter, i)
			require.NoError(t, err)
			handles[i] = h
		}
		for i, h := range handles {
			out, err := h.Result(ctx)
			require.NoError(t, err)
			require.Equal(t, 2*i, out)
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range n {
			require.Equal(t, 1, runs[i], "execution %d", i)
		}
	})
}

// Many concurrent idempotent Starts of one id, through several engines:
// exactly one execution, one run, and every Start answers the same id.
func TestAdversary8_ConcurrentIdempotentStarts(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		var ran atomic.Int32
		wf := engine.Define("adv8-once", "v1", func(ctx *engine.Context, in string) (string, error) {
			return engine.Step(ctx, "s", func(context.Context) (string, error) {
				ran.Add(1)
				return in, nil
			})
		})
		engines := []*engine.Engine{engine.New(s, fast("a")), engine.New(s, fast("b"))}
		for _, e := range engines {
			require.NoError(t, e.Register(wf))
			run(t, e)
		}
		const n = 16
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := wf.Start(ctx, engines[i%2], "x", engine.WithExecutionID("adv8-once-1"))
				if err == nil && h.ID() != "adv8-once-1" {
					err = fmt.Errorf("handle of %s", h.ID())
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		out, err := wf.Handle(engines[0], "adv8-once-1").Result(ctx)
		require.NoError(t, err)
		require.Equal(t, "x", out)
		require.EqualValues(t, 1, ran.Load())
		require.EqualValues(t, 1, adv8Count(t, s, "workflow_executions"))
	})
}

// A Signal racing the workflow's end is either stored (nil) while the
// execution is live or refused with ErrExecutionEnded; never another error,
// and none is stored once the execution has ended.
func TestAdversary8_SignalRacingTheEnd(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		wf := engine.Define("adv8-sig", "v1", func(ctx *engine.Context, _ int) (int, error) {
			return engine.AwaitSignal[int](ctx, "go", 0)
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		for round := range 5 {
			h, err := wf.Start(ctx, e, round)
			require.NoError(t, err)
			var wg sync.WaitGroup
			var accepted atomic.Int32
			errs := make(chan error, 4)
			for g := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						err := e.Signal(ctx, h.ID(), "go", g)
						switch {
						case err == nil:
							accepted.Add(1)
							continue
						case errors.Is(err, engine.ErrExecutionEnded):
							return
						default:
							errs <- err
							return
						}
					}
				}()
			}
			_, err = h.Result(ctx)
			require.NoError(t, err)
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			exec, err := h.Execution(ctx)
			require.NoError(t, err)
			require.NotNil(t, exec.CompletedAt)
			require.Positive(t, accepted.Load())
			// Nothing lands after the end, and every accepted signal is either
			// the one received or still stored (none lost, none doubled).
			err = e.Signal(ctx, h.ID(), "go", 1)
			require.ErrorIs(t, err, engine.ErrExecutionEnded)
			require.Equal(t, exec.Status, models.ExecutionCompleted)
			var left int64
			require.NoError(t, s.DB().WithContext(ctx).Raw("SELECT count(*) FROM signals WHERE execution_id = ?", h.ID()).Scan(&left).Error)
			require.EqualValues(t, accepted.Load()-1, left)
		}
	})
}

// Cancel racing Start of the same id: the execution ends CANCELLED or
// completes, Result says which, and nothing hangs.
func TestAdversary8_CancelRacingStart(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		wf := engine.Define("adv8-cancel", "v1", func(ctx *engine.Context, _ int) (int, error) {
			return engine.AwaitSignal[int](ctx, "never", 0)
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		for i := range 10 {
			id := fmt.Sprintf("adv8-cancel-%d", i)
			cancelled := make(chan error, 1)
			go func() {
				for {
					err := e.Cancel(ctx, id)
					if !errors.Is(err, repository.ErrNotFound) || ctx.Err() != nil {
						cancelled <- err
						return
					}
				}
			}()
			h, err := wf.Start(ctx, e, i, engine.WithExecutionID(id))
			require.NoError(t, err)
			require.NoError(t, <-cancelled)
			_, err = h.Result(ctx)
			require.ErrorIs(t, err, engine.ErrCancelled)
		}
	})
}

// Start racing Run's start-up and shutdown: every execution started is run
// exactly once by some engine in the end.
func TestAdversary8_StartRacingRunStartAndStop(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv8Ctx(t)
		var mu sync.Mutex
		runs := map[string]int{}
		wf := engine.Define("adv8-flap", "v1", func(ctx *engine.Context, _ int) (int, error) {
			_, err := engine.Step(ctx, "s", func(context.Context) (int, error) {
				mu.Lock()
				runs[ctx.ExecutionID()]++
				mu.Unlock()
				return 0, nil
			})
			return 0, err
		})
		var ids []string
		for round := range 5 {
			e := engine.New(s, fast(fmt.Sprintf("flap-%d", round)))
			require.NoError(t, e.Register(wf))
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- e.Run(runCtx) }()
			for i := range 4 {
				if i == 2 {
					stop()
				}
				h, err := wf.Start(ctx, e, i)
				require.NoError(t, err)
				ids = append(ids, h.ID())
			}
			stop()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-ctx.Done():
				t.Fatal("Run did not return")
			}
		}
		final := engine.New(s, fast("final"))
		require.NoError(t, final.Register(wf))
		run(t, final)
		for _, id := range ids {
			_, err := wf.Handle(final, id).Result(ctx)
			require.NoError(t, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			require.Equal(t, 1, runs[id], "execution %s", id)
		}
	})
}

// Define's mistakes are reported by Register and Start, as ErrInvalidArgument.
func TestAdversary8_BadDefinitions(t *testing.T) {
	s := testutil.NewSQLiteStorage(t)
	ctx := adv8Ctx(t)
	e := engine.New(s, fast("n1"))
	fn := func(*engine.Context, int) (int, error) { return 0, nil }
	for name, wf := range map[string]*engine.Workflow[int, int]{
		"empty id":         engine.Define("", "v1", fn),
		"empty version":    engine.Define("x", "", fn),
		"nil fn":           engine.Define[int, int]("x", "v1", nil),
		"negative timeout": engine.Define("x", "v1", fn, engine.WithTimeout(-time.Second)),
		"bad spec":         engine.Define("x", "v1", fn, engine.WithSpec(models.JSON(`{"timeout": "soon"}`))),
		"spec not JSON":    engine.Define("x", "v1", fn, engine.WithSpec(models.JSON(`{`))),
	} {
		require.ErrorIs(t, e.Register(wf), repository.ErrInvalidArgument, name)
		_, err := wf.Start(ctx, e, 1)
		require.ErrorIs(t, err, repository.ErrInvalidArgument, name)
	}
	var nilWf *engine.Workflow[int, int]
	require.ErrorIs(t, e.Register(nilWf), repository.ErrInvalidArgument)
	require.ErrorIs(t, e.Register(nil), repository.ErrInvalidArgument)
	require.Zero(t, adv8Count(t, s, "workflow_executions"))
	require.Zero(t, adv8Count(t, s, "workflow_definitions"))
}

// adv8Logger is an app's GORM logger that records every failing statement
// and every error or warning message.
type adv8Logger struct {
	mu     sync.Mutex
	errors []string
}

func (l *adv8Logger) LogMode(logger.LogLevel) logger.Interface { return l }
func (l *adv8Logger) Info(context.Context, string, ...any)     {}
func (l *adv8Logger) Warn(_ context.Context, msg string, args ...any) {
	l.add("warn: " + fmt.Sprintf(msg, args...))
}
func (l *adv8Logger) Error(_ context.Context, msg string, args ...any) {
	l.add("error: " + fmt.Sprintf(msg, args...))
}
func (l *adv8Logger) Trace(_ context.Context, _ time.Time, fc func() (string, int64), err error) {
	if err != nil {
		sql, _ := fc()
		l.add(fmt.Sprintf("statement failed: %v: %s", err, sql))
	}
}
func (l *adv8Logger) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, s)
}
func (l *adv8Logger) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.errors
	l.errors = nil
	return out
}

// The library's expected outcomes (an idempotent start, a conflicting start,
// a missing id read through the engine, a signal to a missing or ended
// execution, a cancel of an ended one, a start of an unknown workflow) do not
// reach the app's GORM logger as failing statements, on every driver an app
// may open, with or without TranslateError.
func TestAdversary8_ExpectedOutcomesAreNotLoggedAsErrors(t *testing.T) {
	t.Parallel()
	type opener func(t *testing.T, cfg *gorm.Config) *gorm.DB
	openers := map[string]opener{
		"glebarez-file": func(t *testing.T, cfg *gorm.Config) *gorm.DB {
			db, err := gorm.Open(glebarez.Open(filepath.Join(t.TempDir(), "app.db")), cfg)
			require.NoError(t, err)
			t.Cleanup(func() { sqlDB, _ := db.DB(); _ = sqlDB.Close() })
			return db
		},
		"mattn-file": func(t *testing.T, cfg *gorm.Config) *gorm.DB {
			db, err := gorm.Open(sqlite.Open(filepath.Join(t.TempDir(), "app.db")), cfg)
			require.NoError(t, err)
			t.Cleanup(func() { sqlDB, _ := db.DB(); _ = sqlDB.Close() })
			return db
		},
		"postgres-conn": func(t *testing.T, cfg *gorm.Config) *gorm.DB {
			sqlDB, err := sql.Open("pgx", testutil.PostgresSchemaDSN(t))
			require.NoError(t, err)
			t.Cleanup(func() { _ = sqlDB.Close() })
			db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), cfg)
			require.NoError(t, err)
			return db
		},
	}
	for name, open := range openers {
		for _, translate := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/translate=%v", name, translate), func(t *testing.T) {
				ctx := adv8Ctx(t)
				log := &adv8Logger{}
				db := open(t, &gorm.Config{Logger: log, TranslateError: translate})
				s, err := repository.New(ctx, db)
				require.NoError(t, err)
				for _, msg := range log.take() {
					require.Contains(t, msg, "WAL", "only the WAL warning is expected at New")
				}
				wf := engine.Define("adv8-log", "v1", func(ctx *engine.Context, in string) (string, error) { return in, nil })
				waiting := engine.Define("adv8-log-wait", "v1", func(ctx *engine.Context, _ string) (string, error) {
					return engine.AwaitSignal[string](ctx, "go", 0)
				})
				e := engine.New(s, fast("n1"))
				require.NoError(t, e.Register(wf, waiting))
				run(t, e)

				h, err := wf.Start(ctx, e, "x", engine.WithExecutionID("adv8-log-1"))
				require.NoError(t, err)
				_, err = wf.Start(ctx, e, "x", engine.WithExecutionID("adv8-log-1"))
				require.NoError(t, err)
				_, err = wf.Start(ctx, e, "y", engine.WithExecutionID("adv8-log-1"))
				require.ErrorIs(t, err, repository.ErrAlreadyExists)
				_, err = wf.Start(ctx, e, "x", engine.WithExecutionID("adv8-log-1"), engine.WithLabels(map[string]string{"k": "v"}))
				require.NoError(t, err, "idempotent with labels")
				require.NoError(t, db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					if _, err := wf.StartTx(ctx, e, tx, "x", engine.WithExecutionID("adv8-log-1")); err != nil {
						return err
					}
					_, err := wf.StartTx(ctx, e, tx, "x", engine.WithExecutionID("adv8-log-1"), engine.WithLabels(map[string]string{"k": "v"}))
					return err
				}))
				_, err = h.Result(ctx)
				require.NoError(t, err)

				missing := wf.Handle(e, "adv8-log-missing")
				_, err = missing.Execution(ctx)
				require.ErrorIs(t, err, repository.ErrNotFound)
				_, err = missing.Result(ctx)
				require.ErrorIs(t, err, repository.ErrNotFound)
				require.ErrorIs(t, e.Signal(ctx, "adv8-log-missing", "go", 1), repository.ErrNotFound)
				require.ErrorIs(t, e.Signal(ctx, h.ID(), "go", 1), engine.ErrExecutionEnded)
				require.ErrorIs(t, e.Cancel(ctx, "adv8-log-missing"), repository.ErrNotFound)
				require.NoError(t, e.Cancel(ctx, h.ID()))
				_, err = e.Start(ctx, "adv8-nobody", "v1", nil)
				require.ErrorIs(t, err, repository.ErrNotFound)
				_, err = s.GetDefinition(ctx, "adv8-nobody", "v1")
				require.ErrorIs(t, err, repository.ErrNotFound)

				w, err := waiting.Start(ctx, e, "")
				require.NoError(t, err)
				require.NoError(t, e.Signal(ctx, w.ID(), "go", "now"))
				out, err := w.Result(ctx)
				require.NoError(t, err)
				require.Equal(t, "now", out)

				require.Empty(t, log.take(), "the app's logger saw errors for expected outcomes")
			})
		}
	}
}

// StartTx in the app's transactions on a file of gorm.io/driver/sqlite (no
// WAL, no busy timeout, deferred transactions) while the engine runs and
// writes: the workflows all start and run once. A "database is locked" of
// the app's own transaction is the app's to retry; the test retries the
// whole transaction as an app would, and counts how often it had to.
func TestAdversary8_StartTxOnMattnWhileEngineRuns(t *testing.T) {
	t.Parallel()
	ctx := adv8Ctx(t)
	db := openMattn(t, filepath.Join(t.TempDir(), "app.db"))
	require.NoError(t, db.Exec("CREATE TABLE adv8_orders (id INTEGER PRIMARY KEY, note TEXT)").Error)
	s, err := repository.New(ctx, db)
	require.NoError(t, err)
	var ran atomic.Int32
	wf := engine.Define("adv8-mattn", "v1", func(ctx *engine.Context, n int) (int, error) {
		if _, err := engine.Step(ctx, "a", func(context.Context) (int, error) { return n, nil }); err != nil {
			return 0, err
		}
		return engine.Step(ctx, "b", func(context.Context) (int, error) { ran.Add(1); return n, nil })
	})
	e := engine.New(s, fast("n1"))
	require.NoError(t, e.Register(wf))
	run(t, e)

	const n = 20
	var wg sync.WaitGroup
	var locked atomic.Int32
	handles := make([]*engine.Handle[int], n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; ; attempt++ {
				err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
					if err := tx.Exec("INSERT INTO adv8_orders (id, note) VALUES (?, 'o')", i).Error; err != nil {
						return err
					}
					h, err := wf.StartTx(ctx, e, tx, i)
					handles[i] = h
					return err
				})
				if err == nil {
					return
				}
				if strings.Contains(err.Error(), "locked") && attempt < 200 && ctx.Err() == nil {
					locked.Add(1)
					time.Sleep(time.Duration(1+attempt%10) * time.Millisecond)
					continue
				}
				errs <- err
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("app transactions that met \"database is locked\": %d", locked.Load())
	for i, h := range handles {
		out, err := h.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, i, out)
	}
	require.EqualValues(t, n, ran.Load())
}

// Result's ctx errors come as they are: a deadline is
// context.DeadlineExceeded, a cancel context.Canceled, also when the ctx
// carries a cause (which matches too).
func TestAdversary8_ResultCtxErrorsWithCause(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		wf := engine.Define("adv8-cause", "v1", func(ctx *engine.Context, _ int) (int, error) {
			return engine.AwaitSignal[int](ctx, "never", 0)
		})
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(wf))
		run(t, e)
		h, err := wf.Start(adv8Ctx(t), e, 1)
		require.NoError(t, err)
		why := errors.New("the request ended")
		ctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Millisecond, why)
		defer cancel()
		_, err = h.Result(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, why)
		ctx2, cancel2 := context.WithCancelCause(context.Background())
		go func() { time.Sleep(50 * time.Millisecond); cancel2(why) }()
		_, err = h.Result(ctx2)
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, why)
		_, err = e.Await(ctx2, h.ID())
		require.ErrorIs(t, err, context.Canceled)
		require.NoError(t, e.Cancel(adv8Ctx(t), h.ID()))
	})
}
