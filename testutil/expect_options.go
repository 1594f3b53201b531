package testutil

import "github.com/DATA-DOG/go-sqlmock"

// ExpectOption changes what an Expect helper expects.
type ExpectOption func(*expectConfig)

type expectConfig struct {
	inTx bool
	err  error
}

// InTransaction says the operation runs inside a transaction the test
// expects around it (Storage.Transaction, or Workflow.StartTx in the app's
// db.Transaction): the helper expects no BEGIN, COMMIT or ROLLBACK of the
// operation's own, as the repository nests none there.
func InTransaction() ExpectOption { return func(c *expectConfig) { c.inTx = true } }

// WithError makes the operation's first statement fail with err, as a
// database that is down or refuses would; the operation returns an error
// wrapping err, and a transaction of its own rolls back. Nothing after that
// statement is expected.
func WithError(err error) ExpectOption { return func(c *expectConfig) { c.err = err } }

func newExpectConfig(opts []ExpectOption) expectConfig {
	var c expectConfig
	for _, opt := range opts {
		opt(&c)
	}
	return c
}

// ownTransaction reports whether an operation that uses a transaction
// (uses) begins its own: not inside the caller's.
func (c expectConfig) ownTransaction(uses bool) bool { return uses && !c.inTx }

// endFailed expects the end of an operation whose statement failed: the
// rollback of its own transaction.
func (c expectConfig) endFailed(mock sqlmock.Sqlmock, own bool) {
	if own {
		mock.ExpectRollback()
	}
}

// query applies the configured failure to a one-statement operation's query.
func (c expectConfig) query(q *sqlmock.ExpectedQuery) *sqlmock.ExpectedQuery {
	if c.err != nil {
		q.WillReturnError(c.err)
	}
	return q
}

// exec applies the configured failure to a one-statement operation's exec.
func (c expectConfig) exec(e *sqlmock.ExpectedExec) *sqlmock.ExpectedExec {
	if c.err != nil {
		e.WillReturnError(c.err)
	}
	return e
}

// ExpectBegin expects the BEGIN of a transaction the code under test opens
// around repository calls (Storage.Transaction, the app's db.Transaction or
// db.Begin around Workflow.StartTx); expect the calls inside with
// InTransaction.
func ExpectBegin(mock sqlmock.Sqlmock) *sqlmock.ExpectedBegin { return mock.ExpectBegin() }

// ExpectCommit expects the COMMIT that ends such a transaction.
func ExpectCommit(mock sqlmock.Sqlmock) *sqlmock.ExpectedCommit { return mock.ExpectCommit() }

// ExpectRollback expects the ROLLBACK that ends such a transaction when its
// function returns an error.
func ExpectRollback(mock sqlmock.Sqlmock) *sqlmock.ExpectedRollback { return mock.ExpectRollback() }
