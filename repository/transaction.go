package repository

import (
	"fmt"

	"gorm.io/gorm"
)

// InTransaction returns a Storage whose every operation runs in tx, the
// caller's open transaction (from db.Transaction or db.Begin), so that
// workflow rows commit or roll back with the app's own. It runs no
// migrations, opens nothing and nests no transaction (no savepoint): a call
// that fails may have written part of its rows, so roll tx back then. Use it
// only while tx is open. It cannot Listen, and on SQLite what it writes is
// announced to no listener (the repository cannot see tx commit): engines
// find it at their next poll. On PostgreSQL the database announces it at
// commit, as any write.
func InTransaction(tx *gorm.DB) (*Storage, error) {
	if tx == nil {
		return nil, fmt.Errorf("nil transaction: %w", ErrInvalidArgument)
	}
	if _, open := tx.Statement.ConnPool.(gorm.TxCommitter); !open {
		return nil, fmt.Errorf("not a transaction (want the tx of db.Transaction or db.Begin): %w", ErrInvalidArgument)
	}
	session, d, err := storageSession(tx)
	if err != nil {
		return nil, err
	}
	return &Storage{db: session, dialect: d}, nil
}
