package repository

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	sqlitedriver "github.com/glebarez/go-sqlite"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// mattnError has the shape of mattn/go-sqlite3's sqlite3.Error (named
// integer fields, an Error method on the value, nothing else), which the
// library must recognise without importing the cgo driver.
type (
	errNo         int
	errNoExtended int
	mattnError    struct {
		Code         errNo
		ExtendedCode errNoExtended
		msg          string
	}
)

func (e mattnError) Error() string { return e.msg }

func TestClassify_SQLiteDrivers(t *testing.T) {
	t.Parallel()
	d := sqliteDialect{}
	unique := mattnError{Code: 19, ExtendedCode: 2067, msg: "UNIQUE constraint failed: workflow_executions.execution_id"}
	pk := mattnError{Code: 19, ExtendedCode: 1555, msg: "UNIQUE constraint failed"}
	fk := mattnError{Code: 19, ExtendedCode: 787, msg: "FOREIGN KEY constraint failed"}
	busy := mattnError{Code: 5, ExtendedCode: 5, msg: "database is locked"}
	snapshot := mattnError{Code: 5, ExtendedCode: 517, msg: "database is locked"}
	locked := mattnError{Code: 6, ExtendedCode: 262, msg: "database table is locked"}

	for _, err := range []error{unique, pk, &unique, fmt.Errorf("wrapped: %w", unique), errors.Join(errors.New("x"), unique), gorm.ErrDuplicatedKey} {
		require.True(t, d.isUniqueViolation(err), "%#v", err)
		require.False(t, d.isForeignKeyViolation(err), "%#v", err)
		require.False(t, d.isContention(err), "%#v", err)
	}
	for _, err := range []error{fk, fmt.Errorf("wrapped: %w", fk), gorm.ErrForeignKeyViolated} {
		require.True(t, d.isForeignKeyViolation(err), "%#v", err)
		require.False(t, d.isUniqueViolation(err), "%#v", err)
	}
	for _, err := range []error{busy, snapshot, locked, fmt.Errorf("commit: %w", snapshot),
		errors.New("database is locked"), errors.New("database table is locked: signals")} {
		require.True(t, d.isContention(err), "%#v", err)
		require.False(t, d.isUniqueViolation(err), "%#v", err)
	}
	for _, err := range []error{nil, errors.New("no such table: x"), mattnError{Code: 1, msg: "SQL logic error"}, context.Canceled} {
		require.False(t, d.isContention(err), "%#v", err)
		require.False(t, d.isUniqueViolation(err), "%#v", err)
		require.False(t, d.isForeignKeyViolation(err), "%#v", err)
	}

	// A driver whose error only its dialector's translator understands.
	opaque := errors.New("opaque driver error")
	translating := sqliteDialect{translate: func(err error) error {
		if errors.Is(err, opaque) {
			return gorm.ErrDuplicatedKey
		}
		return err
	}}
	require.True(t, translating.isUniqueViolation(opaque))
	require.False(t, d.isUniqueViolation(opaque))
}

func TestClassify_GlebarezCodes(t *testing.T) {
	t.Parallel()
	// glebarez's *sqlite.Error has unexported fields; a real one comes from
	// a real statement.
	s, err := NewInMemory(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	err = s.DB().Exec("INSERT INTO workflow_definitions (id, version, name, created_at, updated_at) VALUES ('a', 'v', 'n', ?, ?), ('a', 'v', 'n', ?, ?)",
		utcNow(), utcNow(), utcNow(), utcNow()).Error
	var g *sqlitedriver.Error
	require.ErrorAs(t, err, &g)
	require.True(t, s.dialect.isUniqueViolation(err))
	require.False(t, s.dialect.isContention(err))
}

func TestClassify_Postgres(t *testing.T) {
	t.Parallel()
	d := postgresDialect{}
	require.True(t, d.isUniqueViolation(fmt.Errorf("x: %w", &pgconn.PgError{Code: "23505"})))
	require.True(t, d.isForeignKeyViolation(&pgconn.PgError{Code: "23503"}))
	require.True(t, d.isUniqueViolation(gorm.ErrDuplicatedKey))
	require.False(t, d.isUniqueViolation(&pgconn.PgError{Code: "23503"}))
	require.False(t, d.isContention(&pgconn.PgError{Code: "40001"}))
	require.False(t, d.isUniqueViolation(nil))
}

func TestRun_RetriesContentionOnly(t *testing.T) {
	t.Parallel()
	s, err := NewInMemory(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	busy := mattnError{Code: 5, ExtendedCode: 5, msg: "database is locked"}

	calls := 0
	err = s.run(t.Context(), func(*gorm.DB) error {
		calls++
		if calls < 3 {
			return busy
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, calls, "two busy failures, then success")

	calls = 0
	start := time.Now()
	err = s.run(t.Context(), func(*gorm.DB) error { calls++; return busy })
	require.ErrorIs(t, err, busy)
	require.Equal(t, retryAttempts, calls, "bounded attempts")
	require.Less(t, time.Since(start), retryBudget+retryMaxDelay)

	calls = 0
	other := errors.New("no such table")
	require.ErrorIs(t, s.run(t.Context(), func(*gorm.DB) error { calls++; return other }), other)
	require.Equal(t, 1, calls, "only contention is retried")

	ctx, cancel := context.WithCancel(t.Context())
	calls = 0
	err = s.run(ctx, func(*gorm.DB) error { calls++; cancel(); return busy })
	require.ErrorIs(t, err, busy)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, calls, "a cancelled context stops the retries")

	// Inside a transaction the caller owns, nothing is retried.
	calls = 0
	err = s.Transaction(t.Context(), func(tx *Storage) error {
		return tx.run(t.Context(), func(*gorm.DB) error { calls++; return busy })
	})
	require.ErrorIs(t, err, busy)
	require.Equal(t, 1, calls)
	calls = 0
	err = s.DB().Transaction(func(gtx *gorm.DB) error {
		inner := &Storage{db: gtx, dialect: s.dialect}
		return inner.run(t.Context(), func(*gorm.DB) error { calls++; return busy })
	})
	require.ErrorIs(t, err, busy)
	require.Equal(t, 1, calls)
}
