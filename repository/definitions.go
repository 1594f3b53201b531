package repository

import (
	"context"
	"fmt"
	"unicode/utf8"

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
	if err := checkDefinitionKey(def.ID, def.Version); err != nil {
		return err
	}
	if err := checkID("definition name", def.Name); err != nil {
		return err
	}
	spec, err := encodeJSON("definition spec", def.Spec)
	if err != nil {
		return err
	}
	now := s.dialect.now()
	var saved models.WorkflowDefinition
	err = s.query(ctx).Raw(UpsertDefinitionSQL, def.ID, def.Version, def.Name, spec, now, now).Scan(&saved).Error
	if err != nil {
		return fmt.Errorf("saving definition %s@%s: %w", def.ID, def.Version, err)
	}
	*def = saved
	return nil
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
	var def models.WorkflowDefinition
	if err := s.query(ctx).Where("id = ? AND version = ?", id, version).Take(&def).Error; err != nil {
		return nil, fmt.Errorf("getting definition %s@%s: %w", id, version, notFound(err))
	}
	return &def, nil
}

// ListDefinitions implements DefinitionRepository. The prefix is matched as a
// range of the byte-ordered name index, [prefix, successor), so it needs no
// LIKE escaping and is case-sensitive on both dialects.
func (s *Storage) ListDefinitions(ctx context.Context, namePrefix string) ([]models.WorkflowDefinition, error) {
	if err := checkText("name prefix", namePrefix); err != nil {
		return nil, err
	}
	q := s.query(ctx)
	if namePrefix != "" {
		q = q.Where("name >= ?", namePrefix)
		if upper, ok := prefixSuccessor(namePrefix); ok {
			q = q.Where("name < ?", upper)
		}
	}
	var defs []models.WorkflowDefinition
	if err := q.Order("name, id, version").Find(&defs).Error; err != nil {
		return nil, fmt.Errorf("listing definitions with prefix %q: %w", namePrefix, err)
	}
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

// DeleteDefinition implements DefinitionRepository.
func (s *Storage) DeleteDefinition(ctx context.Context, id, version string) error {
	if err := checkID("definition id", id); err != nil {
		return err
	}
	q := s.query(ctx).Where("id = ?", id)
	if version != "" {
		if err := checkID("definition version", version); err != nil {
			return err
		}
		q = q.Where("version = ?", version)
	}
	res := q.Delete(&models.WorkflowDefinition{})
	switch {
	case s.dialect.isForeignKeyViolation(res.Error):
		return fmt.Errorf("deleting definition %s@%s: executions reference it: %w", id, version, ErrInUse)
	case res.Error != nil:
		return fmt.Errorf("deleting definition %s@%s: %w", id, version, res.Error)
	case res.RowsAffected == 0:
		return fmt.Errorf("deleting definition %s@%s: %w", id, version, ErrNotFound)
	}
	return nil
}
