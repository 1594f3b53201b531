package testutil

import (
	"sync"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"
)

// StatementStall blocks one SQL statement in flight, between the engine or
// storage that sends it and the database: inside a transaction, a shared
// group commit or a race, where a wrapper around the storage cannot reach.
type StatementStall struct {
	armed   atomic.Bool
	hit     sync.Once
	stalled chan struct{}
	gate    chan struct{}
	release sync.Once
}

// StallStatement registers GORM callbacks on db (raw statements and row
// queries, named after name) that, once Arm is called, block the first
// statement with arg among its arguments until Release; Stalled is closed
// when it blocks. Register before db is used concurrently; the test's
// cleanup releases it. Statements that bypass GORM's callbacks (the grouped
// PostgreSQL statements) are not seen.
func StallStatement(t testing.TB, db *gorm.DB, name, arg string) *StatementStall {
	t.Helper()
	s := &StatementStall{stalled: make(chan struct{}), gate: make(chan struct{})}
	t.Cleanup(s.Release)
	fn := func(tx *gorm.DB) {
		if !s.armed.Load() {
			return
		}
		for _, v := range tx.Statement.Vars {
			if str, ok := v.(string); ok && str == arg {
				first := false
				s.hit.Do(func() { first = true })
				if first {
					close(s.stalled)
					<-s.gate
				}
				return
			}
		}
	}
	for _, err := range []error{
		db.Callback().Raw().Before("gorm:raw").Register("testutil:stall:"+name+"-raw", fn),
		db.Callback().Row().Before("gorm:row").Register("testutil:stall:"+name+"-row", fn),
	} {
		if err != nil {
			t.Fatalf("registering the stall %s: %v", name, err)
		}
	}
	return s
}

// Arm makes the stall block the next matching statement.
func (s *StatementStall) Arm() { s.armed.Store(true) }

// Stalled is closed once a statement blocks.
func (s *StatementStall) Stalled() <-chan struct{} { return s.stalled }

// Release lets the blocked statement, and any later one, go on.
func (s *StatementStall) Release() { s.release.Do(func() { close(s.gate) }) }
