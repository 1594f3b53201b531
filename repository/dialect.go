package repository

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// dialect answers every question whose answer differs between SQLite and
// PostgreSQL. Repository methods are written once and ask it; only the open
// path looks at a database's name. The two implementations are in
// dialect_sqlite.go and dialect_postgres.go.
type dialect interface {
	// name is "sqlite" or "postgres".
	name() string
	// now is the current time as SQL: the database's clock where nodes share a
	// database, so that skewed node clocks cannot declare each other dead.
	now() clause.Expr
	// boundTime is the time a now() of this dialect binds, where the
	// process clock is the clock: a statement that writes it need not read
	// it back. ok is false where the database's clock writes it.
	boundTime(now clause.Expr) (t time.Time, ok bool)
	// before is now minus d, as SQL comparable with a stored time.
	before(d time.Duration) clause.Expr
	// claimLock is the row-lock suffix of a SELECT that picks one row to claim,
	// so that concurrent claimers take different rows; "" where writes are
	// serialized anyway.
	claimLock() string
	// orderedLock is the row-lock suffix of a SELECT ... ORDER BY that
	// locks, in that order, the rows a multi-row update then writes (empty
	// where a writer locks the whole database).
	orderedLock() string
	// signalledPick selects, up to a bound LIMIT, the parked executions
	// that a stored signal they wait for makes due, and that also match
	// filter (a condition on workflow_executions); it reads the pending
	// signals, never every parked execution.
	signalledPick(filter string) string
	// signalledProbe is signalledPick as the body of an EXISTS: no
	// limit, no lock.
	signalledProbe(filter string) string
	// shareLock is the suffix of a SELECT, inside a write, that must see the
	// rows it reads as a concurrent writer leaves them; "" where writes are
	// serialized anyway.
	shareLock() string
	// notifiesCommits reports whether the database itself announces
	// committed changes to other connections (PostgreSQL's NOTIFY, from
	// migration 008's triggers); where it does not, the storages of one
	// process announce them to each other in memory.
	notifiesCommits() bool
	// writableCTE reports whether a WITH clause may hold an UPDATE whose
	// RETURNING rows feed an INSERT, making two writes one statement.
	writableCTE() bool
	// isUniqueViolation and isForeignKeyViolation classify a failed statement
	// by the driver's own codes, by GORM's translated errors (whether or not
	// the app set TranslateError) and by the dialector's translator.
	isUniqueViolation(err error) bool
	isForeignKeyViolation(err error) bool
	// isContention reports a failure that left nothing changed and that the
	// same statement or transaction may overcome when run again (SQLite's
	// busy and locked errors).
	isContention(err error) bool
	// settingWarnings reads the connection's settings and says which of them
	// will hurt, for New to log: the library works without them, slower or
	// with more retries.
	settingWarnings(ctx context.Context, db *gorm.DB) ([]string, error)
	// scanned fixes up rows read into dest (a pointer to a model or to a
	// slice of models) so that every driver returns the same values.
	scanned(dest any)
}

// utcNow is the clock of every time the repository writes from Go: UTC,
// truncated to microseconds so both databases round-trip equal values.
func utcNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// newDialect picks the dialect of db's dialector, whichever driver is under it
// (gorm.io/driver/postgres, github.com/glebarez/sqlite, gorm.io/driver/sqlite),
// and keeps the dialector's error translator for classifying errors.
func newDialect(db *gorm.DB) (dialect, error) {
	var translate func(error) error
	if t, ok := db.Dialector.(gorm.ErrorTranslator); ok {
		translate = t.Translate
	}
	switch name := db.Dialector.Name(); name {
	case "postgres":
		return postgresDialect{translate: translate}, nil
	case "sqlite":
		return sqliteDialect{clock: utcNow, translate: translate}, nil
	default:
		return nil, fmt.Errorf("unsupported GORM dialect %q (want postgres or sqlite): %w", name, ErrInvalidArgument)
	}
}
