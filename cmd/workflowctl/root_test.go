package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
)

// commandLines walks the command tree: every command's path after
// "workflowctl".
func commandLines(cmd *cobra.Command) [][]string {
	var out [][]string
	for _, sub := range cmd.Commands() {
		if sub.Name() == "help" {
			continue
		}
		path := strings.Fields(sub.CommandPath())[1:]
		out = append(out, path)
		out = append(out, commandLines(sub)...)
	}
	return out
}

// TestHelp: --help works on every command, on stdout, with status 0, and
// needs no database.
func TestHelp(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	lines := commandLines(newApp(nil, nil, nil).rootCommand())
	require.Len(t, lines, 12) // list show signal cancel retry purge nodes stale migrate{,status,up,down}
	lines = append(lines, []string{})
	for _, args := range lines {
		for _, help := range []string{"--help", "-h"} {
			out := c.ok(append(args, help)...)
			require.Contains(t, out, "Usage:\n  workflowctl "+strings.Join(args, " "), args)
			require.Contains(t, out, "--dsn string", args)
			require.Contains(t, out, "-o, --output format", args)
		}
	}
	require.Contains(t, c.ok("help", "purge"), "--older-than duration")
	require.Contains(t, c.ok("list", "--help"), "--label key=value")
}

func TestUsage(t *testing.T) {
	t.Parallel()
	c := newCLI(t, nil)
	r := c.run()
	require.Equal(t, exitUsage, r.code)
	require.Equal(t, "workflowctl: workflowctl needs a command: cancel, list, migrate, nodes, purge, retry, show, signal, stale (see workflowctl --help)\n", r.stderr)
	c.fails(exitUsage, `workflowctl: unknown command "lsit" for "workflowctl" (see workflowctl --help)`, "lsit")
	c.fails(exitUsage, "unknown flag: --verbose", "--verbose", "list")
	c.fails(exitUsage, "unknown shorthand flag: 'x' in -x", "nodes", "-x")
	c.fails(exitUsage, `invalid argument "xml" for "-o, --output" flag: want table or json`, "nodes", "-o", "xml")
	c.fails(exitUsage, "flag needs an argument: --dsn", "nodes", "--dsn")

	// No database anywhere is bad usage too.
	delete(c.env, envDSN)
	c.fails(exitUsage, "workflowctl: no database: give --dsn or set WORKFLOW_DSN (see workflowctl nodes --help)\n", "nodes")
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, exitCode(nil))
	require.Equal(t, 1, exitCode(errors.New("boom")))
	require.Equal(t, 2, exitCode(usagef("bad")))
	require.Equal(t, 2, exitCode(fmt.Errorf("wrapped: %w", usagef("bad"))))
}

// TestDSN: --dsn wins over WORKFLOW_DSN, both reach the real opener, and a
// DSN of the wrong form is an error (1), not usage.
func TestDSN(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := newCLI(t, nil)
	c.env[envDSN] = "sqlite://" + dir + "/from-env.db"
	c.ok("migrate", "up")
	c.ok("--dsn", "sqlite://"+dir+"/from-flag.db", "migrate", "up")
	require.FileExists(t, dir+"/from-env.db")
	require.FileExists(t, dir+"/from-flag.db")
	c.fails(exitError, `unsupported DSN scheme "mysql"`, "--dsn", "mysql://root@localhost/db", "nodes")
	c.fails(exitError, "DSN has no scheme", "--dsn", "workflows.db", "nodes")
}

// TestRedaction: a DSN's password is never printed: not in the errors of
// the driver, nor in errors that echo the DSN whole, in any spelling.
func TestRedaction(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55"
	check := func(t *testing.T, r result) {
		t.Helper()
		require.Equal(t, exitError, r.code)
		require.NotContains(t, r.stderr+r.stdout, secret)
		require.NotContains(t, r.stderr+r.stdout, "s3cr3t")
	}
	t.Run("driver", func(t *testing.T) {
		// Nothing listens on port 1: the connection fails.
		for _, dsn := range []string{
			"postgres://workflow:" + secret + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
			"postgresql://workflow@127.0.0.1:1/db?sslmode=disable&password=" + secret,
		} {
			c := newCLI(t, nil)
			r := c.run("--dsn", dsn, "list")
			check(t, r)
			require.Contains(t, r.stderr, "workflowctl: opening the database: connecting to PostgreSQL")
			c.env[envDSN] = dsn
			check(t, c.run("nodes"))
		}
	})
	t.Run("echoed", func(t *testing.T) {
		dsn := "postgres://workflow:" + secret + "@db.internal:5432/app"
		for _, echo := range []string{
			"dial " + dsn + ": refused",
			"bad password " + secret,
			"user=workflow password=" + secret + " host=db",
			"escaped " + strings.ReplaceAll(dsn, "-", "%2D"),
			"other postgres://someone:hunter2@elsewhere/db",
		} {
			c := newCLI(t, nil)
			c.manager = &fakeManager{err: errors.New(echo)}
			r := c.run("--dsn", dsn, "nodes")
			check(t, r)
			require.NotContains(t, r.stderr, "hunter2")
			require.Contains(t, r.stderr, "xxxxx")
		}
	})
	t.Run("unparsable", func(t *testing.T) {
		dsn := "postgres://workflow:" + secret + "%zz@127.0.0.1:1/db"
		c := newCLI(t, nil)
		check(t, c.run("--dsn", dsn, "nodes"))
	})
	t.Run("help", func(t *testing.T) {
		c := newCLI(t, nil)
		c.env[envDSN] = "postgres://workflow:" + secret + "@db/app"
		out := c.ok("list", "--help")
		require.NotContains(t, out, secret)
	})
}

func TestRedactor(t *testing.T) {
	t.Parallel()
	var r redactor
	r.add("postgres://u:p%40ss@h/db") // the password is "p@ss"
	for in, want := range map[string]string{
		"postgres://u:p%40ss@h/db":    "postgres://u:xxxxx@h/db",
		"password p@ss":               "password xxxxx",
		"no secret here":              "no secret here",
		"a=1 password=abc b=2":        "a=1 password=xxxxx b=2",
		"https://x:y@example.com/a":   "https://x:xxxxx@example.com/a",
		"postgres://u@h/db?sslmode=1": "postgres://u@h/db?sslmode=1",
	} {
		require.Equal(t, want, r.redact(in), in)
	}
}

// TestExecute: execute, as main calls it, writes where it is told.
func TestExecute(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	dsn := "sqlite://" + t.TempDir() + "/w.db"
	err := execute(t.Context(), []string{"--dsn", dsn, "migrate", "up", "-o", "json"}, &stdout, &stderr, func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	require.Empty(t, stderr.String())
	require.Contains(t, stdout.String(), `"applied": [`)
}
