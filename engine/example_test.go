package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

type Order struct {
	ID    int `json:"id"`
	Cents int `json:"cents"`
}

// processOrder is a three-step workflow: each step runs once per execution,
// even across crashes, and its result is journaled.
func processOrder(ctx *engine.Context, input json.RawMessage) (any, error) {
	var o Order
	if err := json.Unmarshal(input, &o); err != nil {
		return nil, err
	}
	reservation, err := engine.Step(ctx, "reserve", func(context.Context) (string, error) {
		return fmt.Sprintf("R-%d", o.ID), nil // call the inventory service here
	})
	if err != nil {
		return nil, err
	}
	payment, err := engine.Step(ctx, "charge", func(c context.Context) (string, error) {
		// The provider deduplicates on the key, so a rerun after a crash
		// cannot charge twice.
		return chargeCard(c, ctx.ExecutionID()+"/charge", o.ID, o.Cents)
	}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, BackoffMultiplier: 2, Jitter: 0.2}))
	if err != nil {
		return nil, err
	}
	shipment, err := engine.Step(ctx, "ship", func(context.Context) (string, error) {
		return fmt.Sprintf("S-%d", o.ID), nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"reservation": reservation, "payment": payment, "shipment": shipment}, nil
}

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
	if err := e.Register(models.WorkflowDefinition{ID: "order", Version: "v1"}, processOrder); err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()

	id, err := e.Start(ctx, "order", "v1", Order{ID: 42, Cents: 1999})
	if err != nil {
		log.Fatal(err)
	}
	exec, err := e.Await(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(exec.Status, string(exec.Output))

	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output: COMPLETED {"payment":"P-42-1999","reservation":"R-42","shipment":"S-42"}
}
