package engine_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
)

type Order struct {
	ID    int `json:"id"`
	Cents int `json:"cents"`
}

// Receipt is the order workflow's output.
type Receipt struct {
	Reservation string `json:"reservation"`
	Payment     string `json:"payment"`
	Shipment    string `json:"shipment"`
}

// processOrder is a three-step workflow: each step runs once per execution,
// even across crashes, and its result is journaled.
var processOrder = engine.Define("order", "v1", func(ctx *engine.Context, o Order) (Receipt, error) {
	reservation, err := engine.Step(ctx, "reserve", func(context.Context) (string, error) {
		return fmt.Sprintf("R-%d", o.ID), nil // call the inventory service here
	})
	if err != nil {
		return Receipt{}, err
	}
	payment, err := engine.Step(ctx, "charge", func(c context.Context) (string, error) {
		// The provider deduplicates on the key, so a rerun after a crash
		// cannot charge twice.
		return chargeCard(c, ctx.ExecutionID()+"/charge", o.ID, o.Cents)
	}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, BackoffMultiplier: 2, Jitter: 0.2}))
	if err != nil {
		return Receipt{}, err
	}
	shipment, err := engine.Step(ctx, "ship", func(context.Context) (string, error) {
		return fmt.Sprintf("S-%d", o.ID), nil
	})
	if err != nil {
		return Receipt{}, err
	}
	return Receipt{Reservation: reservation, Payment: payment, Shipment: shipment}, nil
})

// chargeCard stands for a payment provider's API that takes an idempotency key.
func chargeCard(_ context.Context, idempotencyKey string, orderID, cents int) (string, error) {
	_ = idempotencyKey
	return fmt.Sprintf("P-%d-%d", orderID, cents), nil
}

// Example is the README's quick start: a three-step workflow on embedded SQLite.
func Example() {
	ctx := context.Background()
	store, err := repository.Open(ctx, "sqlite::memory:") // or "postgres://user@host/db"
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	e := engine.New(store, engine.Config{NodeID: "node-1"})
	if err := e.Register(processOrder); err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()

	order, err := processOrder.Start(ctx, e, Order{ID: 42, Cents: 1999})
	if err != nil {
		log.Fatal(err)
	}
	receipt, err := order.Result(ctx) // a *engine.WorkflowError unless it COMPLETED
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", receipt)

	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output: {Reservation:R-42 Payment:P-42-1999 Shipment:S-42}
}
