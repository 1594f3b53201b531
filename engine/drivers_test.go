package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// gorm.io/driver/sqlite (mattn/go-sqlite3, cgo) is the SQLite driver most GORM
// apps use; a test-only dependency. It opens a file as a typical app does:
// no pragmas, so foreign keys off, no WAL, deferred transactions.
func init() {
	testutil.RegisterDriver("sqlite-mattn", func(t testing.TB) *gorm.DB {
		return openMattn(t, filepath.Join(t.TempDir(), "app.db"))
	})
}

func openMattn(t testing.TB, path string) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(sqlite.Open(path), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}

var approvalFlow = engine.Define("approval", "v1", func(ctx *engine.Context, doc string) (string, error) {
	checked, err := engine.Step(ctx, "check", func(context.Context) (string, error) { return "checked " + doc, nil })
	if err != nil {
		return "", err
	}
	by, err := engine.AwaitSignal[string](ctx, "approve", 0)
	if err != nil {
		return "", err
	}
	return checked + ", approved by " + by, nil
})

// TestEngine_OnEveryDriver: the same workflows, starts, signals and errors on
// every way an app may open its database.
func TestEngine_OnEveryDriver(t *testing.T) {
	t.Parallel()
	testutil.ForEachDriver(t, func(t *testing.T, s *repository.Storage) {
		e := engine.New(s, fast("n1"))
		require.NoError(t, e.Register(approvalFlow))
		run(t, e)

		h, err := approvalFlow.Start(t.Context(), e, "contract", engine.WithExecutionID("doc-1"))
		require.NoError(t, err)
		_, err = approvalFlow.Start(t.Context(), e, "contract", engine.WithExecutionID("doc-1"))
		require.NoError(t, err, "an idempotent start")
		_, err = approvalFlow.Start(t.Context(), e, "other", engine.WithExecutionID("doc-1"))
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		var inTx *engine.Handle[string]
		require.NoError(t, s.DB().WithContext(t.Context()).Transaction(func(tx *gorm.DB) error {
			inTx, err = approvalFlow.StartTx(t.Context(), e, tx, "offer")
			return err
		}))
		_, err = e.Start(t.Context(), "nobody", "v1", nil)
		require.ErrorIs(t, err, engine.ErrNotFound)
		require.ErrorIs(t, e.Signal(t.Context(), "no-such-execution", "approve", "x"), engine.ErrNotFound)

		require.NoError(t, e.Signal(t.Context(), h.ID(), "approve", "bo"))
		require.NoError(t, e.Signal(t.Context(), inTx.ID(), "approve", "cy"))
		out, err := h.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "checked contract, approved by bo", out)
		out, err = inTx.Result(t.Context())
		require.NoError(t, err)
		require.Equal(t, "checked offer, approved by cy", out)
		require.ErrorIs(t, e.Signal(t.Context(), h.ID(), "approve", "late"), engine.ErrExecutionEnded)
	})
}

// warnings records the engine's warnings and errors.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, b.String())
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// TestEngine_TwoNodesOnOneAppSQLiteFile: two engines on one file opened by
// gorm.io/driver/sqlite with no pragmas (no WAL, deferred transactions, no
// busy timeout) run 30 workflows with signals; all complete and neither node
// meets "database is locked".
func TestEngine_TwoNodesOnOneAppSQLiteFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "app.db")
	var logged warnings
	nodes := make([]*engine.Engine, 2)
	for i := range nodes {
		s, err := repository.New(t.Context(), openMattn(t, path))
		require.NoError(t, err)
		cfg := fast(fmt.Sprintf("n%d", i+1))
		cfg.Logger = slog.New(&logged)
		nodes[i] = engine.New(s, cfg)
		require.NoError(t, nodes[i].Register(approvalFlow))
		run(t, nodes[i])
	}
	const n = 30
	handles := make([]*engine.Handle[string], n)
	for i := range handles {
		var err error
		handles[i], err = approvalFlow.Start(t.Context(), nodes[i%2], fmt.Sprintf("doc %d", i))
		require.NoError(t, err)
	}
	for i, h := range handles {
		require.NoError(t, nodes[(i+1)%2].Signal(t.Context(), h.ID(), "approve", "bo"))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for i, h := range handles {
		out, err := h.Result(ctx)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("checked doc %d, approved by bo", i), out)
	}
	logged.mu.Lock()
	defer logged.mu.Unlock()
	for _, msg := range logged.msgs {
		require.NotContains(t, msg, "locked")
	}
}
