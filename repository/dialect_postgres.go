package repository

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// PostgreSQL: many nodes share the database, so every time that heartbeats and
// staleness compare comes from the server's clock. now() is the transaction's
// start time; it is stable within a statement, so the planner can use it in an
// index condition (clock_timestamp() is volatile and could not).
type postgresDialect struct {
	// translate is the dialector's gorm.ErrorTranslator, if it has one.
	translate func(error) error
}

func (postgresDialect) name() string { return "postgres" }

func (postgresDialect) now() clause.Expr { return clause.Expr{SQL: "now()"} }

func (postgresDialect) boundTime(clause.Expr) (time.Time, bool) { return time.Time{}, false }

func (postgresDialect) before(age time.Duration) clause.Expr {
	return clause.Expr{SQL: "now() - ?::bigint * INTERVAL '1 microsecond'", Vars: []any{age.Microseconds()}}
}

// claimLock lets concurrent claimers skip a row another transaction is taking
// instead of waiting for it and then finding it gone.
func (postgresDialect) claimLock() string { return " FOR UPDATE SKIP LOCKED" }

// orderedLock makes multi-row updates of executions lock them in one order,
// so that two of them never deadlock.
func (postgresDialect) orderedLock() string { return " FOR UPDATE" }

// shareLock orders an insert that depends on a row's state after a
// concurrent change of that row: the locking read waits for the writer and
// re-checks the row as committed.
func (postgresDialect) shareLock() string { return " FOR SHARE" }

func (postgresDialect) writableCTE() bool { return true }

// notifiesCommits: migration 008's triggers NOTIFY at commit.
func (postgresDialect) notifiesCommits() bool { return true }

// signalledPick: LATERAL makes the planner go from the pending signals to
// their executions by primary key; a plain join may scan every execution
// with no owner instead, and they are all the parked ones. The signals are
// streamed, not made distinct (that would read them all at every sweep): an
// execution with two pending signals comes twice, and the claim's UNION
// keeps it once. The rest of the condition is one "IS TRUE" term: a plan
// cached before the table has statistics otherwise found "node_id IS NULL"
// in the index of live executions by node, and read every parked execution
// for each pending signal.
func (d postgresDialect) signalledPick(filter string) string {
	return `SELECT w.execution_id FROM signals s ` +
		`CROSS JOIN LATERAL (SELECT execution_id FROM workflow_executions WHERE execution_id = s.execution_id ` +
		`AND (wait_signal = s.signal_name AND node_id IS NULL AND ` + filter + `) IS TRUE` + d.claimLock() + `) w LIMIT ?`
}

// signalledProbe is signalledPick's question "is any there?", found the
// same way; its LIMIT keeps the planner from flattening the LATERAL into a
// join that hashes every execution.
func (postgresDialect) signalledProbe(filter string) string {
	return `SELECT 1 FROM signals s CROSS JOIN LATERAL (SELECT 1 FROM workflow_executions WHERE execution_id = s.execution_id ` +
		`AND (wait_signal = s.signal_name AND node_id IS NULL AND ` + filter + `) IS TRUE LIMIT 1) w`
}

// SQLSTATE codes, https://www.postgresql.org/docs/current/errcodes-appendix.html.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
)

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func (d postgresDialect) isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	return pgCode(err) == pgUniqueViolation || errors.Is(err, gorm.ErrDuplicatedKey) ||
		errors.Is(translated(d.translate, err), gorm.ErrDuplicatedKey)
}

func (d postgresDialect) isForeignKeyViolation(err error) bool {
	if err == nil {
		return false
	}
	return pgCode(err) == pgForeignKeyViolation || errors.Is(err, gorm.ErrForeignKeyViolated) ||
		errors.Is(translated(d.translate, err), gorm.ErrForeignKeyViolated)
}

// isContention is false: PostgreSQL writers wait for row locks instead of
// failing, and the library's statements run at READ COMMITTED, where
// serialization failures do not occur.
func (postgresDialect) isContention(error) bool { return false }

// settingWarnings has nothing to say: PostgreSQL needs no per-connection
// setting of the library's.
func (postgresDialect) settingWarnings(context.Context, *gorm.DB) ([]string, error) { return nil, nil }

// scanned makes the times in dest (a pointer to a model or a slice of models)
// UTC. A *gorm.DB the app opened scans TIMESTAMPTZ in the process's local
// zone (scanTimesInUTC is only on connections the repository opens), and
// callers compare the times they get with the times they stored.
func (postgresDialect) scanned(dest any) { utcTimes(reflect.ValueOf(dest)) }

var timeType = reflect.TypeFor[time.Time]()

func utcTimes(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			utcTimes(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			utcTimes(v.Index(i))
		}
	case reflect.Struct:
		if v.Type() == timeType {
			if t := v.Interface().(time.Time); t.Location() != time.UTC && v.CanSet() {
				v.Set(reflect.ValueOf(t.UTC()))
			}
			return
		}
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				utcTimes(f)
			}
		}
	}
}

// scanTimesInUTC makes a connection return TIMESTAMPTZ values in UTC, as
// SQLite does, instead of in the process's local zone.
func scanTimesInUTC(_ context.Context, conn *pgx.Conn) error {
	conn.TypeMap().RegisterType(&pgtype.Type{
		Name:  "timestamptz",
		OID:   pgtype.TimestamptzOID,
		Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC},
	})
	return nil
}

// checkPostgresDSN validates a URL-form DSN without ever echoing it: a DSN
// carries the password, and url.Parse's own errors quote the whole input.
func checkPostgresDSN(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Opaque != "" {
		return fmt.Errorf("malformed PostgreSQL DSN (%s): %w", acceptedForms, ErrInvalidArgument)
	}
	if _, err := pgconn.ParseConfig(dsn); err != nil {
		return fmt.Errorf("invalid PostgreSQL DSN (%s): %w", acceptedForms, ErrInvalidArgument)
	}
	return nil
}
