package repository

import (
	"time"

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
	// before is now minus d, as SQL comparable with a stored time.
	before(d time.Duration) clause.Expr
	// claimLock is the row-lock suffix of a SELECT that picks one row to claim,
	// so that concurrent claimers take different rows; "" where writes are
	// serialized anyway.
	claimLock() string
	// writableCTE reports whether a WITH clause may hold an UPDATE whose
	// RETURNING rows feed an INSERT, making two writes one statement.
	writableCTE() bool
	isUniqueViolation(err error) bool
	isForeignKeyViolation(err error) bool
}

// utcNow is the clock of every time the repository writes from Go: UTC,
// truncated to microseconds so both databases round-trip equal values.
func utcNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
