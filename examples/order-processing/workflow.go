package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/plexspaces/workflow/engine"
)

// Customer, Item and Order are the workflow's input.
type Customer struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Item is one line of an order.
type Item struct {
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	PriceCents int    `json:"price_cents"`
}

// Order is what a customer bought.
type Order struct {
	ID       string   `json:"id"`
	Customer Customer `json:"customer"`
	Items    []Item   `json:"items"`
}

// Approval is the payload of the "approval" signal.
type Approval struct {
	ApprovedBy string `json:"approved_by"`
}

// Outcome is the workflow's output.
type Outcome struct {
	Status      string `json:"status"` // "shipped" or "cancelled"
	TotalCents  int    `json:"total_cents"`
	Reservation string `json:"reservation"`
	Payment     string `json:"payment"`
	Shipment    string `json:"shipment,omitempty"`
	ApprovedBy  string `json:"approved_by,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// approvalThresholdCents: orders above it wait for a person's approval.
const approvalThresholdCents = 50_000

// orderWorkflow processes one order. Every call to the outside world is a
// step and takes an idempotency key (execution id + step id), so a step that
// runs again after a crash does not charge, reserve or ship twice.
func orderWorkflow(svc *services, approvalTimeout time.Duration) *engine.Workflow[Order, Outcome] {
	return engine.Define("order", "v1", func(ctx *engine.Context, o Order) (Outcome, error) {
		key := func(step string) string { return ctx.ExecutionID() + "/" + step }
		step := func(name string, fn func(context.Context) (string, error)) (string, error) {
			return engine.Step(ctx, name, func(c context.Context) (string, error) {
				svc.timeline(ctx.NodeID(), o.ID, name)
				svc.pause(c) // the request travels...
				result, err := fn(c)
				svc.pause(c) // ...and so does the response: a crash now loses it
				return result, err
			}, engine.WithRetry(engine.RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, BackoffMultiplier: 2, Jitter: 0.2}))
		}

		total, err := engine.Step(ctx, "validate-order", func(context.Context) (int, error) {
			svc.timeline(ctx.NodeID(), o.ID, "validate-order")
			return validate(o)
		})
		if err != nil {
			return Outcome{}, err
		}
		out := Outcome{TotalCents: total}
		if out.Reservation, err = step("reserve-inventory", func(c context.Context) (string, error) {
			return svc.reserve(c, key("reserve-inventory"), o, ctx.NodeID())
		}); err != nil {
			return Outcome{}, err
		}
		if out.Payment, err = step("charge-payment", func(c context.Context) (string, error) {
			return svc.charge(c, key("charge-payment"), o.ID, total, ctx.NodeID())
		}); err != nil {
			return Outcome{}, err
		}

		if total > approvalThresholdCents {
			approval, err := engine.AwaitSignal[Approval](ctx, "approval", approvalTimeout)
			if errors.Is(err, engine.ErrSignalTimeout) {
				// Compensate: undo the charge and the reservation, newest first.
				if _, err := step("refund-payment", func(c context.Context) (string, error) {
					return svc.refund(c, out.Payment)
				}); err != nil {
					return Outcome{}, err
				}
				if _, err := step("release-inventory", func(c context.Context) (string, error) {
					return svc.release(c, out.Reservation)
				}); err != nil {
					return Outcome{}, err
				}
				out.Status, out.Reason = "cancelled", "no approval within "+approvalTimeout.String()
				return out, nil
			}
			if err != nil {
				return Outcome{}, err
			}
			out.ApprovedBy = approval.ApprovedBy
			svc.timeline(ctx.NodeID(), o.ID, "approved by "+approval.ApprovedBy)
		}

		if out.Shipment, err = step("ship-order", func(c context.Context) (string, error) {
			return svc.ship(c, key("ship-order"), o.ID, ctx.NodeID())
		}); err != nil {
			return Outcome{}, err
		}
		if _, err := step("send-confirmation", func(c context.Context) (string, error) {
			return svc.email(c, key("send-confirmation"), o.Customer.Email, fmt.Sprintf("Order %s is on its way", o.ID), ctx.NodeID())
		}); err != nil {
			return Outcome{}, err
		}
		out.Status = "shipped"
		return out, nil
	}, engine.WithName("Order processing"))
}

// validate checks the order and returns its total.
func validate(o Order) (int, error) {
	if o.ID == "" || o.Customer.Email == "" || len(o.Items) == 0 {
		return 0, errors.New("order needs an id, a customer email and items")
	}
	total := 0
	for _, it := range o.Items {
		if it.Quantity < 1 || it.PriceCents < 0 {
			return 0, fmt.Errorf("item %s: bad quantity or price", it.SKU)
		}
		total += it.Quantity * it.PriceCents
	}
	return total, nil
}
