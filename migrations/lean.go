package migrations

// IDLeanJournal is migration 011: the journal written on the hot path keeps
// only the indexes something reads.
const IDLeanJournal = "011_lean_journal"

// Lean journal (migration 011).
//
// Every step writes a step_executions row and then its outcome, so each
// index on the table costs an entry per step, and one on a column the outcome
// changes (status) costs a second entry per step and, on PostgreSQL, makes
// the outcome's update a non-HOT one that touches every index again. Nothing
// reads by step status or start time, and the journal of one execution is
// read by execution_id, which the UNIQUE (execution_id, step_id, attempt)
// index serves (its rows are sorted after the read; an execution has few).
// So the three secondary indexes go: WAL per workflow and index contention
// between concurrent workflows fall with them.
//
// On PostgreSQL both tables get room on every page (fillfactor) for the
// updates that follow an insert within milliseconds (step start and outcome,
// execution start and end), so that those that change no indexed column
// stay heap-only (HOT) instead of adding entries to every index.
var leanJournalUp = ddl{
	postgres: []string{
		`ALTER TABLE workflow_executions SET (fillfactor = 70)`,
		`ALTER TABLE step_executions SET (fillfactor = 85)`,
	},
	common: []string{
		`DROP INDEX IF EXISTS idx_step_executions_status`,
		`DROP INDEX IF EXISTS idx_step_executions_started_at`,
		`DROP INDEX IF EXISTS idx_step_executions_execution_id`,
	},
}

var leanJournalDown = ddl{
	postgres: []string{
		`ALTER TABLE workflow_executions RESET (fillfactor)`,
		`ALTER TABLE step_executions RESET (fillfactor)`,
	},
	common: []string{
		`CREATE INDEX IF NOT EXISTS idx_step_executions_execution_id ON step_executions (execution_id, started_at)`,
		`CREATE INDEX IF NOT EXISTS idx_step_executions_status ON step_executions (status)`,
		`CREATE INDEX IF NOT EXISTS idx_step_executions_started_at ON step_executions (started_at)`,
	},
}
