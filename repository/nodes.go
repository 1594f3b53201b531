package repository

import (
	"context"
	"fmt"
	"time"

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

// nodeRetention is how long workflow_nodes keeps the row of a node that
// stopped beating; PruneNodes deletes older ones.
const nodeRetention = 7 * 24 * time.Hour

// PruneNodes implements OwnerRepository.
func (s *Storage) PruneNodes(ctx context.Context) (int64, error) {
	var deleted int64
	err := s.run(ctx, func(db *gorm.DB) error {
		res := db.Exec(`DELETE FROM workflow_nodes WHERE last_seen < ?`, s.dialect.before(nodeRetention))
		deleted = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return 0, fmt.Errorf("pruning nodes: %w", err)
	}
	return deleted, nil
}

// backlogCountNodes bounds Backlog's count: beyond p.Limit times this many
// executions, every node's share is its whole limit anyway.
const backlogCountNodes = 100

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
	// The count is the claim's due pick: the same index range, ending at
	// now, read no further than a share could matter (p.Limit for each of
	// backlogCountNodes nodes), so a large backlog costs no more per sweep.
	limit := backlogCountNodes * max(p.Limit, 1)
	query := `SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM workflow_executions WHERE ` + liveStatuses +
		` AND live_heartbeat <= ? AND (node_id IS NULL OR live_heartbeat < ?)` + defs + ` LIMIT ?) due) AS claimable, ` +
		`(SELECT COUNT(*) FROM workflow_nodes WHERE last_seen >= ?) AS live_nodes`
	args := append([]any{now, cutoff}, defArgs...)
	args = append(args, limit, cutoff)
	var row struct {
		Claimable int
		LiveNodes int
	}
	if err := s.run(ctx, func(db *gorm.DB) error { return db.Raw(query, args...).Scan(&row).Error }); err != nil {
		return 0, 0, fmt.Errorf("counting the backlog: %w", err)
	}
	return row.Claimable, row.LiveNodes, nil
}
