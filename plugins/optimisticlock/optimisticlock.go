// Package optimisticlock is a GORM plugin that guards every model with an
// integer Version field against lost updates.
//
// Register it with db.Use([New]()). From then on, for such a model:
//
//   - Create stores Version 1 when the field is zero.
//   - Update, Updates (struct or map) and Save add "WHERE version = <in-memory
//     version>" and "SET version = version + 1", and on success increment the
//     in-memory Version.
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
// the version.
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

// expectedKey holds, per statement, the version the WHERE clause checked.
const expectedKey = Name + ":expected"

type plugin struct {
	fieldName string
}

// New returns the plugin; see the package documentation for what it does.
func New(opts ...Option) gorm.Plugin {
	p := &plugin{fieldName: FieldNameDefault}
	for _, opt := range opts {
		opt(p)
	}
	return p
}

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
	field := stmt.Schema.LookUpField(p.fieldName)
	if field == nil || field.DBName == "" {
		return nil
	}
	switch field.FieldType.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return field
	}
	return nil
}

func (p *plugin) beforeCreate(db *gorm.DB) {
	field := p.versionField(db)
	if field == nil {
		return
	}
	rv := db.Statement.ReflectValue
	set := func(v reflect.Value) {
		if _, zero := field.ValueOf(db.Statement.Context, v); zero {
			db.AddError(field.Set(db.Statement.Context, v, 1))
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
func expectedVersion(db *gorm.DB, field *schema.Field) (any, bool) {
	stmt := db.Statement
	if stmt.ReflectValue.Kind() != reflect.Struct {
		return nil, false
	}
	version, zero := field.ValueOf(stmt.Context, stmt.ReflectValue)
	if zero {
		return nil, false
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

func checkVersion(db *gorm.DB, field *schema.Field, version any) {
	db.Statement.AddClause(clause.Where{Exprs: []clause.Expression{
		clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: field.DBName}, Value: version},
	}})
	db.InstanceSet(expectedKey, version)
}

// beforeUpdate builds the SET clause the way gorm:update would, then replaces
// any assignment to the version column with "version = version + 1". Building
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
		if original, _ := field.ValueOf(stmt.Context, stmt.ReflectValue); original != version && check {
			db.AddError(field.Set(stmt.Context, stmt.ReflectValue, version))
		}
	}
	kept := set[:0]
	for _, a := range set {
		if a.Column.Name != field.DBName {
			kept = append(kept, a)
		}
	}
	kept = append(kept, clause.Assignment{
		Column: clause.Column{Name: field.DBName},
		Value:  clause.Expr{SQL: "? + 1", Vars: []any{clause.Column{Name: field.DBName}}},
	})
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
	version, checked := db.InstanceGet(expectedKey)
	if !checked || db.Error != nil {
		return
	}
	if db.RowsAffected == 0 {
		db.AddError(missError(db))
		return
	}
	if _, updated := db.Statement.Clauses["SET"]; updated {
		field := db.Statement.Schema.LookUpField(p.fieldName)
		db.AddError(field.Set(db.Statement.Context, db.Statement.ReflectValue, increment(reflect.ValueOf(version))))
	}
}

func increment(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint() + 1
	}
	return v.Int() + 1
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
