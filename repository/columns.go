package repository

// The columns each statement returns, named rather than "*": a prepared
// statement's result type then stays the same when a later migration adds a
// column, so PostgreSQL never fails a cached plan ("cached plan must not change
// result type") on nodes that run while another node migrates. They match the
// models' fields.
const (
	returningDefinition = ` RETURNING id, version, name, definition, created_at, updated_at`
	returningExecution  = ` RETURNING execution_id, definition_id, definition_version, status, current_step_id, input, output, ` +
		`error, node_id, version, last_heartbeat, metadata, created_at, updated_at, started_at, completed_at, wait_signal`
	returningStep = ` RETURNING step_execution_id, execution_id, step_id, status, input, output, error, attempt, metadata, ` +
		`started_at, completed_at`
	returningSignal = ` RETURNING seq, signal_id, execution_id, signal_name, payload, received_at`
)
