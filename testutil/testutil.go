// Package testutil gives tests real and mocked workflow storage: a fresh
// SQLite database or PostgreSQL schema per test, a GORM DB on sqlmock, and
// ForEachDialect to run one test body on every dialect.
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
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for schema setup

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
