package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"gorm.io/gorm"
)

// services stands for the outside world: an inventory, a payment provider, a
// carrier and a mailer. Each keeps its records in a table of the demo's and,
// like real providers, deduplicates on the idempotency key it is given, so a
// retried call returns the first call's result. Every call is recorded, so a
// duplicate would be visible in the final table.
type services struct {
	db    *gorm.DB
	out   io.Writer // a lockedWriter
	delay time.Duration
}

var serviceTables = []string{
	`CREATE TABLE IF NOT EXISTS demo_reservations (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL, order_id TEXT NOT NULL, node_id TEXT NOT NULL, released INTEGER NOT NULL DEFAULT 0)`,
	`CREATE TABLE IF NOT EXISTS demo_payments (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL, order_id TEXT NOT NULL, amount_cents INTEGER NOT NULL, node_id TEXT NOT NULL, refunded INTEGER NOT NULL DEFAULT 0)`,
	`CREATE TABLE IF NOT EXISTS demo_shipments (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL, order_id TEXT NOT NULL, node_id TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS demo_emails (id TEXT PRIMARY KEY, idempotency_key TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT NOT NULL)`,
}

func createServiceTables(ctx context.Context, db *gorm.DB) error {
	for _, stmt := range serviceTables {
		if err := db.WithContext(ctx).Exec(stmt).Error; err != nil {
			return fmt.Errorf("creating demo tables: %w", err)
		}
	}
	return nil
}

// timeline prints one line of what happens, as it happens.
func (s *services) timeline(node, order, what string) {
	fmt.Fprintf(s.out, "%s  %-7s %-9s %s\n", time.Now().Format("15:04:05.000"), node, order, what)
}

// pause makes each call take a moment, as real services do, so that the
// demo's kill lands in the middle of the work.
func (s *services) pause(ctx context.Context) {
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// once records a call under its idempotency key unless one is recorded
// already, and returns the record's id either way. A repeated call (a step
// that ran again after a crash) is said on the timeline.
func (s *services) once(ctx context.Context, table, key, node string, columns map[string]any) (string, error) {
	db := s.db.WithContext(ctx)
	var id string
	repeated := false
	err := db.Transaction(func(tx *gorm.DB) error {
		var existing []string
		if err := tx.Table(table).Where("idempotency_key = ?", key).Pluck("id", &existing).Error; err != nil {
			return err
		}
		if len(existing) > 0 {
			id, repeated = existing[0], true
			return nil
		}
		id = key
		row := map[string]any{"id": id, "idempotency_key": key}
		for k, v := range columns {
			row[k] = v
		}
		return tx.Table(table).Create(row).Error
	})
	if err == nil && repeated {
		order, step, _ := strings.Cut(key, "/")
		s.timeline(node, order, fmt.Sprintf("%s again: key %s was already used, so nothing is done twice", step, key))
	}
	return id, err
}

func (s *services) reserve(ctx context.Context, key string, o Order, node string) (string, error) {
	return s.once(ctx, "demo_reservations", key, node, map[string]any{"order_id": o.ID, "node_id": node})
}

func (s *services) charge(ctx context.Context, key, orderID string, cents int, node string) (string, error) {
	return s.once(ctx, "demo_payments", key, node, map[string]any{"order_id": orderID, "amount_cents": cents, "node_id": node})
}

func (s *services) ship(ctx context.Context, key, orderID, node string) (string, error) {
	return s.once(ctx, "demo_shipments", key, node, map[string]any{"order_id": orderID, "node_id": node})
}

func (s *services) email(ctx context.Context, key, to, subject, node string) (string, error) {
	return s.once(ctx, "demo_emails", key, node, map[string]any{"recipient": to, "subject": subject})
}

// refund and release are idempotent by nature: they set a flag.
func (s *services) refund(ctx context.Context, paymentID string) (string, error) {
	return paymentID, s.db.WithContext(ctx).Table("demo_payments").Where("id = ?", paymentID).Update("refunded", 1).Error
}

func (s *services) release(ctx context.Context, reservationID string) (string, error) {
	return reservationID, s.db.WithContext(ctx).Table("demo_reservations").Where("id = ?", reservationID).Update("released", 1).Error
}
