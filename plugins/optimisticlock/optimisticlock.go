// Package optimisticlock is a GORM plugin that guards the models that opt in
// against lost updates.
//
// A model opts in by giving one field the type [Version] (any field name, any
// column); models without such a field behave exactly as if the plugin were
// not registered, whatever their fields are called. Register the plugin with
// db.Use([New]()). From then on, for a model that opts in:
//
//   - Create stores version 1 when the field is zero.
//   - Update, Updates (struct or map) and Save add "WHERE version = <in-memory
//     version>" and "SET version = version + 1" (see [Bump]), and on success
//     increment the in-memory version.
//   - Delete adds the same WHERE.
//   - When the WHERE matches no row, the statement fails with
//     [ErrConcurrentUpdate] if the row exists with another version, or with
//     gorm.ErrRecordNotFound if it does not exist; the error is raised before the
//     transaction commits, and a stale Save never falls back to an upsert.
//
// A zero in-memory Version means "unknown": the update is not checked but the
// version is still bumped, so other holders of the row notice the change.
// Statements that skip hooks (UpdateColumn, UpdateColumns, a Session with
// SkipHooks) skip the plugin too: they are the way to write without bumping
// the version, or to bump it by hand with [Bump].
package optimisticlock

import (
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// ErrConcurrentUpdate is returned when a version-checked statement finds its
// row changed since it was read.
var ErrConcurrentUpdate = errors.New("optimisticlock: concurrent update")

// Name is the plugin's name, and the prefix of every callback it registers.
const Name = "optimisticlock"

// expectedKey holds, per statement, the version (an int64) the WHERE clause
// checked.
const expectedKey = Name + ":expected"

// plugin has no settings: which models it guards is decided by their fields'
// types alone.
type plugin struct{}

// New returns the plugin; see the package documentation for what it does.
func New() gorm.Plugin { return &plugin{} }

// Name returns the plugin's name.
func (p *plugin) Name() string { return Name }

// Initialize registers the plugin's callbacks. A second call is a no-op.
func (p *plugin) Initialize(db *gorm.DB) error {
	cb := db.Callback()
	if cb.Update().Get(Name+":before:update") != nil {
		return nil
	}
	registrations := []struct {
		name     string
		register func(name string, fn func(*gorm.DB)) error
		fn       func(*gorm.DB)
	}{
		{Name + ":before:create", cb.Create().Before("gorm:create").Register, p.beforeCreate},
		{Name + ":before:update", cb.Update().After("gorm:before_update").Before("gorm:update").Register, p.beforeUpdate},
		// Before gorm:after_update, so the error lands before COMMIT.
		{Name + ":after:update", cb.Update().After("gorm:update").Before("gorm:after_update").Register, p.afterWrite},
		{Name + ":before:delete", cb.Delete().After("gorm:before_delete").Before("gorm:delete").Register, p.beforeDelete},
		{Name + ":after:delete", cb.Delete().After("gorm:delete").Before("gorm:after_delete").Register, p.afterWrite},
	}
	for _, r := range registrations {
		if err := r.register(r.name, r.fn); err != nil {
			return fmt.Errorf("registering %s: %w", r.name, err)
		}
	}
	return nil
}

// versionField returns the statement's version field, or nil when the model has
// none or the statement is not one the plugin handles.
func (p *plugin) versionField(db *gorm.DB) *schema.Field {
	stmt := db.Statement
	if db.Error != nil || stmt.Schema == nil || stmt.SQL.Len() > 0 {
		return nil
	}
	return lockField(stmt.Schema)
}

// lockField returns the model's first stored field of type Version or
// *Version, or nil. The type is the opt-in: a field's name says nothing, since
// apps have integer "Version" fields of their own that must stay untouched.
func lockField(s *schema.Schema) *schema.Field {
	for _, field := range s.Fields {
		if field.DBName != "" && (field.FieldType == versionType || field.FieldType == versionPtrType) {
			return field
		}
	}
	return nil
}

// versionOf reads the version field of the row in rv; ok is false when the
// version is unknown (zero, or a nil *Version).
func versionOf(db *gorm.DB, field *schema.Field, rv reflect.Value) (version int64, ok bool) {
	value, zero := field.ValueOf(db.Statement.Context, rv)
	if zero {
		return 0, false
	}
	switch v := value.(type) {
	case Version:
		version = int64(v)
	case *Version:
		version = int64(*v)
	}
	return version, version != 0
}

func (p *plugin) beforeCreate(db *gorm.DB) {
	field := p.versionField(db)
	if field == nil {
		return
	}
	rv := db.Statement.ReflectValue
	set := func(v reflect.Value) {
		if _, known := versionOf(db, field, v); !known {
			db.AddError(field.Set(db.Statement.Context, v, int64(1)))
		}
	}
	switch rv.Kind() {
	case reflect.Struct:
		set(rv)
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			set(reflect.Indirect(rv.Index(i)))
		}
	}
}

// expectedVersion returns the in-memory version of a single-row statement, and
// whether the statement may be checked against it: only when the row is pinned
// by its primary key or by the caller's own conditions, so that a bare
// "WHERE version = 3" can never touch every row at version 3.
func expectedVersion(db *gorm.DB, field *schema.Field) (int64, bool) {
	stmt := db.Statement
	if stmt.ReflectValue.Kind() != reflect.Struct {
		return 0, false
	}
	version, known := versionOf(db, field, stmt.ReflectValue)
	if !known {
		return 0, false
	}
	if _, ok := stmt.Clauses["WHERE"]; ok {
		return version, true
	}
	return version, primaryKeySet(db)
}

func primaryKeySet(db *gorm.DB) bool {
	stmt := db.Statement
	if len(stmt.Schema.PrimaryFields) == 0 {
		return false
	}
	for _, pk := range stmt.Schema.PrimaryFields {
		if _, zero := pk.ValueOf(stmt.Context, stmt.ReflectValue); zero {
			return false
		}
	}
	return true
}

func checkVersion(db *gorm.DB, field *schema.Field, version int64) {
	db.Statement.AddClause(clause.Where{Exprs: []clause.Expression{
		clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: field.DBName}, Value: version},
	}})
	db.InstanceSet(expectedKey, version)
}

// beforeUpdate builds the SET clause the way gorm:update would, then replaces
// any assignment to the version column with the [Bump]. Building
// it here keeps GORM's own rules for structs, maps, Select and Omit, and a
// Select that leaves out the version column cannot drop the bump.
func (p *plugin) beforeUpdate(db *gorm.DB) {
	field := p.versionField(db)
	if field == nil || db.Statement.SkipHooks {
		return
	}
	stmt := db.Statement
	if _, ok := stmt.Clauses["SET"]; ok {
		return
	}
	version, check := expectedVersion(db, field)
	set := callbacks.ConvertToAssignments(stmt)
	if db.Error != nil || len(set) == 0 {
		return
	}
	if stmt.ReflectValue.Kind() == reflect.Struct {
		// ConvertToAssignments copies a "version" the caller passed into the
		// model; the model keeps the version it was read at until the write lands.
		if original, _ := versionOf(db, field, stmt.ReflectValue); original != version && check {
			db.AddError(field.Set(stmt.Context, stmt.ReflectValue, version))
		}
	}
	kept := set[:0]
	for _, a := range set {
		if a.Column.Name != field.DBName {
			kept = append(kept, a)
		}
	}
	kept = append(kept, clause.Assignment{Column: clause.Column{Name: field.DBName}, Value: Bump(field.DBName)})
	stmt.AddClause(kept)
	if check {
		checkVersion(db, field, version)
	}
}

func (p *plugin) beforeDelete(db *gorm.DB) {
	field := p.versionField(db)
	if field == nil {
		return
	}
	if version, check := expectedVersion(db, field); check {
		checkVersion(db, field, version)
	}
}

// afterWrite turns a version miss into an error and, on a hit, moves the
// in-memory version forward.
func (p *plugin) afterWrite(db *gorm.DB) {
	expected, checked := db.InstanceGet(expectedKey)
	if !checked || db.Error != nil {
		return
	}
	if db.RowsAffected == 0 {
		db.AddError(missError(db))
		return
	}
	if _, updated := db.Statement.Clauses["SET"]; updated {
		field := lockField(db.Statement.Schema)
		db.AddError(field.Set(db.Statement.Context, db.Statement.ReflectValue, expected.(int64)+1))
	}
}

// missError tells a row that changed from a row that is gone, with one SELECT by
// primary key inside the same transaction; it runs only after a miss.
func missError(db *gorm.DB) error {
	stmt := db.Statement
	if !primaryKeySet(db) {
		return ErrConcurrentUpdate
	}
	query := db.Session(&gorm.Session{NewDB: true, SkipHooks: true}).Table(stmt.Table)
	for _, pk := range stmt.Schema.PrimaryFields {
		value, _ := pk.ValueOf(stmt.Context, stmt.ReflectValue)
		query = query.Where(clause.Eq{Column: clause.Column{Name: pk.DBName}, Value: value})
	}
	var count int64
	if err := query.Count(&count).Error; err != nil {
		return fmt.Errorf("checking version miss: %w", err)
	}
	if count == 0 {
		return gorm.ErrRecordNotFound
	}
	return ErrConcurrentUpdate
}
