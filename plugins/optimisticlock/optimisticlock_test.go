package optimisticlock_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/glebarez/sqlite"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/plugins/optimisticlock"
)

// account is a user's model that opts in: the plugin knows nothing of it but
// the type of its Version field.
type account struct {
	ID        int64 `gorm:"primaryKey"`
	Owner     string
	Balance   int64
	Version   optimisticlock.Version
	UpdatedAt time.Time
}

// note is a user's model with an integer field named Version of its own: it
// does not opt in, so the plugin must leave it alone.
type note struct {
	ID      int64 `gorm:"primaryKey"`
	Text    string
	Version int64
}

// ticket opts in through a pointer field with another name and column.
type ticket struct {
	ID    int64 `gorm:"primaryKey"`
	Title string
	Rev   *optimisticlock.Version `gorm:"column:revision"`
}

func mockDB(t *testing.T) (*gorm.DB, sqlmock.Sqlmock) {
	t.Helper()
	sqlDB, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	require.NoError(t, err)
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	require.NoError(t, db.Use(optimisticlock.New()))
	t.Cleanup(func() {
		require.NoError(t, mock.ExpectationsWereMet())
		_ = sqlDB.Close()
	})
	return db, mock
}

func TestMock_UpdateChecksAndBumps(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectExec(`UPDATE "accounts" SET "balance"=$1,"updated_at"=$2,"version"="version" + 1 WHERE "id" = $3 AND "accounts"."version" = $4`).
		WithArgs(int64(50), sqlmock.AnyArg(), int64(7), int64(3)).
		WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()

	acc := account{ID: 7, Version: 3}
	require.NoError(t, db.Model(&acc).Update("balance", 50).Error)
	require.EqualValues(t, 4, acc.Version, "a hit increments the in-memory version")
}

func TestMock_MissIsConflictAndRollsBack(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectExec(`UPDATE "accounts" SET "owner"=$1,"updated_at"=$2,"version"="version" + 1 WHERE "id" = $3 AND "accounts"."version" = $4`).
		WithArgs("bob", sqlmock.AnyArg(), int64(7), int64(3)).
		WillReturnResult(sqlmock.NewResult(0, 0))
	mock.ExpectQuery(`SELECT count(*) FROM "accounts" WHERE "id" = $1`).
		WithArgs(int64(7)).WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(1))
	mock.ExpectRollback()

	acc := account{ID: 7, Version: 3}
	err := db.Model(&acc).Updates(map[string]any{"owner": "bob", "version": 99}).Error
	require.ErrorIs(t, err, optimisticlock.ErrConcurrentUpdate)
	require.EqualValues(t, 3, acc.Version)
}

func TestMock_MissOnGoneRowIsNotFound(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectExec(`DELETE FROM "accounts" WHERE "accounts"."version" = $1 AND "accounts"."id" = $2`).
		WithArgs(int64(3), int64(7)).WillReturnResult(sqlmock.NewResult(0, 0))
	mock.ExpectQuery(`SELECT count(*) FROM "accounts" WHERE "id" = $1`).
		WithArgs(int64(7)).WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(0))
	mock.ExpectRollback()

	err := db.Delete(&account{ID: 7, Version: 3}).Error
	require.ErrorIs(t, err, gorm.ErrRecordNotFound)
	require.NotErrorIs(t, err, optimisticlock.ErrConcurrentUpdate)
}

func TestMock_StaleSaveDoesNotUpsert(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectExec(`UPDATE "accounts" SET "owner"=$1,"balance"=$2,"updated_at"=$3,"version"="version" + 1 WHERE "id" = $4 AND "accounts"."version" = $5`).
		WithArgs("ann", int64(10), sqlmock.AnyArg(), int64(7), int64(3)).
		WillReturnResult(sqlmock.NewResult(0, 0))
	mock.ExpectQuery(`SELECT count(*) FROM "accounts" WHERE "id" = $1`).
		WithArgs(int64(7)).WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(1))
	mock.ExpectRollback()
	// No INSERT ... ON CONFLICT follows: sqlmock would fail on it.

	err := db.Save(&account{ID: 7, Owner: "ann", Balance: 10, Version: 3}).Error
	require.ErrorIs(t, err, optimisticlock.ErrConcurrentUpdate)
}

func TestMock_CreateStartsAtOne(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectQuery(`INSERT INTO "accounts" ("owner","balance","version","updated_at") VALUES ($1,$2,$3,$4) RETURNING "id"`).
		WithArgs("ann", int64(0), int64(1), sqlmock.AnyArg()).
		WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(1))
	mock.ExpectCommit()

	acc := account{Owner: "ann"}
	require.NoError(t, db.Create(&acc).Error)
	require.EqualValues(t, 1, acc.Version)
}

func TestMock_UnknownVersionBumpsWithoutCheck(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectExec(`UPDATE "accounts" SET "balance"=$1,"updated_at"=$2,"version"="version" + 1 WHERE owner = $3`).
		WithArgs(int64(0), sqlmock.AnyArg(), "ann").WillReturnResult(sqlmock.NewResult(0, 2))
	mock.ExpectCommit()
	require.NoError(t, db.Model(&account{}).Where("owner = ?", "ann").Update("balance", 0).Error)
}

func TestMock_SelectCannotDropTheBump(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectBegin()
	// GORM keeps updated_at in a Select; the plugin keeps the version bump.
	mock.ExpectExec(`UPDATE "accounts" SET "owner"=$1,"updated_at"=$2,"version"="version" + 1 WHERE "id" = $3 AND "accounts"."version" = $4`).
		WithArgs("cy", sqlmock.AnyArg(), int64(7), int64(2)).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	acc := account{ID: 7, Version: 2}
	require.NoError(t, db.Model(&acc).Select("owner").Updates(account{Owner: "cy", Balance: 5}).Error)
	require.EqualValues(t, 3, acc.Version)
}

func TestMock_UpdateColumnSkipsThePlugin(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectExec(`UPDATE "accounts" SET "balance"=$1 WHERE "id" = $2`).
		WithArgs(int64(1), int64(7)).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	acc := account{ID: 7, Version: 2}
	require.NoError(t, db.Model(&acc).UpdateColumn("balance", 1).Error)
	require.EqualValues(t, 2, acc.Version)
}

func TestInitializeTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	db, _ := mockDB(t)
	require.NoError(t, optimisticlock.New().Initialize(db))
}

// realDBs returns a fresh SQLite database and, when configured, a PostgreSQL
// one, each with the plugin and an accounts table.
func realDBs(t *testing.T) map[string]*gorm.DB {
	t.Helper()
	dbs := map[string]*gorm.DB{}
	lite, err := gorm.Open(sqlite.Open("file:/"+regexp.MustCompile(`\W`).ReplaceAllString(t.Name(), "_")+".db?vfs=memdb&_txlock=immediate"), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	dbs["sqlite"] = lite
	if dsn := postgresDSN(t); dsn != "" {
		pg, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
		require.NoError(t, err)
		dbs["postgres"] = pg
	}
	for name, db := range dbs {
		require.NoError(t, db.Use(optimisticlock.New()), name)
		require.NoError(t, db.AutoMigrate(&account{}, &note{}, &ticket{}), name)
		sqlDB, _ := db.DB()
		t.Cleanup(func() { _ = sqlDB.Close() })
	}
	return dbs
}

func TestReal_EveryOperation(t *testing.T) {
	t.Parallel()
	for name, db := range realDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db := db.WithContext(ctx)
			mine := account{Owner: "ann", Balance: 10}
			require.NoError(t, db.Create(&mine).Error)
			require.EqualValues(t, 1, mine.Version)
			theirs := mine // a second holder of the same row

			require.NoError(t, db.Model(&mine).Update("balance", 20).Error)
			require.EqualValues(t, 2, mine.Version)
			require.NoError(t, db.Model(&mine).Updates(account{Owner: "bob"}).Error)
			require.NoError(t, db.Model(&mine).Updates(map[string]any{"balance": 30}).Error)
			mine.Balance = 40
			require.NoError(t, db.Save(&mine).Error)
			require.EqualValues(t, 5, mine.Version)

			// Every write through the stale copy is refused.
			require.ErrorIs(t, db.Model(&theirs).Update("balance", 0).Error, optimisticlock.ErrConcurrentUpdate)
			require.ErrorIs(t, db.Model(&theirs).Updates(account{Owner: "eve"}).Error, optimisticlock.ErrConcurrentUpdate)
			require.ErrorIs(t, db.Model(&theirs).Updates(map[string]any{"owner": "eve"}).Error, optimisticlock.ErrConcurrentUpdate)
			theirs.Owner = "eve"
			require.ErrorIs(t, db.Save(&theirs).Error, optimisticlock.ErrConcurrentUpdate)
			require.ErrorIs(t, db.Delete(&theirs).Error, optimisticlock.ErrConcurrentUpdate)

			var stored account
			require.NoError(t, db.First(&stored, mine.ID).Error)
			require.Equal(t, "bob", stored.Owner)
			require.EqualValues(t, 40, stored.Balance)
			require.EqualValues(t, 5, stored.Version)
			var count int64
			require.NoError(t, db.Model(&account{}).Count(&count).Error)
			require.EqualValues(t, 1, count, "a stale Save did not upsert a second row")

			require.NoError(t, db.Delete(&mine).Error)
			err := db.Model(&mine).Update("balance", 1).Error
			require.True(t, errors.Is(err, gorm.ErrRecordNotFound), "gone, not conflicting: %v", err)
		})
	}
}

func TestMock_PlainVersionFieldIsUntouched(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectQuery(`INSERT INTO "notes" ("text","version") VALUES ($1,$2) RETURNING "id"`).
		WithArgs("hi", int64(0)).WillReturnRows(sqlmock.NewRows([]string{"id"}).AddRow(7))
	mock.ExpectCommit()
	mock.ExpectBegin()
	mock.ExpectExec(`UPDATE "notes" SET "text"=$1,"version"=$2 WHERE "id" = $3`).
		WithArgs("ho", int64(3), int64(7)).WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()

	n := note{Text: "hi"}
	require.NoError(t, db.Create(&n).Error)
	require.EqualValues(t, 0, n.Version, "Create does not start a plain field at 1")
	n.Text, n.Version = "ho", 3
	require.NoError(t, db.Save(&n).Error)
	require.EqualValues(t, 3, n.Version, "Save does not bump a plain field")
}

func TestReal_PlainVersionFieldIsUntouched(t *testing.T) {
	t.Parallel()
	for name, db := range realDBs(t) {
		t.Run(name, func(t *testing.T) {
			db := db.WithContext(context.Background())
			mine := note{Text: "a", Version: 1}
			require.NoError(t, db.Create(&mine).Error)
			theirs := mine

			mine.Text = "b"
			require.NoError(t, db.Save(&mine).Error)
			require.EqualValues(t, 1, mine.Version, "Save does not bump")
			theirs.Text = "c"
			require.NoError(t, db.Save(&theirs).Error, "a stale Save succeeds")
			require.NoError(t, db.Model(&theirs).Updates(map[string]any{"text": "d"}).Error)
			require.NoError(t, db.Delete(&note{ID: mine.ID, Version: 99}).Error, "Delete ignores the field")

			var count int64
			require.NoError(t, db.Model(&note{}).Count(&count).Error)
			require.Zero(t, count)
		})
	}
}

func TestReal_PointerFieldWithOwnColumn(t *testing.T) {
	t.Parallel()
	for name, db := range realDBs(t) {
		t.Run(name, func(t *testing.T) {
			db := db.WithContext(context.Background())
			mine := ticket{Title: "a"}
			require.NoError(t, db.Create(&mine).Error)
			require.NotNil(t, mine.Rev)
			require.EqualValues(t, 1, *mine.Rev, "a nil version starts at 1")
			stale := ticket{ID: mine.ID, Title: "x", Rev: new(optimisticlock.Version)}
			*stale.Rev = 1

			mine.Title = "b"
			require.NoError(t, db.Save(&mine).Error)
			require.EqualValues(t, 2, *mine.Rev)
			require.ErrorIs(t, db.Save(&stale).Error, optimisticlock.ErrConcurrentUpdate)
			require.ErrorIs(t, db.Model(&stale).Updates(ticket{Title: "y"}).Error, optimisticlock.ErrConcurrentUpdate)

			var stored ticket
			require.NoError(t, db.First(&stored, mine.ID).Error)
			require.Equal(t, "b", stored.Title)
			require.EqualValues(t, 2, *stored.Rev)
		})
	}
}

func TestBump(t *testing.T) {
	t.Parallel()
	db, mock := mockDB(t)
	mock.ExpectExec(`UPDATE "notes" SET "version"="version" + 1 WHERE id = $1`).
		WithArgs(int64(7)).WillReturnResult(sqlmock.NewResult(0, 1))
	require.NoError(t, db.Session(&gorm.Session{SkipDefaultTransaction: true}).Model(&note{}).Where("id = ?", 7).
		UpdateColumn("version", optimisticlock.Bump("version")).Error)
}

func TestVersionIsANumberInJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(account{Version: 3})
	require.NoError(t, err)
	require.Contains(t, string(b), `"Version":3`)
	var back account
	require.NoError(t, json.Unmarshal(b, &back))
	require.EqualValues(t, 3, back.Version)
}
