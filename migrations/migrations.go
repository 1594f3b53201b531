// Package migrations creates and evolves the workflow tables with gormigrate.
//
// [All] returns the migrations, in order, for apps that run gormigrate
// themselves; [Migrate] applies them and is safe to call from several processes
// at once: on PostgreSQL it holds a transaction-scoped advisory lock, on SQLite
// the IMMEDIATE transaction serializes writers. Every migration carries its SQL
// per dialect and a Rollback, and imports no other package of this module.
package migrations

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-gormigrate/gormigrate/v2"
	"gorm.io/gorm"
)

// Migration ids, in the order they run.
const (
	IDDefinitions = "001_workflow_definitions"
	IDExecutions  = "002_workflow_executions"
	IDLabels      = "003_workflow_execution_labels"
	IDSteps       = "004_step_executions"
	IDSignals     = "005_signals"
	IDParkedWaits = "006_parked_waits"
	IDNodes       = "007_workflow_nodes"
	IDWakeUps     = "008_wake_ups"
)

// TableName is where Migrate records the applied migrations. It is not
// gormigrate's default "migrations", so it never mixes with an app's own list.
const TableName = "workflow_schema_migrations"

// advisoryLockKey is the PostgreSQL advisory lock Migrate holds: the bytes of
// "plexwf" as a number, chosen to be unlikely to collide with an app's keys.
const advisoryLockKey int64 = 0x706c65787766

// ErrUnsupportedDialect is returned for a database other than PostgreSQL or SQLite.
var ErrUnsupportedDialect = errors.New("migrations: unsupported dialect")

// ddl is a migration's SQL: statements for one dialect, then common statements
// that run on both.
type ddl struct {
	postgres, sqlite, common []string
}

func (d ddl) statements(dialect string) ([]string, error) {
	switch dialect {
	case "postgres":
		return append(append([]string(nil), d.postgres...), d.common...), nil
	case "sqlite":
		return append(append([]string(nil), d.sqlite...), d.common...), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedDialect, dialect)
}

func exec(tx *gorm.DB, statements []string) error {
	for _, stmt := range statements {
		if err := tx.Exec(stmt).Error; err != nil {
			return err
		}
	}
	return nil
}

func migration(id string, up ddl, tables ...string) *gormigrate.Migration {
	return &gormigrate.Migration{
		ID: id,
		Migrate: func(tx *gorm.DB) error {
			statements, err := up.statements(tx.Dialector.Name())
			if err != nil {
				return err
			}
			if err := exec(tx, statements); err != nil {
				return fmt.Errorf("applying %s: %w", id, err)
			}
			return nil
		},
		Rollback: func(tx *gorm.DB) error {
			for _, table := range tables {
				if err := tx.Exec("DROP TABLE IF EXISTS " + table).Error; err != nil {
					return fmt.Errorf("rolling back %s: %w", id, err)
				}
			}
			return nil
		},
	}
}

// alteration is a migration that changes existing tables; down undoes up.
func alteration(id string, up, down ddl) *gormigrate.Migration {
	run := func(tx *gorm.DB, d ddl, what string) error {
		statements, err := d.statements(tx.Dialector.Name())
		if err != nil {
			return err
		}
		if err := exec(tx, statements); err != nil {
			return fmt.Errorf("%s %s: %w", what, id, err)
		}
		return nil
	}
	return &gormigrate.Migration{
		ID:       id,
		Migrate:  func(tx *gorm.DB) error { return run(tx, up, "applying") },
		Rollback: func(tx *gorm.DB) error { return run(tx, down, "rolling back") },
	}
}

// All returns the workflow migrations in the order they must run, each with a
// Rollback. Apps that run gormigrate themselves append these to their own list.
func All() []*gormigrate.Migration {
	return []*gormigrate.Migration{
		migration(IDDefinitions, definitionsUp, "workflow_definitions"),
		migration(IDExecutions, executionsUp, "workflow_executions"),
		migration(IDLabels, labelsUp, "workflow_execution_labels"),
		migration(IDSteps, stepsUp, "step_executions"),
		migration(IDSignals, signalsUp, "signals"),
		alteration(IDParkedWaits, parkedWaitsUp, parkedWaitsDown),
		migration(IDNodes, nodesUp, "workflow_nodes"),
		alteration(IDWakeUps, wakeUpsUp, wakeUpsDown),
		alteration(IDRetention, retentionUp, retentionDown),
		alteration(IDLeanJournal, leanJournalUp, leanJournalDown),
		alteration(IDOwnedIndex, ownedIndexUp, ownedIndexDown),
		migration(IDServedDefinitions, servedDefinitionsUp, "workflow_node_definitions"),
	}
}

// options keeps gormigrate from opening its own transaction: Migrate runs it
// inside one it holds the lock in.
func options() *gormigrate.Options {
	return &gormigrate.Options{
		TableName:      TableName,
		IDColumnName:   "id",
		IDColumnSize:   255,
		UseTransaction: false,
	}
}

// Migrate applies every migration not yet applied, in one transaction. Running
// it again is a no-op, and concurrent runs against one database all succeed.
func Migrate(ctx context.Context, db *gorm.DB) error {
	return locked(ctx, db, func(m *gormigrate.Gormigrate) error { return m.Migrate() })
}

// RollbackLast undoes the most recently applied migration.
func RollbackLast(ctx context.Context, db *gorm.DB) error {
	return locked(ctx, db, func(m *gormigrate.Gormigrate) error { return m.RollbackLast() })
}

func locked(ctx context.Context, db *gorm.DB, run func(*gormigrate.Gormigrate) error) error {
	dialect := db.Dialector.Name()
	if dialect != "postgres" && dialect != "sqlite" {
		return fmt.Errorf("%w: %q", ErrUnsupportedDialect, dialect)
	}
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if dialect == "postgres" {
			// A session-level lock taken through a pool could be released on
			// another connection; the transaction-scoped one cannot.
			if err := tx.Exec("SELECT pg_advisory_xact_lock(?)", advisoryLockKey).Error; err != nil {
				return fmt.Errorf("taking migration lock: %w", err)
			}
		}
		return run(gormigrate.New(tx, options(), All()))
	})
	if err != nil {
		return fmt.Errorf("migrating workflow schema: %w", err)
	}
	return nil
}
