package repository

import (
	"context"
	"fmt"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
)

// UpsertDefinitionSQL is the statement SaveDefinition runs.
const UpsertDefinitionSQL = `INSERT INTO workflow_definitions (id, version, name, definition, created_at, updated_at) ` +
	`VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id, version) DO UPDATE SET ` +
	`name = excluded.name, definition = excluded.definition, updated_at = excluded.updated_at` + returningDefinition

// SaveDefinition implements DefinitionRepository.
func (s *Storage) SaveDefinition(ctx context.Context, def *models.WorkflowDefinition) error {
	if def == nil {
		return fmt.Errorf("nil definition: %w", ErrInvalidArgument)
	}
	in, err := checkDefinition(def)
	if err != nil {
		return err
	}
	now := s.dialect.now()
	var saved models.WorkflowDefinition
	err = s.run(ctx, func(db *gorm.DB) error {
		return db.Raw(UpsertDefinitionSQL, in.id, in.version, in.name, in.spec, now, now).Scan(&saved).Error
	})
	if err != nil {
		return fmt.Errorf("saving definition %s@%s: %w", def.ID, def.Version, err)
	}
	s.dialect.scanned(&saved)
	*def = saved
	return nil
}

// newDefinition is a validated definition, ready to write.
type newDefinition struct {
	id, version, name string
	spec              models.JSON
}

func checkDefinition(def *models.WorkflowDefinition) (*newDefinition, error) {
	if err := checkDefinitionKey(def.ID, def.Version); err != nil {
		return nil, err
	}
	if err := checkID("definition name", def.Name); err != nil {
		return nil, err
	}
	spec, err := encodeJSON("definition spec", def.Spec)
	if err != nil {
		return nil, err
	}
	return &newDefinition{id: def.ID, version: def.Version, name: def.Name, spec: spec}, nil
}

func checkDefinitionKey(id, version string) error {
	if err := checkID("definition id", id); err != nil {
		return err
	}
	return checkID("definition version", version)
}

// GetDefinition implements DefinitionRepository.
func (s *Storage) GetDefinition(ctx context.Context, id, version string) (*models.WorkflowDefinition, error) {
	if err := checkDefinitionKey(id, version); err != nil {
		return nil, err
	}
	var defs []models.WorkflowDefinition
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Where("id = ? AND version = ?", id, version).Limit(1).Find(&defs).Error
	})
	if err != nil {
		return nil, fmt.Errorf("getting definition %s@%s: %w", id, version, err)
	}
	if len(defs) == 0 {
		return nil, fmt.Errorf("getting definition %s@%s: %w", id, version, ErrNotFound)
	}
	s.dialect.scanned(&defs)
	return &defs[0], nil
}

// ListDefinitions implements DefinitionRepository. The prefix is matched as a
// range of the byte-ordered name index, [prefix, successor), so it needs no
// LIKE escaping and is case-sensitive on both dialects.
func (s *Storage) ListDefinitions(ctx context.Context, namePrefix string) ([]models.WorkflowDefinition, error) {
	if err := checkText("name prefix", namePrefix); err != nil {
		return nil, err
	}
	var defs []models.WorkflowDefinition
	err := s.run(ctx, func(q *gorm.DB) error {
		if namePrefix != "" {
			q = q.Where("name >= ?", namePrefix)
			if upper, ok := prefixSuccessor(namePrefix); ok {
				q = q.Where("name < ?", upper)
			}
		}
		return q.Order("name, id, version").Find(&defs).Error
	})
	if err != nil {
		return nil, fmt.Errorf("listing definitions with prefix %q: %w", namePrefix, err)
	}
	s.dialect.scanned(&defs)
	return defs, nil
}

// prefixSuccessor returns the least string greater than every string that
// starts with prefix, in code point (UTF-8 byte) order; false when none exists.
func prefixSuccessor(prefix string) (string, bool) {
	runes := []rune(prefix)
	for i := len(runes) - 1; i >= 0; i-- {
		next := runes[i] + 1
		if next >= 0xD800 && next <= 0xDFFF { // surrogates are not characters
			next = 0xE000
		}
		if next <= utf8.MaxRune {
			runes[i] = next
			return string(runes[:i+1]), true
		}
	}
	return "", false
}

// DeleteDefinition implements DefinitionRepository. The statement itself
// refuses to delete a definition that executions reference, all versions or
// none, so the guarantee holds on a SQLite connection with foreign keys off;
// PostgreSQL's foreign key still catches an execution created concurrently.
func (s *Storage) DeleteDefinition(ctx context.Context, id, version string) error {
	if err := checkID("definition id", id); err != nil {
		return err
	}
	match, referenced, args := "id = ?", "definition_id = ?", []any{id}
	if version != "" {
		if err := checkID("definition version", version); err != nil {
			return err
		}
		match, referenced = "id = ? AND version = ?", "definition_id = ? AND definition_version = ?"
		args = []any{id, version}
	}
	var deleted, existing int64
	err := s.run(ctx, func(db *gorm.DB) error {
		res := db.Exec(`DELETE FROM workflow_definitions WHERE `+match+
			` AND NOT EXISTS (SELECT 1 FROM workflow_executions WHERE `+referenced+`)`, append(args, args...)...)
		if res.Error != nil || res.RowsAffected > 0 {
			deleted = res.RowsAffected
			return res.Error
		}
		// Nothing deleted: tell "referenced" from "missing".
		return db.Model(&models.WorkflowDefinition{}).Where(match, args...).Count(&existing).Error
	})
	switch {
	case s.dialect.isForeignKeyViolation(err):
		return fmt.Errorf("deleting definition %s@%s: executions reference it: %w", id, version, ErrInUse)
	case err != nil:
		return fmt.Errorf("deleting definition %s@%s: %w", id, version, err)
	case deleted == 0 && existing > 0:
		return fmt.Errorf("deleting definition %s@%s: executions reference it: %w", id, version, ErrInUse)
	case deleted == 0:
		return fmt.Errorf("deleting definition %s@%s: %w", id, version, ErrNotFound)
	}
	return nil
}
