// Command order-processing shows a workflow whose node dies mid-flight being
// finished by another node, with every customer charged exactly once.
//
// It starts node-1 as a separate OS process, which processes the orders and is
// killed with SIGKILL right after it charges the first payment. Then node-2
// starts, notices through the heartbeats that node-1 is dead, takes its
// executions over and finishes them, while node-3 stops gracefully and hands
// its orders over at once. See README.md beside this file.
//
//	go run ./examples/order-processing                       # embedded SQLite in a temp dir
//	go run ./examples/order-processing -dsn postgres://...   # PostgreSQL
//	go run ./examples/order-processing -orders 8
//	go run ./examples/order-processing -keep                 # keep the SQLite file, for workflowctl
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
)

// The demo's timing: short enough to finish in seconds, long enough that the
// kill lands in the middle of the work.
const (
	stepDelay         = 100 * time.Millisecond
	heartbeatInterval = 300 * time.Millisecond
	staleThreshold    = 1500 * time.Millisecond
	pollInterval      = 100 * time.Millisecond
	approvalDelay     = 1500 * time.Millisecond
	approvalTimeout   = 4 * time.Second
	demoDeadline      = 2 * time.Minute
)

// Environment of the node process the demo starts (os.Args[0] again).
const (
	envNode = "ORDER_DEMO_NODE"
	envDSN  = "ORDER_DEMO_DSN"
)

// envKeep=1 does what -keep does.
const envKeep = "ORDER_DEMO_KEEP"

func main() {
	if node := os.Getenv(envNode); node != "" {
		os.Exit(runNode(node, os.Getenv(envDSN), &lockedWriter{w: os.Stdout}))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// newEngine is a node's engine, with the demo's fast settings.
func newEngine(store repository.WorkflowStorage, node string, svc *services, log io.Writer) (*engine.Engine, *engine.Workflow[Order, Outcome], error) {
	e := engine.New(store, engine.Config{
		NodeID: node, HeartbeatInterval: heartbeatInterval, StaleThreshold: staleThreshold, PollInterval: pollInterval,
		Logger: timelineLogger(log, node),
	})
	orders := orderWorkflow(svc, approvalTimeout)
	return e, orders, e.Register(orders)
}

// runNode is a node process: it runs the engine until it is killed (or, at the
// latest, until the demo's deadline).
func runNode(node, dsn string, out io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), demoDeadline)
	defer cancel()
	store, err := repository.Open(ctx, dsn)
	if err != nil {
		fmt.Fprintln(out, node, "opening storage:", err)
		return 1
	}
	defer store.Close()
	svc := &services{db: store.DB(), out: out, delay: stepDelay}
	e, _, err := newEngine(store, node, svc, out)
	if err != nil {
		fmt.Fprintln(out, node, err)
		return 1
	}
	// SIGTERM is a graceful stop: Run drains and hands the orders back.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	if err := e.Run(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintln(out, node, err)
		return 1
	}
	return 0
}

// run is the demo: flags, set-up, node-1, the kill, node-2, the report.
func run(args []string, out, errOut io.Writer) int {
	flags := flag.NewFlagSet("order-processing", flag.ContinueOnError)
	flags.SetOutput(errOut)
	dsn := flags.String("dsn", "", "database: postgres://... or sqlite://PATH (default: a SQLite file in a temporary directory)")
	orders := flags.Int("orders", 5, "how many orders to process")
	keep := flags.Bool("keep", os.Getenv(envKeep) == "1", "keep the SQLite file of the default -dsn and print where it is (also "+envKeep+"=1)")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *orders < 1 || *orders > 100 {
		fmt.Fprintln(errOut, "-orders must be between 1 and 100")
		return 2
	}
	if *dsn == "" {
		dir, err := os.MkdirTemp("", "order-demo-")
		if err != nil {
			fmt.Fprintln(errOut, err)
			return 1
		}
		*dsn = "sqlite://" + dir + "/orders.db"
		if *keep {
			// Said last, so that it is the line a reader sees.
			defer fmt.Fprintf(out, "\nThe database is kept: %s\nLook at it with: WORKFLOW_DSN=%s workflowctl list\n", *dsn, *dsn)
		} else {
			defer os.RemoveAll(dir)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), demoDeadline)
	defer cancel()
	d := &demo{dsn: *dsn, out: &lockedWriter{w: out}, orders: makeOrders(*orders)}
	if err := d.run(ctx); err != nil {
		fmt.Fprintln(errOut, "demo:", err)
		return 1
	}
	return 0
}
