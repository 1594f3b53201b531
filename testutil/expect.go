package testutil

import (
	"database/sql/driver"
	"strconv"
	"strings"
	"time"

	"github.com/DATA-DOG/go-sqlmock"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// The Expect helpers tell a sqlmock (from NewMockStorage) which statements a
// repository operation runs on PostgreSQL, with their arguments, so that tests
// of code built on the repository need not spell out its SQL. The SQL they
// expect is part of the repository's contract: it changes only with a note in
// the changelog, and this package's tests run every helper against the
// repository. Times are matched with sqlmock.AnyArg, generated ids too.
//
// Every helper takes WithError, which makes the operation fail as a database
// error would (ExpectListStaleExecutions, whose rows are variadic, returns its
// expectation for WillReturnError instead), and those of operations that open
// a transaction take
// InTransaction, for calls inside a transaction the test expects with
// ExpectBegin and ExpectCommit or ExpectRollback.

var executionColumns = []string{
	"execution_id", "definition_id", "definition_version", "status", "current_step_id", "input", "output",
	"error", "node_id", "version", "last_heartbeat", "metadata", "created_at", "updated_at", "started_at", "completed_at",
	"wait_signal",
}

var signalColumns = []string{"seq", "signal_id", "execution_id", "signal_name", "payload", "received_at"}

func selectColumns(table string, columns []string) string {
	quoted := make([]string, len(columns))
	for i, c := range columns {
		quoted[i] = `"` + table + `"."` + c + `"`
	}
	return "SELECT " + strings.Join(quoted, ",") + ` FROM "` + table + `"`
}

func jsonValue(j models.JSON) driver.Value {
	if len(j) == 0 {
		return nil
	}
	return string(j)
}

func stringValue(s *string) driver.Value {
	if s == nil {
		return nil
	}
	return *s
}

func timeValue(t *time.Time) driver.Value {
	if t == nil {
		return nil
	}
	return *t
}

// ExecutionRows returns sqlmock rows holding execs, in the column order the
// repository reads and returns.
func ExecutionRows(execs ...models.WorkflowExecution) *sqlmock.Rows {
	rows := sqlmock.NewRows(executionColumns)
	for _, e := range execs {
		rows.AddRow(e.ExecutionID, e.DefinitionID, e.DefinitionVersion, string(e.Status), stringValue(e.CurrentStepID),
			jsonValue(e.Input), jsonValue(e.Output), stringValue(e.Error), stringValue(e.NodeID), e.Version,
			timeValue(e.LastHeartbeat), jsonValue(e.Metadata), e.CreatedAt, e.UpdatedAt, timeValue(e.StartedAt), timeValue(e.CompletedAt),
			stringValue(e.WaitSignal))
	}
	return rows
}

func labelRows(executionID string, labels map[string]string) *sqlmock.Rows {
	rows := sqlmock.NewRows([]string{"execution_id", "label_key", "label_value"})
	for k, v := range labels {
		rows.AddRow(executionID, k, v)
	}
	return rows
}

func anyArgs(n int) []driver.Value {
	args := make([]driver.Value, n)
	for i := range args {
		args[i] = sqlmock.AnyArg()
	}
	return args
}

// postgresSQL rewrites the ? of a repository statement as PostgreSQL sees
// it: each "$" in fills becomes the next $n, anything else (the dialect's
// now()) is written as it is.
func postgresSQL(sql string, fills ...string) string {
	var b strings.Builder
	n := 0
	for i, part := range strings.Split(sql, "?") {
		if i > 0 {
			fill := fills[i-1]
			if fill == "$" {
				n++
				fill = "$" + strconv.Itoa(n)
			}
			b.WriteString(fill)
		}
		b.WriteString(part)
	}
	return b.String()
}

// expectInsertExecution expects the statements of CreateExecution(in) up to
// the guarded insert, which it returns; nil when cfg makes an earlier
// statement fail.
func expectInsertExecution(mock sqlmock.Sqlmock, in repository.NewExecution, cfg expectConfig) *sqlmock.ExpectedQuery {
	id := driver.Value(sqlmock.AnyArg())
	if in.ExecutionID != "" {
		id = in.ExecutionID
	}
	node := driver.Value(nil)
	if in.NodeID != "" {
		node = in.NodeID
	}
	defID, defVersion := in.DefinitionID, in.DefinitionVersion
	if in.Definition != nil && defID == "" && defVersion == "" {
		defID, defVersion = in.Definition.ID, in.Definition.Version
	}
	if in.Definition != nil {
		def := mock.ExpectExec(postgresSQL(repository.InsertDefinitionIfMissingSQL, "$", "$", "$", "$", "now()", "now()")).
			WithArgs(defID, defVersion, in.Definition.Name, sqlmock.AnyArg())
		if cfg.err != nil {
			def.WillReturnError(cfg.err)
			return nil
		}
		def.WillReturnResult(sqlmock.NewResult(0, 1))
	}
	insert := postgresSQL(repository.InsertExecutionSQL, "$", "$", "$", "$", "$", "$", "$", "now()", "now()", "now()", "$", "now()", "$", "$")
	status := models.ExecutionPending
	if in.Running {
		status = models.ExecutionRunning
	}
	q := mock.ExpectQuery(insert).
		WithArgs(id, defID, defVersion, string(status), sqlmock.AnyArg(), node, sqlmock.AnyArg(), in.Running, defID, defVersion)
	if cfg.err != nil {
		q.WillReturnError(cfg.err)
		return nil
	}
	return q
}

// expectCreateStart expects CreateExecution(in) up to its guarded insert,
// which it returns with whether the call opened a transaction of its own; a
// nil insert when cfg made an earlier statement fail (its rollback is
// expected then).
func expectCreateStart(mock sqlmock.Sqlmock, in repository.NewExecution, cfg expectConfig) (*sqlmock.ExpectedQuery, bool) {
	own := cfg.ownTransaction(len(in.Labels) > 0 || in.Definition != nil)
	if own {
		mock.ExpectBegin()
	}
	insert := expectInsertExecution(mock, in, cfg)
	if insert == nil {
		cfg.endFailed(mock, own)
	}
	return insert, own
}

// ExpectCreateExecution expects CreateExecution(in) and answers with stored,
// the row as the database returns it. With labels or in.Definition it
// expects the transaction, the definition's insert-if-missing and the labels
// insert too. Workflow.StartTx is CreateExecution with in.Definition set, in
// the caller's transaction: expect it with InTransaction (and ExpectBegin and
// ExpectCommit around it); in.ExecutionID may stay empty for a generated id.
func ExpectCreateExecution(mock sqlmock.Sqlmock, in repository.NewExecution, stored models.WorkflowExecution, opts ...ExpectOption) {
	insert, own := expectCreateStart(mock, in, newExpectConfig(opts))
	if insert == nil {
		return
	}
	insert.WillReturnRows(ExecutionRows(stored))
	if len(in.Labels) > 0 {
		placeholders := make([]string, 0, len(in.Labels))
		for i := range len(in.Labels) {
			n := 3 * i
			placeholders = append(placeholders, "($"+strconv.Itoa(n+1)+",$"+strconv.Itoa(n+2)+",$"+strconv.Itoa(n+3)+")")
		}
		mock.ExpectExec(`INSERT INTO "workflow_execution_labels" ("execution_id","label_key","label_value") VALUES ` +
			strings.Join(placeholders, ",")).WithArgs(anyArgs(3 * len(in.Labels))...).
			WillReturnResult(sqlmock.NewResult(0, int64(len(in.Labels))))
	}
	if own {
		mock.ExpectCommit()
	}
}

// ExpectCreateExecutionRefused expects CreateExecution(in) of an execution
// that is not created: the insert returns no row and the read after it finds
// the id (exists: the call returns repository.ErrAlreadyExists) or not (the
// definition is missing: repository.ErrNotFound). in.ExecutionID must be set.
// An idempotent Start or StartTx of an existing id is this, followed by
// ExpectGetExecution of the existing execution.
func ExpectCreateExecutionRefused(mock sqlmock.Sqlmock, in repository.NewExecution, exists bool, opts ...ExpectOption) {
	insert, own := expectCreateStart(mock, in, newExpectConfig(opts))
	if insert == nil {
		return
	}
	insert.WillReturnRows(ExecutionRows())
	n := 0
	if exists {
		n = 1
	}
	mock.ExpectQuery(postgresSQL(repository.ExecutionExistsSQL, "$")).
		WithArgs(in.ExecutionID).WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(n))
	if own {
		mock.ExpectRollback()
	}
}

// ExpectSaveDefinition expects SaveDefinition(def) and answers with def as
// stored (the timestamps the test set in it).
func ExpectSaveDefinition(mock sqlmock.Sqlmock, def models.WorkflowDefinition, opts ...ExpectOption) *sqlmock.ExpectedQuery {
	q := mock.ExpectQuery(postgresSQL(repository.UpsertDefinitionSQL, "$", "$", "$", "$", "now()", "now()")).
		WithArgs(def.ID, def.Version, def.Name, jsonValue(def.Spec)).
		WillReturnRows(sqlmock.NewRows([]string{"id", "version", "name", "definition", "created_at", "updated_at"}).
			AddRow(def.ID, def.Version, def.Name, jsonValue(def.Spec), def.CreatedAt, def.UpdatedAt))
	return newExpectConfig(opts).query(q)
}

// ExpectGetExecution expects GetExecution(exec.ExecutionID) and answers with
// exec and its Labels.
func ExpectGetExecution(mock sqlmock.Sqlmock, exec models.WorkflowExecution, opts ...ExpectOption) {
	cfg := newExpectConfig(opts)
	q := mock.ExpectQuery(selectColumns("workflow_executions", executionColumns)+` WHERE execution_id = $1 LIMIT $2`).
		WithArgs(exec.ExecutionID, 1).WillReturnRows(ExecutionRows(exec))
	if cfg.err != nil {
		cfg.query(q)
		return
	}
	mock.ExpectQuery(`SELECT "workflow_execution_labels"."execution_id","workflow_execution_labels"."label_key","workflow_execution_labels"."label_value" FROM "workflow_execution_labels" WHERE execution_id IN ($1)`).
		WithArgs(exec.ExecutionID).WillReturnRows(labelRows(exec.ExecutionID, exec.Labels))
}

// ExpectExecutionNotFound expects GetExecution(executionID) of an id that does
// not exist; the call returns repository.ErrNotFound.
func ExpectExecutionNotFound(mock sqlmock.Sqlmock, executionID string, opts ...ExpectOption) *sqlmock.ExpectedQuery {
	return newExpectConfig(opts).query(mock.ExpectQuery(selectColumns("workflow_executions", executionColumns)+` WHERE execution_id = $1 LIMIT $2`).
		WithArgs(executionID, 1).WillReturnRows(ExecutionRows()))
}

// versionedUpdate expects the UPDATE of a version-checked (or, with a nil
// version, version-bumping) execution write; set lists the SET clause before
// the version bump, with $n for each bound value in args.
func versionedUpdate(mock sqlmock.Sqlmock, set string, args []driver.Value, executionID string, expectedVersion *int64) *sqlmock.ExpectedExec {
	n := len(args)
	query := `UPDATE "workflow_executions" SET ` + set + `,"version"="version" + 1 WHERE "execution_id" = $` + strconv.Itoa(n+1)
	args = append(args, executionID)
	if expectedVersion != nil {
		query += ` AND "workflow_executions"."version" = $` + strconv.Itoa(n+2)
		args = append(args, *expectedVersion)
	}
	return mock.ExpectExec(query).WithArgs(args...).WillReturnResult(sqlmock.NewResult(0, 1))
}

// ExpectUpdateExecutionStatus expects UpdateExecutionStatus or
// UpdateExecutionStatusWithVersion. It answers "1 row updated"; answer with
// sqlmock.NewResult(0, 0) and ExpectVersionMiss to simulate a conflict.
func ExpectUpdateExecutionStatus(mock sqlmock.Sqlmock, executionID string, status models.ExecutionStatus, expectedVersion *int64, opts ...ExpectOption) *sqlmock.ExpectedExec {
	set := `"status"=$1,"updated_at"=now()`
	switch {
	case status == models.ExecutionRunning:
		set = `"last_heartbeat"=now(),"started_at"=COALESCE(started_at, now()),` + set
	case status.Terminal():
		set = `"completed_at"=now(),` + set
	}
	return newExpectConfig(opts).exec(versionedUpdate(mock, set, []driver.Value{string(status)}, executionID, expectedVersion))
}

// ExpectUpdateExecutionOutput expects UpdateExecutionOutput; output is the
// stored JSON text.
func ExpectUpdateExecutionOutput(mock sqlmock.Sqlmock, executionID, output string, expectedVersion *int64, opts ...ExpectOption) *sqlmock.ExpectedExec {
	return newExpectConfig(opts).exec(versionedUpdate(mock, `"output"=$1,"updated_at"=now()`, []driver.Value{output}, executionID, expectedVersion))
}

// ExpectTransferOwnership expects TransferOwnership.
func ExpectTransferOwnership(mock sqlmock.Sqlmock, executionID, newOwner string, expectedVersion int64, opts ...ExpectOption) *sqlmock.ExpectedExec {
	return newExpectConfig(opts).exec(versionedUpdate(mock, `"last_heartbeat"=now(),"node_id"=$1,"updated_at"=now()`, []driver.Value{newOwner}, executionID, &expectedVersion))
}

// ExpectVersionMiss follows an update answered with 0 rows: the check that
// tells a conflict (exists, repository.ErrConcurrentUpdate) from a missing
// execution (repository.ErrNotFound).
func ExpectVersionMiss(mock sqlmock.Sqlmock, executionID string, exists bool, opts ...ExpectOption) *sqlmock.ExpectedQuery {
	n := 0
	if exists {
		n = 1
	}
	return newExpectConfig(opts).query(mock.ExpectQuery(`SELECT count(*) FROM "workflow_executions" WHERE "execution_id" = $1`).
		WithArgs(executionID).WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(n)))
}

// ExpectUpdateHeartbeat expects UpdateHeartbeat. Answer with 0 rows and
// ExpectHeartbeatMiss to simulate a node that lost ownership.
func ExpectUpdateHeartbeat(mock sqlmock.Sqlmock, executionID, nodeID string, opts ...ExpectOption) *sqlmock.ExpectedExec {
	return newExpectConfig(opts).exec(mock.ExpectExec(`UPDATE "workflow_executions" SET "last_heartbeat"=now() WHERE execution_id = $1 AND node_id = $2`).
		WithArgs(executionID, nodeID).WillReturnResult(sqlmock.NewResult(0, 1)))
}

// ExpectHeartbeatMiss follows a heartbeat answered with 0 rows: exists makes
// it repository.ErrConcurrentUpdate (another owner), otherwise ErrNotFound.
func ExpectHeartbeatMiss(mock sqlmock.Sqlmock, executionID string, exists bool, opts ...ExpectOption) *sqlmock.ExpectedQuery {
	n := 0
	if exists {
		n = 1
	}
	return newExpectConfig(opts).query(mock.ExpectQuery(`SELECT count(*) FROM "workflow_executions" WHERE execution_id = $1`).
		WithArgs(executionID).WillReturnRows(sqlmock.NewRows([]string{"count"}).AddRow(n)))
}

// ExpectListStaleExecutions expects ListStaleExecutions(threshold, nil) and
// answers with stale. To make it fail, call WillReturnError on the
// expectation it returns.
func ExpectListStaleExecutions(mock sqlmock.Sqlmock, threshold time.Duration, stale ...models.WorkflowExecution) *sqlmock.ExpectedQuery {
	return mock.ExpectQuery(selectColumns("workflow_executions", executionColumns)+
		` WHERE status IN ($1,$2) AND live_heartbeat < now() - $3::bigint * INTERVAL '1 microsecond' ORDER BY live_heartbeat, execution_id`).
		WithArgs(string(models.ExecutionPending), string(models.ExecutionRunning), threshold.Microseconds()).
		WillReturnRows(ExecutionRows(stale...))
}

// ExpectSendSignal expects SendSignal; payload is the stored JSON text, or nil.
// It answers "1 row inserted"; see ExpectSignalRefused for the other answers.
func ExpectSendSignal(mock sqlmock.Sqlmock, executionID, name string, payload driver.Value, opts ...ExpectOption) *sqlmock.ExpectedExec {
	return newExpectConfig(opts).exec(mock.ExpectExec(postgresSQL(repository.SendSignalSQL(Postgres), "$", "$", "$", "now()", "$")).
		WithArgs(sqlmock.AnyArg(), name, payload, executionID).WillReturnResult(sqlmock.NewResult(0, 1)))
}

// ExpectSignalRefused expects SendSignal to an execution that takes no
// signal: the insert matches no live execution, and the read after it finds
// the execution in status, a terminal one (the call returns
// repository.ErrExecutionEnded), or finds none when status is "" (the call
// returns repository.ErrNotFound).
func ExpectSignalRefused(mock sqlmock.Sqlmock, executionID, name string, payload driver.Value, status models.ExecutionStatus, opts ...ExpectOption) {
	cfg := newExpectConfig(opts)
	send := ExpectSendSignal(mock, executionID, name, payload)
	if cfg.err != nil {
		cfg.exec(send)
		return
	}
	send.WillReturnResult(sqlmock.NewResult(0, 0))
	rows := sqlmock.NewRows([]string{"status"})
	if status != "" {
		rows.AddRow(string(status))
	}
	mock.ExpectQuery(postgresSQL(repository.ExecutionStatusSQL, "$")).WithArgs(executionID).WillReturnRows(rows)
}

// ExpectConsumeSignal expects ConsumeSignal and answers with sig, or with no
// signal when sig is nil.
func ExpectConsumeSignal(mock sqlmock.Sqlmock, executionID, name string, sig *models.Signal, opts ...ExpectOption) *sqlmock.ExpectedQuery {
	rows := sqlmock.NewRows(signalColumns)
	if sig != nil {
		rows.AddRow(sig.Seq, sig.SignalID, sig.ExecutionID, sig.Name, jsonValue(sig.Payload), sig.ReceivedAt)
	}
	query := strings.Replace(strings.Replace(repository.ConsumeSignalSQL(Postgres), "?", "$1", 1), "?", "$2", 1)
	return newExpectConfig(opts).query(mock.ExpectQuery(query).WithArgs(executionID, name).WillReturnRows(rows))
}
