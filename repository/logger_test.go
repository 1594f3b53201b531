package repository_test

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/repository"
)

// lockedBuffer is a log destination that goroutines may share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestWithLogger_FailedAndSlowStatementsOnly: WithLogger's logger gets a
// statement that failed, with its SQL, and a slow one (PostgreSQL's
// pg_sleep is slow for sure), never a fast one that succeeded nor a missing
// row; at Info it gets every statement.
func TestWithLogger_FailedAndSlowStatementsOnly(t *testing.T) {
	forEachDialect(t, func(t *testing.T, base *repository.Storage) {
		ctx := t.Context()
		var out lockedBuffer
		s, err := repository.New(ctx, base.DB(), repository.WithLogger(slog.New(slog.NewTextHandler(&out, nil))))
		require.NoError(t, err)
		out.Reset() // New's own warnings (the mattn drivers' files are not WAL)

		e := create(t, s, repository.NewExecution{NodeID: "n1"})
		_, err = s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		_, err = s.GetExecution(ctx, "missing")
		require.ErrorIs(t, err, repository.ErrNotFound)
		require.Empty(t, out.String())

		require.Error(t, s.DB().WithContext(ctx).Exec("SELECT no_such_column FROM workflow_executions").Error)
		require.Contains(t, out.String(), "level=ERROR")
		require.Contains(t, out.String(), "no_such_column")

		if s.Dialect() == "postgres" {
			require.NoError(t, s.DB().WithContext(ctx).Exec("SELECT pg_sleep(0.25)").Error)
			require.Contains(t, out.String(), "level=WARN")
			require.Contains(t, out.String(), "pg_sleep")
		}

		verbose := s.DB().Session(&gorm.Session{Logger: s.DB().Logger.LogMode(logger.Info)})
		var n int64
		require.NoError(t, verbose.WithContext(ctx).Raw("SELECT count(*) FROM workflow_definitions").Scan(&n).Error)
		require.Contains(t, out.String(), "SELECT count(*) FROM workflow_definitions")
	})
}
