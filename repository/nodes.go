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
		if res.Error != nil {
			return res.Error
		}
		deleted = res.RowsAffected
		if !s.served {
			return nil
		}
		// The definitions of nodes gone (a node that never beat has none).
		return db.Exec(`DELETE FROM workflow_node_definitions WHERE node_id NOT IN (SELECT node_id FROM workflow_nodes)`).Error
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
	due := `SELECT definition_id, definition_version FROM workflow_executions WHERE ` + liveStatuses +
		` AND live_heartbeat <= ? AND (node_id IS NULL OR live_heartbeat < ?)` + defs + ` LIMIT ?`
	query := `SELECT (SELECT COUNT(*) FROM (` + due + `) due) AS claimable, ` +
		`(SELECT COUNT(*) FROM workflow_nodes WHERE last_seen >= ?) AS live_nodes`
	if s.served {
		query = `WITH waiting AS (` + due + `) SELECT (SELECT COUNT(*) FROM waiting) AS claimable, ` +
			`(SELECT COUNT(*) FROM workflow_nodes n WHERE last_seen >= ? AND ` + runsDue + `) AS live_nodes`
	}
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

// runsDue is the condition on workflow_nodes n that the node could run some
// of the due work ("waiting"): it recorded no definitions (it runs every one), or
// the definition of a due execution. A node that runs other definitions,
// even ones the claim also runs, takes none of this work.
const runsDue = `(NOT EXISTS (SELECT 1 FROM workflow_node_definitions d WHERE d.node_id = n.node_id) ` +
	`OR EXISTS (SELECT 1 FROM workflow_node_definitions d JOIN waiting w ON w.definition_id = d.definition_id ` +
	`AND w.definition_version = d.definition_version WHERE d.node_id = n.node_id))`

// DefinitionServer records which definitions a node runs, so that a sweep's
// fair share (Backlog's count of live nodes) counts only the nodes that
// could take the same work. Storage implements it; WorkflowStorage does not
// require it, so fakes need not (then every live node counts).
type DefinitionServer interface {
	// ServeDefinitions replaces the definitions nodeID runs with defs; none
	// means it runs every definition. It beats the node too (BeatNode): a
	// node records what it runs as it starts.
	ServeDefinitions(ctx context.Context, nodeID string, defs []DefinitionKey) error
}

var _ DefinitionServer = (*Storage)(nil)

// ServeDefinitions implements DefinitionServer, in one transaction. On a
// database without migration 013 (opened WithoutMigrations), or on a
// caller's transaction (InTransaction), it records nothing.
func (s *Storage) ServeDefinitions(ctx context.Context, nodeID string, defs []DefinitionKey) error {
	if err := checkID("node id", nodeID); err != nil {
		return err
	}
	rows := make([]servedDefinition, 0, len(defs))
	seen := make(map[DefinitionKey]bool, len(defs))
	for _, d := range defs {
		if err := checkDefinitionKey(d.ID, d.Version); err != nil {
			return err
		}
		if !seen[d] {
			seen[d] = true
			rows = append(rows, servedDefinition{NodeID: nodeID, DefinitionID: d.ID, DefinitionVersion: d.Version})
		}
	}
	if !s.served {
		return nil // nowhere to record them: every live node counts
	}
	err := s.run(ctx, func(db *gorm.DB) error {
		return s.atomically(db, func(tx *gorm.DB) error {
			// Two processes that record for one node id at once (it
			// restarted while its old process still ran) take turns on
			// its row, made or beaten here: one set stands, not a mix.
			now := s.dialect.now()
			if err := tx.Exec(beatNodeSQL, nodeID, now, now).Error; err != nil {
				return err
			}
			if err := tx.Exec(`DELETE FROM workflow_node_definitions WHERE node_id = ?`, nodeID).Error; err != nil {
				return err
			}
			if len(rows) == 0 {
				return nil
			}
			return tx.Create(&rows).Error
		})
	})
	if err != nil {
		return fmt.Errorf("recording the definitions node %s runs: %w", nodeID, err)
	}
	return nil
}

// servedDefinition is a row of workflow_node_definitions.
type servedDefinition struct {
	NodeID            string `gorm:"column:node_id"`
	DefinitionID      string `gorm:"column:definition_id"`
	DefinitionVersion string `gorm:"column:definition_version"`
}

func (servedDefinition) TableName() string { return "workflow_node_definitions" }
