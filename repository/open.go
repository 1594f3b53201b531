package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// acceptedForms names the DSNs Open takes, for error messages.
const acceptedForms = "accepted forms: sqlite://PATH, sqlite::memory:, postgres://USER@HOST/DB, postgresql://USER@HOST/DB"

func errUnknownScheme(dsn string) error {
	scheme, _, found := strings.Cut(dsn, ":")
	if !found || scheme == "" {
		return fmt.Errorf("DSN has no scheme (%s): %w", acceptedForms, ErrInvalidArgument)
	}
	if len(scheme) > 20 {
		scheme = scheme[:20] + "..."
	}
	return fmt.Errorf("unsupported DSN scheme %q (%s): %w", scheme, acceptedForms, ErrInvalidArgument)
}

// Open opens a storage from a DSN: "sqlite://PATH" (a file, created if
// missing), "sqlite::memory:", or a "postgres://" or "postgresql://" URL.
func Open(ctx context.Context, dsn string, opts ...Option) (*Storage, error) {
	switch {
	case dsn == "sqlite::memory:":
		return NewInMemory(ctx, opts...)
	case strings.HasPrefix(dsn, "sqlite://"):
		return NewSQLite(ctx, dsn, opts...)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return NewPostgres(ctx, dsn, opts...)
	}
	return nil, errUnknownScheme(dsn)
}

// NewInMemory opens a fresh SQLite database that lives in memory until Close.
// Unlike ":memory:" it is one database for every connection of the pool, so it
// behaves like a file database under concurrency.
func NewInMemory(ctx context.Context, opts ...Option) (*Storage, error) {
	dsn, err := sqliteMemoryDSN()
	if err != nil {
		return nil, err
	}
	return openSQLite(ctx, dsn, true, opts)
}

// NewSQLite opens a SQLite database file: dsn is "sqlite://PATH" or a bare
// PATH ("sqlite::memory:" and ":memory:" open NewInMemory). The file gets WAL,
// a busy timeout, foreign keys and IMMEDIATE transactions.
func NewSQLite(ctx context.Context, dsn string, opts ...Option) (*Storage, error) {
	path, memory, err := sqlitePath(dsn)
	if err != nil {
		return nil, err
	}
	if memory {
		return NewInMemory(ctx, opts...)
	}
	return openSQLite(ctx, sqliteFileDSN(path), false, opts)
}

func openSQLite(ctx context.Context, dsn string, memory bool, opts []Option) (*Storage, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	cfg.inMemory = memory
	db, err := gorm.Open(sqlite.Open(dsn), gormConfig())
	if err != nil {
		return nil, fmt.Errorf("opening SQLite: %w", err)
	}
	pool, err := sqlDB(db)
	if err != nil {
		return nil, err
	}
	pool.SetMaxOpenConns(cfg.maxOpenConns)
	pool.SetMaxIdleConns(cfg.maxOpenConns)
	closers := []func() error{pool.Close}
	if memory {
		// A memdb database vanishes with its last connection: hold one open
		// until Close, outside the pool so that it never takes a pool slot.
		keeper, err := keepOpen(ctx, dsn)
		if err != nil {
			_ = pool.Close()
			return nil, fmt.Errorf("opening in-memory SQLite: %w", err)
		}
		closers = append([]func() error{keeper}, closers...)
	}
	return finishOpen(ctx, db, cfg, closers)
}

// keepOpen opens one connection to dsn and returns what closes it.
func keepOpen(ctx context.Context, dsn string) (func() error, error) {
	db, err := sql.Open(sqlite.DriverName, dsn)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return func() error { return errors.Join(conn.Close(), db.Close()) }, nil
}

// NewPostgres opens a PostgreSQL database from a "postgres://" or
// "postgresql://" URL, with a pool of WithMaxOpenConns connections.
func NewPostgres(ctx context.Context, dsn string, opts ...Option) (*Storage, error) {
	if err := checkPostgresDSN(dsn); err != nil {
		return nil, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	connConfig, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("invalid PostgreSQL DSN (%s): %w", acceptedForms, ErrInvalidArgument)
	}
	pool := stdlib.OpenDB(*connConfig, stdlib.OptionAfterConnect(scanTimesInUTC))
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: pool}), gormConfig())
	if err != nil {
		_ = pool.Close()
		// pgx's connect errors name host and user, never the password.
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	pool.SetMaxOpenConns(cfg.maxOpenConns)
	pool.SetMaxIdleConns(cfg.maxOpenConns)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	return finishOpen(ctx, db, cfg, []func() error{pool.Close})
}

func gormConfig() *gorm.Config {
	return &gorm.Config{
		Logger:                 logger.Discard,
		NowFunc:                utcNow,
		SkipDefaultTransaction: true,
	}
}

func finishOpen(ctx context.Context, db *gorm.DB, cfg config, closers []func() error) (*Storage, error) {
	s, err := newStorage(ctx, db, cfg)
	if err != nil {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
		return nil, err
	}
	s.closers = closers
	return s, nil
}
