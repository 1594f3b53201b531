// Package repository stores workflow definitions, executions, steps and signals
// in SQLite or PostgreSQL through GORM.
//
// [WorkflowStorage] is what the engine, the recovery service and users' fakes
// see; [Storage] is its one implementation. Open one with [Open], [NewSQLite],
// [NewPostgres] or [NewInMemory], or wrap an app's own *gorm.DB with [New] so
// that app writes and workflow writes commit together in [Storage.Transaction].
//
// Every operation is one statement or one transaction. Version-checked updates
// go through the optimisticlock plugin and fail with [ErrConcurrentUpdate];
// an unknown id is [ErrNotFound]; bad input is [ErrInvalidArgument] before any
// SQL runs. Whatever differs between the two databases lives in dialect_*.go,
// and in the *_postgres.go files for what only PostgreSQL does (LISTEN, step
// starts and ends written together as one statement over arrays).
//
// The checkpoints of concurrent workflows (a step start, an execution's
// creation or end) that arrive while one is being written are written
// together, each with its own fencing and its own outcome (groupcommit.go):
// one transaction on SQLite, one statement per kind on PostgreSQL. A lone
// workflow's checkpoint is never held back.
//
// The guarantees and errors are the same on every GORM driver: gorm.io/driver/postgres
// (also on an app's own *sql.DB), github.com/glebarez/sqlite and gorm.io/driver/sqlite,
// with or without gorm.Config.TranslateError. They rest on the statements
// themselves, not on connection settings an app's database may lack (SQLite's
// foreign_keys, busy_timeout, WAL or IMMEDIATE transactions); on SQLite, a
// statement or transaction of the library's own that fails because the
// database is busy or locked runs again, a few times within a few seconds,
// except inside a transaction the caller owns.
package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"gorm.io/gorm"

	"github.com/plexspaces/workflow/migrations"
	"github.com/plexspaces/workflow/plugins/optimisticlock"
)

// Storage implements WorkflowStorage on a *gorm.DB. It is safe for concurrent
// use.
type Storage struct {
	db      *gorm.DB
	dialect dialect
	// closers release what the repository opened itself, newest first; a
	// Storage made by New or Transaction owns nothing.
	closers []func() error
	// pool is the *sql.DB under db, which keys the in-process events (see
	// events.go); nil for a Storage on a caller's transaction.
	pool *sql.DB
	// pending holds the events of a Storage.Transaction until it commits.
	pending *eventBuffer
	// logger, if set, hears what Listen cannot do (a lost connection).
	logger *slog.Logger
	// group gathers concurrent checkpoints into shared transactions
	// (groupcommit.go); nil where they are written one by one.
	group *groupCommit
	// served: the database has migration 013's table of the definitions
	// nodes run (nodes.go). One opened WithoutMigrations before it was
	// migrated, or on a caller's transaction (InTransaction), counts every
	// live node in fair shares, as before 013.
	served bool
}

// New wraps db, which must be a PostgreSQL or SQLite *gorm.DB, registers the
// optimisticlock plugin on it (it guards only models with a field of type
// optimisticlock.Version; the app's other models are untouched) and applies the
// migrations unless WithoutMigrations is given.
// The Storage works on a session of db: writes outside Transaction use no
// implicit transaction, and times are UTC microseconds. db may come from any
// of the drivers the package doc names, opened as the app likes; New warns
// (through WithLogger, else db's logger) when a SQLite file runs without WAL.
func New(ctx context.Context, db *gorm.DB, opts ...Option) (*Storage, error) {
	if db == nil {
		return nil, fmt.Errorf("nil *gorm.DB: %w", ErrInvalidArgument)
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return newStorage(ctx, db, cfg)
}

// storageSession is what every Storage works on: db's dialect, the
// optimisticlock plugin registered once, and a session with UTC times, no
// implicit transaction, and QueryFields, which names the model's columns
// instead of "*", so reads skip live_heartbeat (only the stale index needs
// it).
func storageSession(db *gorm.DB) (*gorm.DB, dialect, error) {
	d, err := newDialect(db)
	if err != nil {
		return nil, nil, err
	}
	if _, registered := db.Config.Plugins[optimisticlock.Name]; !registered {
		if err := db.Use(optimisticlock.New()); err != nil {
			return nil, nil, fmt.Errorf("registering optimisticlock: %w", err)
		}
	}
	return db.Session(&gorm.Session{NowFunc: utcNow, SkipDefaultTransaction: true, QueryFields: true}), d, nil
}

func newStorage(ctx context.Context, db *gorm.DB, cfg config) (*Storage, error) {
	session, d, err := storageSession(db)
	if err != nil {
		return nil, err
	}
	if cfg.logger != nil {
		session.Logger = newWarnings(cfg.logger)
	}
	s := &Storage{db: session, dialect: d, logger: cfg.logger}
	if pool, err := db.DB(); err == nil {
		s.pool = pool
	}
	switch {
	case d.name() == "sqlite":
		s.group = &groupCommit{commit: s.commitCheckpoints}
	case onPgx(s.pool):
		s.group = &groupCommit{commit: s.commitPostgres, byStatement: true}
	}
	if !cfg.inMemory {
		warnings, err := d.settingWarnings(ctx, session)
		if err != nil {
			return nil, fmt.Errorf("reading database settings: %w", err)
		}
		for _, w := range warnings {
			if cfg.logger != nil {
				cfg.logger.WarnContext(ctx, w)
			} else {
				session.Logger.Warn(ctx, "%s", w)
			}
		}
	}
	if cfg.migrate {
		// One transaction: on SQLite, a run that lost to another node's
		// migration is busy and runs again.
		if err := s.run(ctx, func(db *gorm.DB) error { return migrations.Migrate(ctx, db) }); err != nil {
			return nil, err
		}
		s.served = true
	} else {
		s.served = session.WithContext(ctx).Migrator().HasTable(servedDefinition{})
	}
	return s, nil
}

// DB returns the storage's *gorm.DB, for queries of the app's own; inside
// Transaction it is the transaction.
func (s *Storage) DB() *gorm.DB { return s.db }

// Dialect returns "sqlite" or "postgres".
func (s *Storage) Dialect() string { return s.dialect.name() }

// Transaction runs fn in one database transaction: everything fn writes through
// tx, workflow rows and the app's own through tx.DB(), commits together or not
// at all. fn must use only tx, not s.
//
// The events of what fn writes (see Listener) reach this process's listeners
// only once the transaction commits, and never if it rolls back.
func (s *Storage) Transaction(ctx context.Context, fn func(tx *Storage) error) error {
	pending := s.pending // a nested Transaction commits with the outer one
	if pending == nil {
		pending = &eventBuffer{}
	}
	err := s.db.WithContext(ctx).Transaction(func(gtx *gorm.DB) error {
		return fn(&Storage{db: gtx, dialect: s.dialect, pool: s.pool, pending: pending, logger: s.logger, served: s.served})
	})
	if err == nil && s.pending == nil {
		s.publishCommitted(pending)
	}
	return err
}

// Close releases the connections the storage opened. A storage made by New
// leaves the app's *gorm.DB open.
func (s *Storage) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// query starts a statement; every method begins here so ctx reaches the driver.
func (s *Storage) query(ctx context.Context) *gorm.DB { return s.db.WithContext(ctx) }

// sqlDB returns the pool under db, for settings and Close.
func sqlDB(db *gorm.DB) (*sql.DB, error) {
	pool, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("getting connection pool: %w", err)
	}
	return pool, nil
}
