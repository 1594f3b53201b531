package repository

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
)

// This file holds what an operator's tools read and do beside the engine:
// the nodes and their work, pending signals, retrying an ended execution and
// purging old ones (retry_execution.go, purge.go).

// ManageRepository is what the management API (package manage) needs beyond
// WorkflowStorage. Storage implements it; WorkflowStorage does not require
// it, so fakes need not.
type ManageRepository interface {
	// ListNodes returns the nodes of workflow_nodes (every node that beat
	// within the last week), ordered by id, each with the number of live
	// executions it owns.
	ListNodes(ctx context.Context) ([]NodeInfo, error)
	// ListPendingSignals returns the signals stored for an execution and not
	// consumed yet, oldest first; none for an unknown execution.
	ListPendingSignals(ctx context.Context, executionID string) ([]models.Signal, error)
	// PurgeExecutions deletes ended executions with their labels, steps and
	// signals, in batches; see PurgeParams.
	PurgeExecutions(ctx context.Context, p PurgeParams) (PurgeCounts, error)
	// RetryExecution makes a FAILED, CANCELLED or TIMED_OUT execution run
	// again from its first step that did not complete; see Storage.RetryExecution.
	RetryExecution(ctx context.Context, executionID string) (*models.WorkflowExecution, error)
}

var _ ManageRepository = (*Storage)(nil)

// NodeInfo is one node that runs engines on the database, as ListNodes
// reports it.
type NodeInfo struct {
	// NodeID is the engine's Config.NodeID.
	NodeID string `json:"node_id"`
	// StartedAt is the node's first beat, LastSeen its latest (engines beat
	// every heartbeat interval; one that stopped beating is gone).
	StartedAt time.Time `json:"started_at"`
	LastSeen  time.Time `json:"last_seen"`
	// Executions counts the live (PENDING or RUNNING) executions it owns.
	Executions int64 `json:"executions"`
}

// ListNodesSQL is the statement ListNodes runs.
const ListNodesSQL = `SELECT n.node_id, n.started_at, n.last_seen, ` +
	`(SELECT COUNT(*) FROM workflow_executions e WHERE e.node_id = n.node_id AND e.` + liveStatuses + `) AS executions ` +
	`FROM workflow_nodes n ORDER BY n.node_id`

// ListNodes implements ManageRepository.
func (s *Storage) ListNodes(ctx context.Context) ([]NodeInfo, error) {
	var nodes []NodeInfo
	if err := s.run(ctx, func(db *gorm.DB) error { return db.Raw(ListNodesSQL).Scan(&nodes).Error }); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	for i := range nodes {
		nodes[i].StartedAt = nodes[i].StartedAt.UTC()
		nodes[i].LastSeen = nodes[i].LastSeen.UTC()
	}
	return nodes, nil
}

// ListPendingSignals implements ManageRepository.
func (s *Storage) ListPendingSignals(ctx context.Context, executionID string) ([]models.Signal, error) {
	if err := checkID("execution id", executionID); err != nil {
		return nil, err
	}
	var sigs []models.Signal
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Where("execution_id = ?", executionID).Order("seq").Find(&sigs).Error
	})
	if err != nil {
		return nil, fmt.Errorf("listing pending signals of execution %s: %w", executionID, err)
	}
	s.dialect.scanned(&sigs)
	return sigs, nil
}
