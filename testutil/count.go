package testutil

import (
	"sync/atomic"
	"testing"

	"gorm.io/gorm"
)

// CountStatements counts, from now on, the SQL statements db sends through
// GORM (BEGIN and COMMIT are not statements here), for benchmarks that report
// statements per operation.
func CountStatements(tb testing.TB, db *gorm.DB) *atomic.Int64 {
	tb.Helper()
	var n atomic.Int64
	count := func(*gorm.DB) { n.Add(1) }
	cb := db.Callback()
	for _, err := range []error{
		cb.Create().After("gorm:create").Register("testutil:count", count),
		cb.Query().After("gorm:query").Register("testutil:count", count),
		cb.Update().After("gorm:update").Register("testutil:count", count),
		cb.Delete().After("gorm:delete").Register("testutil:count", count),
		cb.Raw().After("gorm:raw").Register("testutil:count", count),
		cb.Row().After("gorm:row").Register("testutil:count", count),
	} {
		if err != nil {
			tb.Fatalf("registering statement counter: %v", err)
		}
	}
	return &n
}
