package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/migrations"
	"github.com/plexspaces/workflow/testutil"
)

// forEachDSN runs fn on the DSN of an empty database per dialect: a SQLite
// file that does not exist yet, and a PostgreSQL schema of the test's own.
func forEachDSN(t *testing.T, fn func(t *testing.T, dialect, dsn string)) {
	t.Helper()
	t.Parallel()
	for _, dialect := range []string{testutil.SQLite, testutil.Postgres} {
		t.Run(dialect, func(t *testing.T) {
			dsn := "sqlite://" + t.TempDir() + "/workflows.db"
			if dialect == testutil.Postgres {
				dsn = testutil.PostgresSchemaDSN(t)
			}
			fn(t, dialect, dsn)
		})
	}
}

func TestMigrate(t *testing.T) {
	forEachDSN(t, func(t *testing.T, dialect, dsn string) {
		c := newCLI(t, nil)
		c.env[envDSN] = dsn
		all := migrations.All()
		last := all[len(all)-1].ID

		if dialect == testutil.SQLite {
			c.fails(exitError, "workflowctl: database file "+strings.TrimPrefix(dsn, "sqlite://")+" does not exist\n", "migrate", "status")
			c.fails(exitError, "does not exist", "list")
		} else {
			out := c.ok("migrate", "status")
			require.Regexp(t, `^MIGRATION\s+APPLIED\n`, out)
			require.Equal(t, len(all), strings.Count(out, " no\n"), out)
		}

		var applied []string
		for _, m := range all {
			applied = append(applied, fmt.Sprintf("applied %s\n", m.ID))
		}
		require.Equal(t, strings.Join(applied, ""), c.ok("migrate", "up"))
		require.Equal(t, "the schema is up to date\n", c.ok("migrate", "up"))
		out := c.ok("migrate", "status")
		require.Equal(t, len(all), strings.Count(out, " yes\n"), out)
		require.Equal(t, "no executions\n", c.ok("list"), "a migrated database lists")

		require.Equal(t, "rolled back "+last+"\n", c.ok("migrate", "down"))
		var doc migrationsDocument
		require.NoError(t, json.Unmarshal([]byte(c.ok("migrate", "status", "-o", "json")), &doc))
		require.Len(t, doc.Migrations, len(all))
		for i, m := range doc.Migrations {
			require.Equal(t, all[i].ID, m.ID)
			require.Equal(t, i < len(all)-1, m.Applied, m.ID)
		}
		require.NoError(t, json.Unmarshal([]byte(c.ok("migrate", "up", "-o", "json")), &doc))
		require.Equal(t, []string{last}, doc.Applied)
		doc = migrationsDocument{}
		require.NoError(t, json.Unmarshal([]byte(c.ok("migrate", "down", "-o", "json")), &doc))
		require.Equal(t, last, doc.RolledBack)
	})
}

func TestMigrate_BadUsage(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	r := c.run("migrate")
	require.Equal(t, exitUsage, r.code)
	require.Equal(t, "workflowctl: workflowctl migrate needs a command: down, status, up (see workflowctl migrate --help)\n", r.stderr)
	require.Empty(t, r.stdout)
	c.fails(exitUsage, `unknown command "sideways" for "workflowctl migrate"`, "migrate", "sideways")
	c.fails(exitUsage, `unexpected argument "all"`, "migrate", "down", "all")
}
