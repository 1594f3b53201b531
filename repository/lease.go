package repository

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// LeaseParams is the input of AcquireLease.
type LeaseParams struct {
	// Name names the chore the lease is for ("retention").
	Name string
	// Holder is the node asking for it.
	Holder string
	// TTL is how long the lease lasts from now, by the database's clock.
	TTL time.Duration
}

// AcquireLeaseSQL takes or renews a lease in one statement: it inserts the
// lease, or takes it over when it has expired or already belongs to the
// holder, and returns the holder only if the caller holds it now. Its
// arguments are the name, the holder and the new expiry time.
const AcquireLeaseSQL = `INSERT INTO workflow_leases (name, holder, expires_at) VALUES (?, ?, ?) ` +
	`ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at ` +
	`WHERE workflow_leases.holder = excluded.holder OR workflow_leases.expires_at < ? RETURNING holder`

// AcquireLease takes the lease p.Name for p.Holder until p.TTL from now, or
// renews it if p.Holder holds it, and reports whether p.Holder holds it now.
// Of nodes asking at once, one gets it; the others get it only once it has
// expired (its holder stopped renewing). Leases live in workflow_leases
// (migration 010); engines use "retention" so that one node at a time
// purges (engine.Config.Retention).
func (s *Storage) AcquireLease(ctx context.Context, p LeaseParams) (bool, error) {
	if err := checkID("lease name", p.Name); err != nil {
		return false, err
	}
	if err := checkID("lease holder", p.Holder); err != nil {
		return false, err
	}
	if p.TTL <= 0 {
		return false, fmt.Errorf("lease %s for %s: %w", p.Name, p.TTL, ErrInvalidArgument)
	}
	var holders []string
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Raw(AcquireLeaseSQL, p.Name, p.Holder, s.dialect.before(-p.TTL), s.dialect.now()).Scan(&holders).Error
	})
	if err != nil {
		return false, fmt.Errorf("acquiring lease %s for %s: %w", p.Name, p.Holder, err)
	}
	return len(holders) == 1, nil
}
