package models

import (
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// ErrInvalidJSON is returned when bytes meant for a JSON column are not JSON.
var ErrInvalidJSON = errors.New("models: invalid JSON")

// JSON is a JSON document stored in a column: JSONB on PostgreSQL, TEXT on
// SQLite. Like json.RawMessage it holds the encoded bytes; it marshals as the
// document itself (not base64), and an empty JSON is SQL NULL and JSON null.
type JSON []byte

// MarshalJSON returns the document, or null when j is empty.
func (j JSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return j, nil
}

// UnmarshalJSON stores a copy of data.
func (j *JSON) UnmarshalJSON(data []byte) error {
	if j == nil {
		return errors.New("models: UnmarshalJSON on nil *JSON")
	}
	*j = append((*j)[:0], data...)
	return nil
}

// Value stores the document as text, which both PostgreSQL's JSONB and SQLite's
// TEXT accept; an empty JSON is NULL.
func (j JSON) Value() (driver.Value, error) {
	if len(j) == 0 {
		return nil, nil
	}
	if !json.Valid(j) {
		return nil, ErrInvalidJSON
	}
	return string(j), nil
}

// Scan reads a document as either driver returns it: string, []byte or NULL.
func (j *JSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case []byte:
		*j = append(JSON(nil), v...)
	case string:
		*j = JSON(v)
	default:
		return fmt.Errorf("scanning %T into models.JSON: %w", src, ErrInvalidJSON)
	}
	return nil
}

// Unmarshal decodes the document into v.
func (j JSON) Unmarshal(v any) error {
	if len(j) == 0 {
		return fmt.Errorf("unmarshalling empty document: %w", ErrInvalidJSON)
	}
	return json.Unmarshal(j, v)
}

// String returns the document as text.
func (j JSON) String() string { return string(j) }

// GormDataType names the type for GORM's generic schema code.
func (JSON) GormDataType() string { return "json" }

// GormDBDataType gives the column type per dialect for users who AutoMigrate
// their own models with JSON fields.
func (JSON) GormDBDataType(db *gorm.DB, _ *schema.Field) string {
	if db.Dialector.Name() == "postgres" {
		return "JSONB"
	}
	return "TEXT"
}
