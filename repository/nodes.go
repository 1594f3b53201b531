package repository

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// beatNodeSQL records that a node is alive: its row in workflow_nodes, made
// on its first beat.
const beatNodeSQL = `INSERT INTO workflow_nodes (node_id, started_at, last_seen) VALUES (?, ?, ?) ` +
	`ON CONFLICT (node_id) DO UPDATE SET last_seen = excluded.last_seen`

// BeatNode implements OwnerRepository.
func (s *Storage) BeatNode(ctx context.Context, nodeID string) error {
	if err := checkID("node id", nodeID); err != nil {
		return err
	}
	now := s.dialect.now()
	err := s.run(ctx, func(db *gorm.DB) error { return db.Exec(beatNodeSQL, nodeID, now, now).Error })
	if err != nil {
		return fmt.Errorf("beating for node %s: %w", nodeID, err)
	}
	return nil
}

// Backlog implements OwnerRepository.
func (s *Storage) Backlog(ctx context.Context, p ClaimParams) (claimable, liveNodes int, err error) {
	if err := checkThreshold(p.StaleThreshold); err != nil {
		return 0, 0, err
	}
	defs, defArgs, err := definitionFilter(p.Definitions)
	if err != nil {
		return 0, 0, err
	}
	now := s.dialect.now()
	cutoff := s.dialect.before(p.StaleThreshold)
	// The count is the claim's due pick without its limit: the same index
	// range, ending at now.
	query := `SELECT (SELECT COUNT(*) FROM workflow_executions WHERE ` + liveStatuses +
		` AND live_heartbeat <= ? AND (node_id IS NULL OR live_heartbeat < ?)` + defs + `) AS claimable, ` +
		`(SELECT COUNT(*) FROM workflow_nodes WHERE last_seen >= ?) AS live_nodes`
	args := append([]any{now, cutoff}, defArgs...)
	args = append(args, cutoff)
	var row struct {
		Claimable int
		LiveNodes int
	}
	if err := s.run(ctx, func(db *gorm.DB) error { return db.Raw(query, args...).Scan(&row).Error }); err != nil {
		return 0, 0, fmt.Errorf("counting the backlog: %w", err)
	}
	return row.Claimable, row.LiveNodes, nil
}
