package repository

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
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
	// translate is the dialector's gorm.ErrorTranslator, if it has one.
	translate func(error) error
}

func (sqliteDialect) name() string { return "sqlite" }

func (d sqliteDialect) now() clause.Expr {
	return clause.Expr{SQL: "?", Vars: []any{d.clock()}}
}

func (sqliteDialect) boundTime(now clause.Expr) (time.Time, bool) {
	if len(now.Vars) != 1 {
		return time.Time{}, false
	}
	t, ok := now.Vars[0].(time.Time)
	return t, ok
}

func (d sqliteDialect) before(age time.Duration) clause.Expr {
	return clause.Expr{SQL: "?", Vars: []any{d.clock().Add(-age)}}
}

func (sqliteDialect) claimLock() string { return "" }

func (sqliteDialect) orderedLock() string { return "" }

// shareLock is "": SQLite serializes writers, so a row read by a writing
// statement cannot change under it.
func (sqliteDialect) shareLock() string { return "" }

func (sqliteDialect) writableCTE() bool { return false }

// notifiesCommits: SQLite has no NOTIFY; the storages of one process
// announce their commits in memory (events.go).
func (sqliteDialect) notifiesCommits() bool { return false }

// signalledPick: CROSS JOIN fixes SQLite's join order, the pending signals
// outside, each execution looked up by primary key inside; a plain join may
// scan every execution instead.
func (sqliteDialect) signalledPick(filter string) string {
	return `SELECT e.execution_id FROM signals s CROSS JOIN workflow_executions e ON e.execution_id = s.execution_id ` +
		`AND e.wait_signal = s.signal_name WHERE e.node_id IS NULL AND ` + filter + ` LIMIT ?`
}

func (sqliteDialect) signalledProbe(filter string) string {
	return `SELECT 1 FROM signals s CROSS JOIN workflow_executions e ON e.execution_id = s.execution_id ` +
		`AND e.wait_signal = s.signal_name WHERE e.node_id IS NULL AND ` + filter
}

// scanned has nothing to do: both SQLite drivers scan the stored UTC text as
// UTC.
func (sqliteDialect) scanned(any) {}

// Result codes, https://sqlite.org/rescode.html. A primary code is the low
// byte of an extended one.
const (
	sqliteBusy             = 5 // SQLITE_BUSY; extended: BUSY_SNAPSHOT 517, BUSY_RECOVERY 261, BUSY_TIMEOUT 773
	sqliteLocked           = 6 // SQLITE_LOCKED; extended: LOCKED_SHAREDCACHE 262
	sqliteConstraintFK     = 787
	sqliteConstraintPK     = 1555
	sqliteConstraintUnique = 2067
	sqliteConstraintRowID  = 2579
)

// sqliteCode returns the (extended, where the driver has it) result code of
// the first SQLite error in err's chain, from whichever driver the app chose:
// glebarez's *sqlite.Error has a Code method; gorm.io/driver/sqlite's driver,
// mattn/go-sqlite3, returns a struct sqlite3.Error with the integer fields
// Code and ExtendedCode and no such method. That one is read by reflection,
// as gorm.io/driver/sqlite's own translator does by JSON, so that the library
// never imports a cgo driver. 0 means no code was found.
func sqliteCode(err error) int {
	code := 0
	walkErrors(err, func(e error) bool {
		var g *sqlitedriver.Error
		if errors.As(e, &g) {
			code = g.Code()
			return true
		}
		code = codeFields(e)
		return code != 0
	})
	return code
}

// walkErrors calls visit on err and every error it wraps, depth first, until
// visit returns true.
func walkErrors(err error, visit func(error) bool) bool {
	if err == nil {
		return false
	}
	if visit(err) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return walkErrors(u.Unwrap(), visit)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if walkErrors(e, visit) {
				return true
			}
		}
	}
	return false
}

// codeFields reads an integer field ExtendedCode, else Code, of an error
// struct (or pointer to one), the shape of mattn's sqlite3.Error.
func codeFields(e error) int {
	v := reflect.ValueOf(e)
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return 0
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return 0
	}
	for _, name := range []string{"ExtendedCode", "Code"} {
		f := v.FieldByName(name)
		if !f.IsValid() {
			continue
		}
		switch f.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if c := int(f.Int()); c != 0 {
				return c
			}
		}
	}
	return 0
}

// translated returns what the dialector's own translator (gorm.ErrorTranslator,
// which the app may or may not have enabled with TranslateError) makes of err,
// so that a code only the driver's translator knows is still recognised.
func translated(translate func(error) error, err error) error {
	if translate == nil || err == nil {
		return nil
	}
	return translate(err)
}

func (d sqliteDialect) isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	switch sqliteCode(err) {
	case sqliteConstraintUnique, sqliteConstraintPK, sqliteConstraintRowID:
		return true
	}
	return errors.Is(err, gorm.ErrDuplicatedKey) || errors.Is(translated(d.translate, err), gorm.ErrDuplicatedKey)
}

func (d sqliteDialect) isForeignKeyViolation(err error) bool {
	if err == nil {
		return false
	}
	return sqliteCode(err) == sqliteConstraintFK || errors.Is(err, gorm.ErrForeignKeyViolated) ||
		errors.Is(translated(d.translate, err), gorm.ErrForeignKeyViolated)
}

// isContention: the database was busy (another connection holds the lock
// beyond the busy timeout, or a deferred transaction could not upgrade to a
// write, or a WAL snapshot went stale) or a table was locked (shared cache).
// A statement or transaction that failed so changed nothing and may run
// again. No driver translates these codes; the message is the last resort for
// a driver whose error carries no code.
func (sqliteDialect) isContention(err error) bool {
	if err == nil {
		return false
	}
	switch sqliteCode(err) & 0xff {
	case sqliteBusy, sqliteLocked:
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "database is locked") || strings.Contains(msg, "database table is locked") ||
		strings.Contains(msg, "SQLITE_BUSY")
}

// settingWarnings warns of a file database without WAL: every writer then
// blocks every reader, and concurrent nodes meet "database is locked" far
// more often (the library retries, at a cost). In-memory databases have no
// WAL and need none.
func (sqliteDialect) settingWarnings(ctx context.Context, db *gorm.DB) ([]string, error) {
	var mode string
	if err := db.WithContext(ctx).Raw("PRAGMA journal_mode").Scan(&mode).Error; err != nil {
		return nil, err
	}
	if strings.EqualFold(mode, "wal") || strings.EqualFold(mode, "memory") {
		return nil, nil
	}
	var files []struct {
		Name string `gorm:"column:name"`
		File string `gorm:"column:file"`
	}
	if err := db.WithContext(ctx).Raw("PRAGMA database_list").Scan(&files).Error; err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.Name == "main" && f.File != "" {
			return []string{fmt.Sprintf("workflow storage: SQLite database %s runs with journal_mode=%s, not WAL: "+
				"concurrent writers and readers will block each other; open it with journal_mode=WAL "+
				"(e.g. \"_journal_mode=WAL\" for gorm.io/driver/sqlite, \"_pragma=journal_mode(WAL)\" for github.com/glebarez/sqlite)",
				f.File, mode)}, nil
		}
	}
	return nil, nil
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
