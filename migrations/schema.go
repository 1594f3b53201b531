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

// Rolling back makes every execution parked for a signal due now (at its
// updated_at, when it parked): without wait_signal nothing would ever wake
// one parked for a signal only (due in 9999), not even after 006 is applied
// again. Engines before 006 claim any unowned execution; engines after it
// replay the wait, which parks again.
var parkedWaitsDown = ddl{
	common: []string{
		`UPDATE workflow_executions SET last_heartbeat = updated_at ` +
			`WHERE wait_signal IS NOT NULL AND node_id IS NULL AND status IN ` + liveStatusesSQL,
		`ALTER TABLE workflow_executions DROP COLUMN wait_signal`,
	},
}

// Nodes. Each engine upserts its row at every heartbeat, so that a sweep can
// count the live nodes, idle ones included, and claim only its fair share of
// the backlog.
var nodesUp = ddl{
	postgres: []string{
		`CREATE TABLE workflow_nodes (
			node_id    TEXT COLLATE "C" PRIMARY KEY,
			started_at TIMESTAMPTZ NOT NULL,
			last_seen  TIMESTAMPTZ NOT NULL
		)`,
	},
	sqlite: []string{
		`CREATE TABLE workflow_nodes (
			node_id    TEXT PRIMARY KEY,
			started_at DATETIME NOT NULL,
			last_seen  DATETIME NOT NULL
		)`,
	},
	common: []string{
		`CREATE INDEX idx_workflow_nodes_last_seen ON workflow_nodes (last_seen)`,
	},
}

// Pushed wake-ups (PostgreSQL only; migration 008). Triggers NOTIFY, in the transaction of
// the change, so the notification is delivered at commit and never for a
// rolled-back change, on one channel per schema, workflow_events_channel(the
// schema): "workflow_events.<schema>", or the schema's md5 when the name is
// long, since a channel name must fit in 63 bytes. The payload is
// "kind:execution_id":
//   - claimable: an execution became unowned, live and due (created without
//     an owner, released, parked until now or for a signal already stored);
//   - signal: a signal was stored for the execution;
//   - ended: the execution became terminal (COMPLETED, FAILED, CANCELLED,
//     TIMED_OUT); a Cancel is one.
//
// Listeners are a shortcut, never the guarantee: a notification nobody heard
// loses nothing, since sweeps and Await still poll. The triggers fire only
// when node_id or status is written (never for a heartbeat or a step
// checkpoint), and their WHEN conditions keep a claim, a park until later or
// a status change between live states from calling PL/pgSQL at all. The
// functions resolve names with the search_path they were created with, so
// an app's session with another search_path notifies the same channel.
// SQLite has no NOTIFY: engines in one process tell each other in memory.
const (
	terminalStatusesSQL = `('COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT')`
	notifyClaimableWhen = `NEW.node_id IS NULL AND NEW.status IN ` + liveStatusesSQL
)

var wakeUpsUp = ddl{
	postgres: []string{
		`CREATE FUNCTION workflow_events_channel(schema_name TEXT) RETURNS TEXT
			LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
			SELECT 'workflow_events.' || CASE WHEN octet_length(schema_name) <= 40 THEN schema_name ELSE md5(schema_name) END
		$$`,
		`CREATE FUNCTION workflow_notify_execution() RETURNS trigger
			LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
		BEGIN
			IF NEW.status IN ` + terminalStatusesSQL + ` THEN
				PERFORM pg_notify(workflow_events_channel(TG_TABLE_SCHEMA), 'ended:' || NEW.execution_id);
			ELSIF NEW.last_heartbeat <= clock_timestamp() OR (NEW.wait_signal IS NOT NULL AND EXISTS (
					SELECT 1 FROM signals WHERE execution_id = NEW.execution_id AND signal_name = NEW.wait_signal)) THEN
				PERFORM pg_notify(workflow_events_channel(TG_TABLE_SCHEMA), 'claimable:' || NEW.execution_id);
			END IF;
			RETURN NULL;
		END
		$$`,
		`CREATE FUNCTION workflow_notify_signal() RETURNS trigger
			LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
		BEGIN
			PERFORM pg_notify(workflow_events_channel(TG_TABLE_SCHEMA), 'signal:' || NEW.execution_id);
			RETURN NULL;
		END
		$$`,
		`CREATE TRIGGER workflow_executions_notify_insert AFTER INSERT ON workflow_executions
			FOR EACH ROW WHEN ((` + notifyClaimableWhen + `) OR NEW.status IN ` + terminalStatusesSQL + `)
			EXECUTE FUNCTION workflow_notify_execution()`,
		// A parked execution woken by its signal is claimed (node_id set):
		// no notification. One handed back, or revived by hand, is.
		`CREATE TRIGGER workflow_executions_notify_update AFTER UPDATE OF node_id, status ON workflow_executions
			FOR EACH ROW WHEN (
				(NEW.status IN ` + terminalStatusesSQL + ` AND OLD.status NOT IN ` + terminalStatusesSQL + `)
				OR (` + notifyClaimableWhen + ` AND (OLD.node_id IS NOT NULL OR OLD.status NOT IN ` + liveStatusesSQL + `)))
			EXECUTE FUNCTION workflow_notify_execution()`,
		`CREATE TRIGGER workflow_signals_notify AFTER INSERT ON signals
			FOR EACH ROW EXECUTE FUNCTION workflow_notify_signal()`,
	},
}

var wakeUpsDown = ddl{
	postgres: []string{
		`DROP TRIGGER IF EXISTS workflow_signals_notify ON signals`,
		`DROP TRIGGER IF EXISTS workflow_executions_notify_update ON workflow_executions`,
		`DROP TRIGGER IF EXISTS workflow_executions_notify_insert ON workflow_executions`,
		`DROP FUNCTION IF EXISTS workflow_notify_signal()`,
		`DROP FUNCTION IF EXISTS workflow_notify_execution()`,
		`DROP FUNCTION IF EXISTS workflow_events_channel(TEXT)`,
	},
}
