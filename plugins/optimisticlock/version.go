package optimisticlock

import (
	"reflect"

	"gorm.io/gorm/clause"
)

// Version is the type a model's field has to opt in to optimistic locking:
//
//	type Account struct {
//		ID      int64
//		Version optimisticlock.Version
//	}
//
// It is an int64 underneath, so it is stored in an integer column, scans from
// one and marshals to JSON as a number. The field may have any name and any
// column; a *Version field works too, nil meaning "unknown" like zero (copies
// of such a struct share one version, so prefer the plain type). Only the
// type opts in: a plain integer field named Version is left alone, so
// registering the plugin changes nothing for models that do not ask for it. A
// model has one such field; were there several, the first would be the lock.
type Version int64

var (
	versionType    = reflect.TypeOf(Version(0))
	versionPtrType = reflect.TypeOf((*Version)(nil))
)

// Bump returns the expression that moves a version column forward, "column + 1"
// with the column quoted for the dialect, as in
//
//	db.Model(&row).UpdateColumns(map[string]any{"version": optimisticlock.Bump("version")})
//
// The plugin writes every bump with it; statements that bypass the plugin
// (UpdateColumns, Raw) use it too, so all writers agree on what a bump is.
func Bump(column string) clause.Expr {
	return clause.Expr{SQL: "? + 1", Vars: []any{clause.Column{Name: column}}}
}
