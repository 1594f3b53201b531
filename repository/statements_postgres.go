package repository

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/plexspaces/workflow/models"
)

// The checkpoint statements a lone workflow writes on PostgreSQL (a step
// start carrying the previous step's outcome, an end carrying the last) run
// on the connection under GORM, as the grouped ones do: their SQL is fixed,
// and GORM's building and reflective reading of it were about a fifth of
// the client's CPU and a quarter of the garbage of a lone workflow (whose
// latency is the client's time plus five round trips). GORM's logger and
// callbacks do not see them.

// bind writes query's ? placeholders as PostgreSQL's $1, $2, ... for the
// arguments it passes, and inlines the arguments that are SQL expressions
// (the dialect's now()), as GORM would (the library's statements have no ?
// inside literals).
func bind(query string, args []any) (string, []any) {
	var b strings.Builder
	b.Grow(len(query) + 2*len(args))
	values := make([]any, 0, len(args))
	for _, arg := range args {
		i := strings.IndexByte(query, '?')
		if i < 0 {
			break
		}
		b.WriteString(query[:i])
		query = query[i+1:]
		if expr, ok := arg.(clause.Expr); ok && len(expr.Vars) == 0 {
			b.WriteString(expr.SQL)
			continue
		}
		values = append(values, arg)
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(len(values)))
	}
	b.WriteString(query)
	return b.String(), values
}

// queryOn runs query (with ? placeholders, see bind) on db's connection
// (its transaction, if it has one) and reads its rows with scan.
func queryOn[Row any](db *gorm.DB, query string, args []any, scan func(rowReader, *Row) error) ([]Row, error) {
	ctx := db.Statement.Context
	if ctx == nil {
		ctx = context.Background()
	}
	query, args = bind(query, args)
	return queryRows(ctx, db.Statement.ConnPool, query, args, scan)
}

// rowReader is a result's current row, as *sql.Rows and pgx.Rows both read
// it.
type rowReader interface{ Scan(dest ...any) error }

// queryRows runs query ($n placeholders) on pool and reads its rows with
// scan: the one reading loop of the written-out and grouped statements.
// Outside a transaction, on pgx, it runs on the pgx connection itself
// (queryPgx); in a transaction, or on another driver (a test's sqlmock),
// through database/sql.
func queryRows[Row any](ctx context.Context, pool gorm.ConnPool, query string, args []any, scan func(rowReader, *Row) error) ([]Row, error) {
	if db, ok := pool.(*sql.DB); ok && onPgx(db) {
		if out, err := queryPgx(ctx, db, query, args, scan); !errors.Is(err, errNotPgxConn) {
			return out, err
		}
	}
	rows, err := pool.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return readRows(rows, scan)
}

// queryPgx runs query on a connection of db's pool through pgx itself.
// database/sql starts a goroutine for every query whose context can end
// (to close its rows when it does) and wakes it at the end; pgx watches the
// context without one. At one workflow at a time, those goroutines and
// their wake-ups were a fifth of the client's CPU. A connection that fails
// before the statement was sent is dropped and another one tried, as
// database/sql does for driver.ErrBadConn.
func queryPgx[Row any](ctx context.Context, db *sql.DB, query string, args []any, scan func(rowReader, *Row) error) (out []Row, err error) {
	for attempt := 1; ; attempt++ {
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		err = conn.Raw(func(driverConn any) error {
			sc, ok := driverConn.(*stdlib.Conn)
			if !ok {
				return errNotPgxConn
			}
			pc := sc.Conn()
			if pc.IsClosed() {
				return driver.ErrBadConn
			}
			rows, err := pc.Query(ctx, query, args...)
			if err != nil {
				if pgconn.SafeToRetry(err) {
					return driver.ErrBadConn
				}
				return err
			}
			defer rows.Close()
			out, err = readRows(rows, scan)
			return err
		})
		_ = conn.Close() // back to the pool, or closed if it was bad
		if !errors.Is(err, driver.ErrBadConn) || attempt == badConnAttempts {
			return out, err
		}
	}
}

// errNotPgxConn: the pool's driver is pgx's, but its connections are
// wrapped (an app's metrics or tracing); the statement was not sent, and
// goes through database/sql.
var errNotPgxConn = errors.New("not a pgx connection")

// badConnAttempts is how many connections queryPgx tries, as database/sql
// does (two from the pool, then a new one).
const badConnAttempts = 3

// readRows reads every row of rows with scan; rows is *sql.Rows or
// pgx.Rows.
func readRows[Row any, Rows interface {
	rowReader
	Next() bool
	Err() error
}](rows Rows, scan func(rowReader, *Row) error) ([]Row, error) {
	out := oneRow[Row]()
	for rows.Next() {
		var r Row
		if err := scan(rows, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// scanStep reads the columns of returningStep.
func scanStep(rows rowReader, st *models.StepExecution) error {
	return rows.Scan(&st.StepExecutionID, &st.ExecutionID, &st.StepID, &st.Status, &st.Input, &st.Output,
		&st.Error, &st.Attempt, &st.Metadata, &st.StartedAt, &st.CompletedAt)
}

// scanExecution reads the columns of returningExecution.
func scanExecution(rows rowReader, x *models.WorkflowExecution) error {
	return rows.Scan(&x.ExecutionID, &x.DefinitionID, &x.DefinitionVersion, &x.Status, &x.CurrentStepID, &x.Input,
		&x.Output, &x.Error, &x.NodeID, (*int64)(&x.Version), &x.LastHeartbeat, &x.Metadata, &x.CreatedAt, &x.UpdatedAt,
		&x.StartedAt, &x.CompletedAt, &x.WaitSignal)
}
