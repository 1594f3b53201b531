package repository

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlitedriver "github.com/glebarez/go-sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// SQLite: one machine, so the process clock is the clock; times are bound as
// UTC text, which compares chronologically as text. Writers are serialized by
// the database lock, so no row locks are needed.
type sqliteDialect struct {
	clock func() time.Time
}

func (sqliteDialect) name() string { return "sqlite" }

func (d sqliteDialect) now() clause.Expr {
	return clause.Expr{SQL: "?", Vars: []any{d.clock()}}
}

func (d sqliteDialect) before(age time.Duration) clause.Expr {
	return clause.Expr{SQL: "?", Vars: []any{d.clock().Add(-age)}}
}

func (sqliteDialect) claimLock() string { return "" }

func (sqliteDialect) writableCTE() bool { return false }

// Extended result codes, https://sqlite.org/rescode.html.
const (
	sqliteConstraintFK     = 787
	sqliteConstraintPK     = 1555
	sqliteConstraintUnique = 2067
	sqliteConstraintRowID  = 2579
)

func sqliteCode(err error) int {
	var e *sqlitedriver.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

func (sqliteDialect) isUniqueViolation(err error) bool {
	switch sqliteCode(err) {
	case sqliteConstraintUnique, sqliteConstraintPK, sqliteConstraintRowID:
		return true
	}
	return errors.Is(err, gorm.ErrDuplicatedKey)
}

func (sqliteDialect) isForeignKeyViolation(err error) bool {
	return sqliteCode(err) == sqliteConstraintFK || errors.Is(err, gorm.ErrForeignKeyViolated)
}

// sqlitePragmas make a file database take concurrent writers from many
// goroutines: WAL lets readers run beside the writer, the busy timeout waits
// for the write lock instead of failing, and IMMEDIATE transactions take that
// lock at BEGIN, so a read-then-write transaction cannot fail on upgrade.
// (glebarez ignores _txlock when _time_format is set, so that stays unset.)
const sqlitePragmas = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate"

func sqliteFileDSN(path string) string {
	return "file:" + path + "?" + sqlitePragmas +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
}

// sqliteMemoryDSN names a fresh in-memory database that every connection of
// the pool shares (the memdb VFS), unlike ":memory:", which is one database per
// connection, or a shared cache, which fails with "table is locked" under
// concurrency.
func sqliteMemoryDSN() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("naming in-memory database: %w", err)
	}
	return "file:/workflow-" + hex.EncodeToString(b[:]) + ".db?vfs=memdb&" + sqlitePragmas, nil
}

// sqlitePath reads the forms NewSQLite accepts: "sqlite://PATH", a bare PATH,
// and ":memory:" or "sqlite::memory:" (path "" means in memory).
func sqlitePath(dsn string) (path string, memory bool, err error) {
	switch {
	case dsn == ":memory:" || dsn == "sqlite::memory:":
		return "", true, nil
	case strings.HasPrefix(dsn, "sqlite://"):
		path = strings.TrimPrefix(dsn, "sqlite://")
	case strings.Contains(dsn, "://"):
		return "", false, errUnknownScheme(dsn)
	default:
		path = dsn
	}
	if strings.TrimSpace(path) == "" {
		return "", false, fmt.Errorf("SQLite DSN has no file path (%s): %w", acceptedForms, ErrInvalidArgument)
	}
	if strings.ContainsAny(path, "?#") {
		return "", false, fmt.Errorf("SQLite DSN path must not contain '?' or '#'; the library sets the pragmas (%s): %w", acceptedForms, ErrInvalidArgument)
	}
	if err := checkText("SQLite path", path); err != nil {
		return "", false, err
	}
	return path, false, nil
}
