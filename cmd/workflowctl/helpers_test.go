package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// result is one run of the CLI.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs command lines in-process on a storage of the test's own.
type cli struct {
	t     *testing.T
	store *repository.Storage
	// env is the environment the CLI sees; WORKFLOW_DSN is set, as the
	// storage is handed over whatever the DSN says.
	env map[string]string
	// terminal makes the CLI take stderr for a terminal.
	terminal bool
	// manager, if set, replaces the management API (and the storage may be nil).
	manager manager
}

func newCLI(t *testing.T, store *repository.Storage) *cli {
	return &cli{t: t, store: store, env: map[string]string{envDSN: "test://the-test-storage"}}
}

func (c *cli) app(stdout, stderr io.Writer) *app {
	a := newApp(stdout, stderr, func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if c.store != nil || c.manager != nil {
		a.open = func(context.Context, string, bool) (*repository.Storage, func(), error) {
			return c.store, func() {}, nil
		}
	}
	if c.manager != nil {
		a.manager = func(*repository.Storage) manager { return c.manager }
	}
	a.isTerminal = func(io.Writer) bool { return c.terminal }
	return a
}

// run runs workflowctl with args and returns what it printed and its exit status.
func (c *cli) run(args ...string) result {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	err := c.app(&stdout, &stderr).execute(c.t.Context(), args)
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(err)}
	if err != nil {
		// Every error is one line on stderr, nothing on stdout after it.
		require.Equal(c.t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
		require.True(c.t, strings.HasPrefix(r.stderr, "workflowctl: "), r.stderr)
	}
	return r
}

// ok runs args, requires exit status 0 and returns stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	require.Equal(c.t, exitOK, r.code, "workflowctl %s: %s", strings.Join(args, " "), r.stderr)
	require.Empty(c.t, r.stderr)
	return r.stdout
}

// fails runs args and requires the exit status code and an error naming want.
func (c *cli) fails(code int, want string, args ...string) {
	c.t.Helper()
	r := c.run(args...)
	require.Equal(c.t, code, r.code, "workflowctl %s: %s%s", strings.Join(args, " "), r.stdout, r.stderr)
	require.Contains(c.t, r.stderr, want)
}

// order is the input of the fixture's workflow.
type order struct {
	ID       string `json:"id"`
	Decline  bool   `json:"decline,omitempty"`
	Approval bool   `json:"approval,omitempty"`
}

// approval is the payload of the "approval" signal.
type approval struct {
	By string `json:"by"`
}

// orderWorkflow reserves and charges; a declined card fails the charge, and
// an order that needs approval waits for the signal after the charge.
func orderWorkflow() *engine.Workflow[order, string] {
	return engine.Define("order", "v1", func(ctx *engine.Context, in order) (string, error) {
		if _, err := engine.Step(ctx, "reserve", func(context.Context) (string, error) { return "R-" + in.ID, nil }); err != nil {
			return "", err
		}
		if _, err := engine.Step(ctx, "charge", func(context.Context) (string, error) {
			if in.Decline {
				return "", engine.NonRetryable(errors.New("card declined"))
			}
			return "P-" + in.ID, nil
		}); err != nil {
			return "", err
		}
		if in.Approval {
			if _, err := engine.AwaitSignal[approval](ctx, "approval", time.Hour); err != nil {
				return "", err
			}
		}
		return "shipped " + in.ID, nil
	})
}

// fixture is a database a real engine ran orders on, then stopped.
type fixture struct {
	store *repository.Storage
	// completed, failed and waiting are executions ended COMPLETED, ended
	// FAILED at their charge, and parked waiting for the approval signal.
	completed, failed, waiting string
	// node ran them.
	node string
}

// newFixture runs the orders on an engine of store and stops it.
func newFixture(t *testing.T, store *repository.Storage) fixture {
	t.Helper()
	ctx := t.Context()
	f := fixture{store: store, completed: "order-ok", failed: "order-declined", waiting: "order-waits", node: "node-a"}
	e := engine.New(store, engine.Config{NodeID: f.node, HeartbeatInterval: 50 * time.Millisecond, StaleThreshold: time.Second,
		PollInterval: 20 * time.Millisecond, DrainTimeout: 100 * time.Millisecond})
	orders := orderWorkflow()
	require.NoError(t, e.Register(orders))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	for _, o := range []struct {
		in     order
		region string
	}{{order{ID: f.completed}, "eu"}, {order{ID: f.failed, Decline: true}, "us"}, {order{ID: f.waiting, Approval: true}, "eu"}} {
		_, err := orders.Start(ctx, e, o.in, engine.WithExecutionID(o.in.ID), engine.WithLabels(map[string]string{"region": o.region}))
		require.NoError(t, err)
	}
	for _, id := range []string{f.completed, f.failed} {
		awaitCtx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := e.Await(awaitCtx, id)
		cancel()
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		x, err := store.GetExecution(ctx, f.waiting)
		return err == nil && x.WaitSignal != nil && x.NodeID == nil
	}, time.Minute, 10*time.Millisecond, "the approval order parks")
	stop()
	require.NoError(t, <-done)
	return f
}

// forEachFixture runs fn on a fixture per dialect.
func forEachFixture(t *testing.T, fn func(t *testing.T, f fixture, c *cli)) {
	t.Helper()
	t.Parallel()
	testutil.ForEachDialect(t, func(t *testing.T, s *repository.Storage) {
		f := newFixture(t, s)
		fn(t, f, newCLI(t, s))
	})
}

// status reads an execution's status from the storage.
func (f fixture) status(t *testing.T, id string) models.ExecutionStatus {
	t.Helper()
	x, err := f.store.GetExecution(t.Context(), id)
	require.NoError(t, err)
	return x.Status
}
