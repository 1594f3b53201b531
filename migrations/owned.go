package migrations

// IDOwnedIndex is migration 012: the index by node holds live executions
// only.
const IDOwnedIndex = "012_owned_index"

// Owned index (migration 012).
//
// A node's heartbeat, its graceful release and the node list look up the
// executions the node owns live (PENDING or RUNNING). idx_workflow_executions_node_id
// indexed every execution by the node that last ran it, ended ones
// included: each heartbeat walked past every execution the node had ever run,
// and every ending added an index entry nobody reads. The partial index keeps
// what those lookups read, so its size follows the running work, not the
// history. Listing one node's ended executions (ExecutionFilter.NodeID with
// ended statuses, an operator's query) reads by created_at instead.
var ownedIndexUp = ddl{
	common: []string{
		`CREATE INDEX IF NOT EXISTS idx_workflow_executions_owned ON workflow_executions (node_id) WHERE status IN ('PENDING', 'RUNNING')`,
		`DROP INDEX IF EXISTS idx_workflow_executions_node_id`,
	},
}

var ownedIndexDown = ddl{
	common: []string{
		`CREATE INDEX IF NOT EXISTS idx_workflow_executions_node_id ON workflow_executions (node_id)`,
		`DROP INDEX IF EXISTS idx_workflow_executions_owned`,
	},
}
