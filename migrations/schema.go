package migrations

// The DDL of each migration, frozen as SQL per dialect so that later changes to
// the models can never change what an old migration did.
//
// PostgreSQL gets JSONB and TIMESTAMPTZ. Identifier-like text that is ordered or
// range-scanned (execution ids for keyset paging, definition names for prefix
// search) is COLLATE "C", so PostgreSQL orders it byte-wise exactly as SQLite's
// BINARY collation does and the btree serves range scans.
//
// SQLite stores JSON as TEXT (a column declared JSON would get NUMERIC affinity
// and turn the document 123 into an integer) and times as DATETIME text in UTC,
// which sorts chronologically as text.

const (
	liveStatusesSQL = `('PENDING', 'RUNNING')`
	execStatusCheck = `CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT'))`
	stepStatusCheck = `CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'RETRYING', 'CANCELLED'))`
)

var definitionsUp = ddl{
	postgres: []string{
		`CREATE TABLE workflow_definitions (
			id         TEXT NOT NULL,
			version    TEXT NOT NULL,
			name       TEXT COLLATE "C" NOT NULL,
			definition JSONB,
			created_at TIMESTAMPTZ NOT NULL,
			updated_at TIMESTAMPTZ NOT NULL,
			PRIMARY KEY (id, version)
		)`,
		`CREATE INDEX idx_workflow_definitions_name ON workflow_definitions (name)`,
		`CREATE INDEX idx_workflow_definitions_created_at ON workflow_definitions (created_at)`,
	},
	sqlite: []string{
		`CREATE TABLE workflow_definitions (
			id         TEXT NOT NULL,
			version    TEXT NOT NULL,
			name       TEXT NOT NULL,
			definition TEXT,
			created_at DATETIME NOT NULL,
			updated_at DATETIME NOT NULL,
			PRIMARY KEY (id, version)
		)`,
		`CREATE INDEX idx_workflow_definitions_name ON workflow_definitions (name)`,
		`CREATE INDEX idx_workflow_definitions_created_at ON workflow_definitions (created_at)`,
	},
}

// Stale detection. last_heartbeat is NOT NULL (creation sets it), so the
// reference's COALESCE(last_heartbeat, updated_at), which no index can serve, is
// not needed. live_heartbeat is a generated copy of last_heartbeat that is NULL
// once the execution is terminal, and idx_workflow_executions_stale is the
// partial index over its non-NULL rows. Why not the reference's partial index on
// (status, last_heartbeat): terminal executions are exactly the ones with old
// heartbeats, a correlation PostgreSQL's statistics cannot see, so it expects
// thousands of stale rows among 100,000 and scans every live one. The generated
// column carries that fact in its own statistics (its NULL fraction), and the
// planner picks the index; the stale query "live_heartbeat < cutoff ORDER BY
// live_heartbeat, execution_id" is then one ordered index range on both
// databases.
const liveHeartbeat = `CASE WHEN status IN ` + liveStatusesSQL + ` THEN last_heartbeat END`

var executionsUp = ddl{
	postgres: []string{
		`CREATE TABLE workflow_executions (
			execution_id       TEXT COLLATE "C" PRIMARY KEY,
			definition_id      TEXT NOT NULL,
			definition_version TEXT NOT NULL,
			status             TEXT NOT NULL ` + execStatusCheck + `,
			current_step_id    TEXT,
			input              JSONB,
			output             JSONB,
			error              TEXT,
			node_id            TEXT,
			version            BIGINT NOT NULL DEFAULT 1,
			last_heartbeat     TIMESTAMPTZ NOT NULL,
			metadata           JSONB,
			created_at         TIMESTAMPTZ NOT NULL,
			started_at         TIMESTAMPTZ,
			completed_at       TIMESTAMPTZ,
			updated_at         TIMESTAMPTZ NOT NULL,
			live_heartbeat     TIMESTAMPTZ GENERATED ALWAYS AS (` + liveHeartbeat + `) STORED,
			FOREIGN KEY (definition_id, definition_version)
				REFERENCES workflow_definitions (id, version)
		)`,
	},
	sqlite: []string{
		`CREATE TABLE workflow_executions (
			execution_id       TEXT PRIMARY KEY,
			definition_id      TEXT NOT NULL,
			definition_version TEXT NOT NULL,
			status             TEXT NOT NULL ` + execStatusCheck + `,
			current_step_id    TEXT,
			input              TEXT,
			output             TEXT,
			error              TEXT,
			node_id            TEXT,
			version            INTEGER NOT NULL DEFAULT 1,
			last_heartbeat     DATETIME NOT NULL,
			metadata           TEXT,
			created_at         DATETIME NOT NULL,
			started_at         DATETIME,
			completed_at       DATETIME,
			updated_at         DATETIME NOT NULL,
			live_heartbeat     DATETIME GENERATED ALWAYS AS (` + liveHeartbeat + `) VIRTUAL,
			FOREIGN KEY (definition_id, definition_version)
				REFERENCES workflow_definitions (id, version)
		)`,
	},
	common: []string{
		`CREATE INDEX idx_workflow_executions_status ON workflow_executions (status)`,
		`CREATE INDEX idx_workflow_executions_definition ON workflow_executions (definition_id, definition_version)`,
		`CREATE INDEX idx_workflow_executions_node_id ON workflow_executions (node_id)`,
		`CREATE INDEX idx_workflow_executions_created_at ON workflow_executions (created_at)`,
		`CREATE INDEX idx_workflow_executions_stale ON workflow_executions (live_heartbeat, execution_id)
			WHERE live_heartbeat IS NOT NULL`,
	},
}

var labelsUp = ddl{
	common: []string{
		`CREATE TABLE workflow_execution_labels (
			execution_id TEXT NOT NULL REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
			label_key    TEXT NOT NULL,
			label_value  TEXT NOT NULL,
			PRIMARY KEY (execution_id, label_key)
		)`,
		`CREATE INDEX idx_workflow_execution_labels_key_value ON workflow_execution_labels (label_key, label_value)`,
	},
}

var stepsUp = ddl{
	postgres: []string{
		`CREATE TABLE step_executions (
			step_execution_id TEXT PRIMARY KEY,
			execution_id      TEXT NOT NULL REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
			step_id           TEXT NOT NULL,
			status            TEXT NOT NULL ` + stepStatusCheck + `,
			input             JSONB,
			output            JSONB,
			error             TEXT,
			attempt           INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
			metadata          JSONB,
			started_at        TIMESTAMPTZ,
			completed_at      TIMESTAMPTZ,
			UNIQUE (execution_id, step_id, attempt)
		)`,
	},
	sqlite: []string{
		`CREATE TABLE step_executions (
			step_execution_id TEXT PRIMARY KEY,
			execution_id      TEXT NOT NULL REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
			step_id           TEXT NOT NULL,
			status            TEXT NOT NULL ` + stepStatusCheck + `,
			input             TEXT,
			output            TEXT,
			error             TEXT,
			attempt           INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
			metadata          TEXT,
			started_at        DATETIME,
			completed_at      DATETIME,
			UNIQUE (execution_id, step_id, attempt)
		)`,
	},
	common: []string{
		`CREATE INDEX idx_step_executions_execution_id ON step_executions (execution_id, started_at)`,
		`CREATE INDEX idx_step_executions_status ON step_executions (status)`,
		`CREATE INDEX idx_step_executions_started_at ON step_executions (started_at)`,
	},
}

// seq orders signals first in, first out; the reference's received_at alone
// cannot order two signals within one clock tick.
var signalsUp = ddl{
	postgres: []string{
		`CREATE TABLE signals (
			seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			signal_id    TEXT NOT NULL UNIQUE,
			execution_id TEXT NOT NULL REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
			signal_name  TEXT NOT NULL,
			payload      JSONB,
			received_at  TIMESTAMPTZ NOT NULL
		)`,
	},
	sqlite: []string{
		`CREATE TABLE signals (
			seq          INTEGER PRIMARY KEY AUTOINCREMENT,
			signal_id    TEXT NOT NULL UNIQUE,
			execution_id TEXT NOT NULL REFERENCES workflow_executions (execution_id) ON DELETE CASCADE,
			signal_name  TEXT NOT NULL,
			payload      TEXT,
			received_at  DATETIME NOT NULL
		)`,
	},
	common: []string{
		`CREATE INDEX idx_signals_execution_name ON signals (execution_id, signal_name, seq)`,
	},
}

// Parked waits. A workflow that waits (Sleep, AwaitSignal, a long retry
// backoff) gives its node back: the execution stays RUNNING, unowned, and its
// last_heartbeat is when it becomes due, so the claim query's range
// "live_heartbeat <= now" on idx_workflow_executions_stale finds what is due
// and never reads the executions still waiting. wait_signal names the signal
// it waits for: a stored signal of that name makes it due at once (the claim
// query joins the pending signals to the executions waiting for them).
var parkedWaitsUp = ddl{
	common: []string{
		`ALTER TABLE workflow_executions ADD COLUMN wait_signal TEXT`,
	},
}

var parkedWaitsDown = ddl{
	common: []string{
		`ALTER TABLE workflow_executions DROP COLUMN wait_signal`,
	},
}
