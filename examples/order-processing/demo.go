package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

type demo struct {
	dsn    string
	out    io.Writer
	orders []Order
	store  *repository.Storage
	svc    *services
}

// makeOrders builds n orders; every other one is large enough to need an
// approval. The demo approves all of those but the last, which times out and
// is compensated.
func makeOrders(n int) []Order {
	customers := []Customer{{"Ada Lovelace", "ada@example.com"}, {"Grace Hopper", "grace@example.com"}, {"Alan Turing", "alan@example.com"}}
	orders := make([]Order, n)
	for i := range orders {
		o := Order{ID: fmt.Sprintf("order-%d", i+1), Customer: customers[i%len(customers)],
			Items: []Item{{SKU: "BOOK-1", Quantity: 1 + i%3, PriceCents: 2_500}}}
		if i%2 == 1 {
			o.Items = append(o.Items, Item{SKU: "LAPTOP-9", Quantity: 1, PriceCents: 120_000})
		}
		orders[i] = o
	}
	return orders
}

// approved reports whether the demo approves order i (when it needs approval).
func (d *demo) approved(i int) bool {
	last := -1
	for j := range d.orders {
		if total, _ := validate(d.orders[j]); total > approvalThresholdCents {
			last = j
		}
	}
	return i != last
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "%s  %-7s ", time.Now().Format("15:04:05.000"), "demo")
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demo) run(ctx context.Context) error {
	store, err := repository.Open(ctx, d.dsn)
	if err != nil {
		return err
	}
	defer store.Close()
	d.store = store
	if err := createServiceTables(ctx, store.DB()); err != nil {
		return err
	}
	d.svc = &services{db: store.DB(), out: d.out, delay: stepDelay}
	client, orders, err := newEngine(store, "demo", d.svc, io.Discard) // starts and signals; never runs workflows
	if err != nil {
		return err
	}
	d.say("%d orders on %s; node-1 and node-3 start as separate processes", len(d.orders), store.Dialect())
	node1, err := d.startNodeProcess(ctx, "node-1")
	if err != nil {
		return err
	}
	defer func() { _ = node1.Process.Kill(); _ = node1.Wait() }()
	node3, err := d.startNodeProcess(ctx, "node-3")
	if err != nil {
		return err
	}
	defer func() { _ = node3.Process.Kill(); _ = node3.Wait() }()
	// Both are alive before the orders come, so they share them.
	if err := d.waitFor(ctx, func() (bool, error) {
		var n int64
		err := store.DB().WithContext(ctx).Table("workflow_nodes").Count(&n).Error
		return n >= 2, err
	}); err != nil {
		return fmt.Errorf("waiting for the nodes: %w", err)
	}
	for _, o := range d.orders {
		if _, err := orders.Start(ctx, client, o, engine.WithExecutionID(o.ID)); err != nil {
			return err
		}
	}
	go d.sendApprovals(ctx, client)

	// Kill the first node to charge a payment, as soon as it has: mid-flight.
	// Which of the two it is depends on which claimed first.
	var first string
	if err := d.waitFor(ctx, func() (bool, error) {
		var nodes []string
		err := store.DB().WithContext(ctx).Table("demo_payments").Order("id").Limit(1).Pluck("node_id", &nodes).Error
		if len(nodes) > 0 {
			first = nodes[0]
		}
		return first != "", err
	}); err != nil {
		return fmt.Errorf("waiting for the first payment: %w", err)
	}
	killed, stopped := node1, node3
	killedName, stoppedName := "node-1", "node-3"
	if first == "node-3" {
		killed, stopped, killedName, stoppedName = node3, node1, "node-3", "node-1"
	}
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	_ = killed.Wait()
	d.say("*** SIGKILL %s, right after it charged the first payment", killedName)
	d.report(ctx, "in flight at the kill")

	d.say("node-2 starts; it takes %s's orders once their heartbeats are %s old", killedName, staleThreshold)
	node2, _, err := newEngine(store, "node-2", d.svc, d.out)
	if err != nil {
		return err
	}
	runCtx, stopNode2 := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- node2.Run(runCtx) }()

	// A rolling deploy: the other node stops gracefully. It lets its running
	// steps finish, journals them and hands its orders back, and node-2
	// resumes them at once, not after the stale threshold.
	if err := stopped.Process.Signal(syscall.SIGTERM); err != nil {
		stopNode2()
		return err
	}
	d.say("*** SIGTERM %s: it finishes its running steps, then hands its orders back", stoppedName)
	_ = stopped.Wait()
	d.say("%s has exited", stoppedName)
	for _, o := range d.orders {
		if _, err := orders.Handle(client, o.ID).Result(ctx); err != nil && !errors.As(err, new(*engine.WorkflowError)) {
			stopNode2()
			return err
		}
	}
	stopNode2()
	if err := <-done; err != nil {
		return err
	}
	d.say("all orders ended")
	return d.verify(ctx)
}

// startNodeProcess starts this program again as node id; its output joins ours.
func (d *demo) startNodeProcess(ctx context.Context, id string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), envNode+"="+id, envDSN+"="+d.dsn)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		lines := bufio.NewScanner(pipe)
		for lines.Scan() {
			fmt.Fprintln(d.out, lines.Text())
		}
	}()
	return cmd, nil
}

// sendApprovals plays the person who approves large orders, after a delay.
func (d *demo) sendApprovals(ctx context.Context, client *engine.Engine) {
	t := time.NewTimer(approvalDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return
	}
	for i, o := range d.orders {
		total, _ := validate(o)
		if total <= approvalThresholdCents {
			continue
		}
		if !d.approved(i) {
			d.say("%s is not approved: it will time out after %s and be compensated", o.ID, approvalTimeout)
			continue
		}
		if err := client.Signal(ctx, o.ID, "approval", Approval{ApprovedBy: "ops@example.com"}); err == nil {
			d.say("approval sent for %s", o.ID)
		}
	}
}

// waitFor polls cond until it holds or ctx ends.
func (d *demo) waitFor(ctx context.Context, cond func() (bool, error)) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// report prints where each order stands, from the storage.
func (d *demo) report(ctx context.Context, title string) {
	var stale []string
	for _, o := range d.orders {
		e, err := d.store.GetExecution(ctx, o.ID)
		if err != nil || e.Status.Terminal() {
			continue
		}
		stale = append(stale, fmt.Sprintf("%s at %s (version %d)", o.ID, stepLabel(deref(e.CurrentStepID)), e.Version))
	}
	d.say("%s: %s", title, strings.Join(stale, ", "))
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

var errDuplicates = errors.New("a side effect happened twice")

// verify prints the final table and checks every order ended as designed,
// with no payment or shipment made twice.
func (d *demo) verify(ctx context.Context) error {
	db := d.store.DB().WithContext(ctx)
	fmt.Fprintf(d.out, "\n%-9s %-10s %-10s %-9s %-13s %-9s %s\n", "order", "status", "outcome", "finished", "payments", "shipments", "completed steps (#attempt)")
	var problems []string
	for i, o := range d.orders {
		e, err := d.store.GetExecution(ctx, o.ID)
		if err != nil {
			return err
		}
		var out Outcome
		_ = e.Output.Unmarshal(&out)
		var payments, refunded, shipments int64
		if err := db.Table("demo_payments").Where("order_id = ?", o.ID).Count(&payments).Error; err != nil {
			return err
		}
		if err := db.Table("demo_payments").Where("order_id = ? AND refunded = 1", o.ID).Count(&refunded).Error; err != nil {
			return err
		}
		if err := db.Table("demo_shipments").Where("order_id = ?", o.ID).Count(&shipments).Error; err != nil {
			return err
		}
		history, err := d.store.GetStepExecutionHistory(ctx, o.ID)
		if err != nil {
			return err
		}
		var steps []string
		for _, h := range history {
			if h.Status == models.StepCompleted && !strings.HasSuffix(h.StepID, ":deadline") {
				steps = append(steps, fmt.Sprintf("%s#%d", stepLabel(h.StepID), h.Attempt))
			}
		}
		paid := fmt.Sprint(payments)
		if refunded > 0 {
			paid += " (refunded)"
		}
		fmt.Fprintf(d.out, "%-9s %-10s %-10s %-9s %-13s %-9d %s\n", o.ID, e.Status, out.Status, deref(e.NodeID), paid, shipments, strings.Join(steps, " "))

		total, _ := validate(o)
		wantOutcome, wantShipments := "shipped", int64(1)
		if total > approvalThresholdCents && !d.approved(i) {
			wantOutcome, wantShipments = "cancelled", 0
		}
		switch {
		case e.Status != models.ExecutionCompleted || out.Status != wantOutcome:
			problems = append(problems, fmt.Sprintf("%s ended %s/%s, want COMPLETED/%s", o.ID, e.Status, out.Status, wantOutcome))
		case payments != 1 || shipments != wantShipments:
			problems = append(problems, fmt.Sprintf("%s: %d payments and %d shipments: %v", o.ID, payments, shipments, errDuplicates))
		case wantOutcome == "cancelled" && refunded != 1:
			problems = append(problems, fmt.Sprintf("%s was cancelled but not refunded", o.ID))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Fprintln(d.out, "\nevery order ended as designed; no payment or shipment was made twice")
	return nil
}
