// Package testutil gives tests real and mocked workflow storage: a fresh
// SQLite database or PostgreSQL schema per test, a GORM DB on sqlmock,
// ForEachDialect to run one test body on every dialect, and ForEachDriver to
// run it on every driver an app may open its *gorm.DB with.
//
// It is for tests only, of this module and of apps that use it; its API may
// change between minor versions. PostgreSQL storages need
// WORKFLOW_TEST_POSTGRES_DSN (a postgres:// URL); without it their tests are
// skipped, unless WORKFLOW_REQUIRE_POSTGRES=1, which makes them fail.
package testutil

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/repository"
)

// Environment variables that configure PostgreSQL tests.
const (
	EnvPostgresDSN     = "WORKFLOW_TEST_POSTGRES_DSN"
	EnvRequirePostgres = "WORKFLOW_REQUIRE_POSTGRES"
)

// NewSQLiteStorage returns a migrated in-memory SQLite storage of the test's
// own, closed at cleanup.
func NewSQLiteStorage(t testing.TB, opts ...repository.Option) *repository.Storage {
	t.Helper()
	s, err := repository.NewInMemory(context.Background(), opts...)
	if err != nil {
		t.Fatalf("opening in-memory SQLite storage: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// NewPostgresStorage returns a migrated PostgreSQL storage in a schema of the
// test's own, dropped at cleanup. See the package doc for when it skips.
func NewPostgresStorage(t testing.TB, opts ...repository.Option) *repository.Storage {
	t.Helper()
	dsn := PostgresSchemaDSN(t)
	s, err := repository.NewPostgres(context.Background(), dsn, append([]repository.Option{repository.WithMaxOpenConns(4)}, opts...)...)
	if err != nil {
		t.Fatalf("opening PostgreSQL storage: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// PostgresDSN returns WORKFLOW_TEST_POSTGRES_DSN, skipping the test when it is
// unset (failing it when WORKFLOW_REQUIRE_POSTGRES=1).
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvPostgresDSN)
	if dsn == "" {
		if os.Getenv(EnvRequirePostgres) == "1" {
			t.Fatalf("%s is not set but %s=1", EnvPostgresDSN, EnvRequirePostgres)
		}
		t.Skipf("PostgreSQL tests need %s", EnvPostgresDSN)
	}
	return dsn
}

// PostgresSchemaDSN creates an empty schema for the test, drops it (with all
// it holds) at cleanup, and returns a DSN whose search_path is that schema.
// Connections from several processes or pools to that DSN share the schema.
func PostgresSchemaDSN(t testing.TB) string {
	t.Helper()
	dsn := PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s is not a URL", EnvPostgresDSN)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("opening PostgreSQL: %v", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "wftest_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		_ = admin.Close()
		t.Fatalf("creating schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
		_ = admin.Close()
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Dialect names, as Storage.Dialect returns them.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// NewStorage returns a fresh storage of the named dialect.
func NewStorage(t testing.TB, dialect string, opts ...repository.Option) *repository.Storage {
	t.Helper()
	switch dialect {
	case SQLite:
		return NewSQLiteStorage(t, opts...)
	case Postgres:
		return NewPostgresStorage(t, opts...)
	}
	t.Fatalf("unknown dialect %q", dialect)
	return nil
}

// ForEachDialect runs fn as a subtest per dialect, each with a fresh storage.
// The PostgreSQL subtest skips as NewPostgresStorage does.
func ForEachDialect(t *testing.T, fn func(t *testing.T, s *repository.Storage)) {
	t.Helper()
	for _, d := range []string{SQLite, Postgres} {
		t.Run(d, func(t *testing.T) {
			fn(t, NewStorage(t, d))
		})
	}
}

// PostgresConn names the driver of NewPostgresConnDB: PostgreSQL through an
// app's own *sql.DB.
const PostgresConn = "postgres-conn"

// NewPostgresConnDB returns a *gorm.DB on PostgreSQL the way an app may open
// one: gorm.io/driver/postgres on an *sql.DB of its own (pgx's database/sql
// driver, none of the repository's connection settings), in a schema of the
// test's own. It skips as NewPostgresStorage does.
func NewPostgresConnDB(t testing.TB) *gorm.DB {
	t.Helper()
	sqlDB, err := sql.Open("pgx", PostgresSchemaDSN(t))
	if err != nil {
		t.Fatalf("opening PostgreSQL: %v", err)
	}
	sqlDB.SetMaxOpenConns(4)
	t.Cleanup(func() { _ = sqlDB.Close() })
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("opening GORM on PostgreSQL: %v", err)
	}
	return db
}

// DriverOpener opens a fresh, empty database for one test, as an app opens
// its *gorm.DB, and closes it at the test's cleanup.
type DriverOpener func(t testing.TB) *gorm.DB

var (
	driversMu sync.Mutex
	drivers   = map[string]DriverOpener{PostgresConn: NewPostgresConnDB}
)

// RegisterDriver adds a driver to those ForEachDriver runs, under name. It is
// how a test binary adds a driver this package must not import, such as the
// cgo SQLite driver gorm.io/driver/sqlite: call it from an init function of a
// _test.go file. Registering a name twice panics.
func RegisterDriver(name string, open DriverOpener) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[name]; dup || name == SQLite || name == Postgres {
		panic("testutil: driver " + name + " registered twice")
	}
	drivers[name] = open
}

// Drivers returns the names ForEachDriver runs: SQLite and Postgres (the
// storages the repository opens itself), then PostgresConn and every
// registered driver, sorted.
func Drivers() []string {
	driversMu.Lock()
	defer driversMu.Unlock()
	names := make([]string, 0, len(drivers))
	for name := range drivers {
		names = append(names, name)
	}
	slices.Sort(names)
	return append([]string{SQLite, Postgres}, names...)
}

// NewDriverStorage returns a fresh, migrated storage on the named driver (one
// of Drivers): SQLite and Postgres as NewStorage opens them, any other by
// repository.New on the *gorm.DB its opener returns.
func NewDriverStorage(t testing.TB, name string, opts ...repository.Option) *repository.Storage {
	t.Helper()
	if name == SQLite || name == Postgres {
		return NewStorage(t, name, opts...)
	}
	driversMu.Lock()
	open := drivers[name]
	driversMu.Unlock()
	if open == nil {
		t.Fatalf("unknown driver %q", name)
	}
	s, err := repository.New(context.Background(), open(t), opts...)
	if err != nil {
		t.Fatalf("wrapping %s database: %v", name, err)
	}
	return s
}

// ForEachDriver runs fn as a subtest per driver of Drivers, each with a fresh
// storage: the repository's guarantees and errors must not depend on how the
// app opened its database.
func ForEachDriver(t *testing.T, fn func(t *testing.T, s *repository.Storage)) {
	t.Helper()
	for _, name := range Drivers() {
		t.Run(name, func(t *testing.T) {
			fn(t, NewDriverStorage(t, name))
		})
	}
}

// EnvPgBouncerDSN names the environment variable with the DSN of a PgBouncer
// in transaction mode in front of the test server (.ci/pgbouncer prints
// one); the PgBouncer tests skip without it.
const EnvPgBouncerDSN = "WORKFLOW_TEST_PGBOUNCER_DSN"

// PgBouncerDatabase creates the database name afresh on the test server,
// directly, and returns the DSN that reaches it through PgBouncer; it skips
// the test when EnvPgBouncerDSN is unset. (PgBouncer passes no search_path,
// so the per-test schemas of PostgresSchemaDSN do not work through it.)
func PgBouncerDatabase(t testing.TB, name string) string {
	t.Helper()
	dsn := os.Getenv(EnvPgBouncerDSN)
	if dsn == "" {
		t.Skipf("%s not set", EnvPgBouncerDSN)
	}
	admin, err := sql.Open("pgx", PostgresDSN(t))
	if err != nil {
		t.Fatalf("opening PostgreSQL: %v", err)
	}
	defer admin.Close()
	for _, stmt := range []string{"DROP DATABASE IF EXISTS " + name + " WITH (FORCE)", "CREATE DATABASE " + name} {
		if _, err := admin.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s is not a URL", EnvPgBouncerDSN)
	}
	u.Path = "/" + name
	return u.String()
}
