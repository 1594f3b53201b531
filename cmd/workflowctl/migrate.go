package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/migrations"
)

// migrationDocument is one migration in the JSON output of migrate status.
type migrationDocument struct {
	ID      string `json:"id"`
	Applied bool   `json:"applied"`
}

// migrationsDocument is the JSON output of the migrate commands: every
// migration after the command, and what the command applied or rolled back.
type migrationsDocument struct {
	Migrations []migrationDocument `json:"migrations"`
	Applied    []string            `json:"applied,omitempty"`
	RolledBack string              `json:"rolled_back,omitempty"`
}

func (a *app) migrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate status|up|down",
		Short: "Show, apply or roll back the schema migrations",
		Args:  groupArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "status",
			Short: "List the migrations and whether each is applied",
			Args:  exactArgs(),
			RunE: func(cmd *cobra.Command, _ []string) error {
				return a.migrate(cmd.Context(), false, func(*gorm.DB) error { return nil }, func(doc migrationsDocument) error {
					t := newTable(a.stdout, "MIGRATION", "APPLIED")
					for _, m := range doc.Migrations {
						applied := "no"
						if m.Applied {
							applied = "yes"
						}
						t.row(m.ID, applied)
					}
					return t.flush()
				})
			},
		},
		&cobra.Command{
			Use:   "up",
			Short: "Apply every migration not yet applied",
			Long: "Apply every migration not yet applied, in one transaction. Safe to run while\n" +
				"engines run and from several places at once. A missing SQLite file is created.",
			Args: exactArgs(),
			RunE: func(cmd *cobra.Command, _ []string) error {
				ctx := cmd.Context()
				return a.migrate(ctx, true, func(db *gorm.DB) error { return migrations.Migrate(ctx, db) }, func(doc migrationsDocument) error {
					if len(doc.Applied) == 0 {
						_, err := fmt.Fprintln(a.stdout, "the schema is up to date")
						return err
					}
					for _, id := range doc.Applied {
						fmt.Fprintf(a.stdout, "applied %s\n", id)
					}
					return nil
				})
			},
		},
		&cobra.Command{
			Use:   "down",
			Short: "Roll back the last applied migration",
			Long:  "Roll back the most recently applied migration, and only that one.",
			Args:  exactArgs(),
			RunE: func(cmd *cobra.Command, _ []string) error {
				ctx := cmd.Context()
				return a.migrate(ctx, false, func(db *gorm.DB) error { return migrations.RollbackLast(ctx, db) }, func(doc migrationsDocument) error {
					_, err := fmt.Fprintf(a.stdout, "rolled back %s\n", doc.RolledBack)
					return err
				})
			},
		},
	)
	return cmd
}

// migrate runs change on the database and prints the migrations' state
// after it, with what it applied or rolled back, through text (or as JSON).
func (a *app) migrate(ctx context.Context, create bool, change func(*gorm.DB) error, text func(migrationsDocument) error) error {
	store, release, err := a.storage(ctx, create)
	if err != nil {
		return err
	}
	defer release()
	db := store.DB().WithContext(ctx)
	before, err := appliedMigrations(db)
	if err != nil {
		return err
	}
	if err := change(db); err != nil {
		return err
	}
	after, err := appliedMigrations(db)
	if err != nil {
		return err
	}
	var doc migrationsDocument
	for _, m := range migrations.All() {
		doc.Migrations = append(doc.Migrations, migrationDocument{ID: m.ID, Applied: slices.Contains(after, m.ID)})
		switch was, is := slices.Contains(before, m.ID), slices.Contains(after, m.ID); {
		case is && !was:
			doc.Applied = append(doc.Applied, m.ID)
		case was && !is:
			doc.RolledBack = m.ID
		}
	}
	if a.json() {
		return writeJSON(a.stdout, doc)
	}
	return text(doc)
}

// appliedMigrations reads the ids of the applied migrations; none when the
// database has never been migrated.
func appliedMigrations(db *gorm.DB) ([]string, error) {
	if !db.Migrator().HasTable(migrations.TableName) {
		return nil, nil
	}
	var ids []string
	if err := db.Table(migrations.TableName).Pluck("id", &ids).Error; err != nil {
		return nil, fmt.Errorf("reading the applied migrations: %w", err)
	}
	return ids, nil
}
