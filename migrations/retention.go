package migrations

// IDRetention is migration 010: what purging old executions needs. (009 is
// left to a concurrent change; migrations run in the order All lists them,
// and gormigrate applies any that a database lacks.)
const IDRetention = "010_retention"

// Retention (migration 010).
//
// idx_workflow_executions_ended serves the purge: "status IN (terminal) AND
// completed_at < cutoff ORDER BY completed_at, execution_id LIMIT n" is one
// ordered index range, however many executions are live or recent. Only
// ended executions have completed_at, so the partial index holds nothing
// else; both planners use it for a range on completed_at, which implies
// "completed_at IS NOT NULL".
//
// workflow_leases holds named, expiring leases, so that one node at a time
// does a periodic chore (engine.Config.Retention's purge): a node holds a
// lease until expires_at, by the database's clock on PostgreSQL, renews it
// while it lives, and any node takes it once it has expired.
var retentionUp = ddl{
	postgres: []string{
		`CREATE TABLE workflow_leases (
			name       TEXT PRIMARY KEY,
			holder     TEXT NOT NULL,
			expires_at TIMESTAMPTZ NOT NULL
		)`,
	},
	sqlite: []string{
		`CREATE TABLE workflow_leases (
			name       TEXT PRIMARY KEY,
			holder     TEXT NOT NULL,
			expires_at DATETIME NOT NULL
		)`,
	},
	common: []string{
		`CREATE INDEX idx_workflow_executions_ended ON workflow_executions (completed_at, execution_id)
			WHERE completed_at IS NOT NULL`,
	},
}

var retentionDown = ddl{
	common: []string{
		`DROP INDEX IF EXISTS idx_workflow_executions_ended`,
		`DROP TABLE IF EXISTS workflow_leases`,
	},
}
