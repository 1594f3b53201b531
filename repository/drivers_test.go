package repository_test

import (
	"path/filepath"
	"testing"

	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/testutil"
)

// gorm.io/driver/sqlite (mattn/go-sqlite3, cgo) is the SQLite driver most GORM
// apps use. It is a test-only dependency, registered here so that no package
// a user imports links cgo. Both drivers open a file the way a typical app
// does, with no pragmas: foreign keys off, rollback journal (no WAL),
// deferred transactions; one also has TranslateError.
const (
	mattn          = "sqlite-mattn"
	mattnTranslate = "sqlite-mattn-translate"
)

func init() {
	testutil.RegisterDriver(mattn, func(t testing.TB) *gorm.DB { return openMattn(t, &gorm.Config{}) })
	testutil.RegisterDriver(mattnTranslate, func(t testing.TB) *gorm.DB {
		return openMattn(t, &gorm.Config{TranslateError: true})
	})
}

// openMattn opens app.db in a fresh directory with gorm.io/driver/sqlite.
func openMattn(t testing.TB, cfg *gorm.Config) *gorm.DB {
	t.Helper()
	return openMattnFile(t, filepath.Join(t.TempDir(), "app.db"), cfg)
}

func openMattnFile(t testing.TB, path string, cfg *gorm.Config) *gorm.DB {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logger.Discard
	}
	db, err := gorm.Open(sqlite.Open(path), cfg)
	if err != nil {
		t.Fatalf("opening %s with gorm.io/driver/sqlite: %v", path, err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}
