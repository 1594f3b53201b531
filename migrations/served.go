package migrations

// IDServedDefinitions is migration 013: the definitions each node runs.
const IDServedDefinitions = "013_served_definitions"

// Served definitions (migration 013).
//
// A sweep claims its fair share of the backlog: the work it could take,
// divided by the live nodes. A node that runs other definitions cannot take
// that work, yet it was counted: beside it, a node with free slots claimed
// only part of what waited, and the rest waited for a later sweep. A node
// records here the definitions it runs (none: it runs every one), and the
// count takes only the nodes that could take the work. Rows of nodes gone
// are deleted with the nodes (PruneNodes).
var servedDefinitionsUp = ddl{
	postgres: []string{
		`CREATE TABLE workflow_node_definitions (
			node_id            TEXT COLLATE "C" NOT NULL,
			definition_id      TEXT NOT NULL,
			definition_version TEXT NOT NULL,
			PRIMARY KEY (node_id, definition_id, definition_version)
		)`,
	},
	sqlite: []string{
		`CREATE TABLE workflow_node_definitions (
			node_id            TEXT NOT NULL,
			definition_id      TEXT NOT NULL,
			definition_version TEXT NOT NULL,
			PRIMARY KEY (node_id, definition_id, definition_version)
		)`,
	},
}
