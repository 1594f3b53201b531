package testutil

import (
	"context"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/repository"
)

// NewMockDB returns a GORM DB with the PostgreSQL dialect on sqlmock, matching
// SQL exactly (sqlmock.QueryMatcherEqual). At cleanup it fails the test if an
// expectation was not met.
func NewMockDB(t testing.TB) (*gorm.DB, sqlmock.Sqlmock) {
	t.Helper()
	sqlDB, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatalf("creating sqlmock: %v", err)
	}
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("opening GORM on sqlmock: %v", err)
	}
	t.Cleanup(func() {
		if err := mock.ExpectationsWereMet(); err != nil {
			t.Errorf("sqlmock: %v", err)
		}
		_ = sqlDB.Close()
	})
	return db, mock
}

// NewMockStorage returns a Storage on NewMockDB, without migrations, so that
// the first SQL it runs is the first the test expects. Pair it with the
// Expect* helpers.
func NewMockStorage(t testing.TB) (*repository.Storage, sqlmock.Sqlmock) {
	t.Helper()
	db, mock := NewMockDB(t)
	s, err := repository.New(context.Background(), db, repository.WithoutMigrations())
	if err != nil {
		t.Fatalf("wrapping mock DB: %v", err)
	}
	return s, mock
}
