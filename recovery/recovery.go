// Package recovery keeps a node's executions alive and takes over the work of
// nodes that died.
//
// A [Service] belongs to one node. [Service.RecoverOnStartup] does what a
// restarting node must: resume what it still owns and take over what is stale
// or unowned. [Service.Run] then keeps going: one batched heartbeat per
// interval for everything the node owns, and a sweep that claims, in bounded
// batches, executions whose owner stopped beating. Each takeover is a
// compare-and-set on the execution's version, so of several nodes exactly one
// wins; the others skip quietly. What to do with a recovered execution is the
// [Resumer]'s business (the engine is one).
//
// The package depends on the repository's interfaces only.
package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Resumer continues an execution this node now owns.
type Resumer interface {
	Resume(ctx context.Context, exec *models.WorkflowExecution) error
}

// Report counts what RecoverOnStartup did. Total executions were considered;
// Recovered were this node's own, Claimed had no owner, Transferred were taken
// from a stale node; Failed could not be taken over or resumed. Executions
// another node took first, or that a live node owns, are in Total only.
type Report struct {
	Total, Recovered, Claimed, Transferred, Failed int
}

// Service recovers and keeps alive the executions of one node.
type Service struct {
	store  repository.WorkflowStorage
	nodeID string

	resumer           Resumer
	logger            *slog.Logger
	statuses          []models.ExecutionStatus
	heartbeatInterval time.Duration
	staleThreshold    time.Duration
	sweepInterval     time.Duration
	batchSize         int
	capacity          func() int
	onHeartbeat       func(context.Context, []string)
	running           func() []string
	sweepNow          <-chan struct{}
	definitions       []repository.DefinitionKey
}

// NewService returns the recovery service of node nodeID.
func NewService(store repository.WorkflowStorage, nodeID string, opts ...Option) *Service {
	s := &Service{
		store:             store,
		nodeID:            nodeID,
		logger:            slog.New(slog.DiscardHandler),
		statuses:          models.LiveExecutionStatuses(),
		heartbeatInterval: HeartbeatIntervalDefault,
		staleThreshold:    StaleThresholdDefault,
		sweepInterval:     SweepIntervalDefault,
		batchSize:         BatchSizeDefault,
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// ErrInvalidConfig is returned for a service whose settings cannot work.
var ErrInvalidConfig = errors.New("recovery: invalid configuration")

func (s *Service) validate() error {
	switch {
	case s.nodeID == "":
		return fmt.Errorf("empty node id: %w", ErrInvalidConfig)
	case s.heartbeatInterval <= 0 || s.sweepInterval <= 0 || s.staleThreshold <= 0:
		return fmt.Errorf("intervals must be positive: %w", ErrInvalidConfig)
	case s.staleThreshold <= s.heartbeatInterval:
		return fmt.Errorf("stale threshold %s must exceed the heartbeat interval %s: %w", s.staleThreshold, s.heartbeatInterval, ErrInvalidConfig)
	case s.batchSize < 1:
		return fmt.Errorf("batch size %d: %w", s.batchSize, ErrInvalidConfig)
	}
	return nil
}

// RecoverOnStartup resumes the live executions this node owns whose heartbeat
// is fresh, and takes over (then resumes) those that are unowned, stale, or
// this node's own but stale, with the version it read. An execution another
// node took first is skipped quietly, and so is other nodes' work once the
// capacity (WithCapacity) is used up. Non-zero staleThreshold and
// heartbeatInterval also become the settings of a later Run.
func (s *Service) RecoverOnStartup(ctx context.Context, staleThreshold, heartbeatInterval time.Duration) (Report, error) {
	if staleThreshold > 0 {
		s.staleThreshold = staleThreshold
	}
	if heartbeatInterval > 0 {
		s.heartbeatInterval = heartbeatInterval
	}
	var report Report
	if err := s.validate(); err != nil {
		return report, err
	}
	live, err := s.store.ListExecutionsByStatus(ctx, s.statuses, nil)
	if err != nil {
		return report, fmt.Errorf("recovering node %s: %w", s.nodeID, err)
	}
	stale, err := s.store.ListStaleExecutions(ctx, s.staleThreshold, s.statuses)
	if err != nil {
		return report, fmt.Errorf("recovering node %s: %w", s.nodeID, err)
	}
	isStale := make(map[string]bool, len(stale))
	for _, e := range stale {
		isStale[e.ExecutionID] = true
	}
	for i := range live {
		e := &live[i]
		if !s.runs(e) {
			continue // another node's kind of work
		}
		report.Total++
		owner := ""
		if e.NodeID != nil {
			owner = *e.NodeID
		}
		switch {
		case owner == s.nodeID && !isStale[e.ExecutionID]:
			if err := s.store.UpdateHeartbeat(ctx, e.ExecutionID, s.nodeID); err != nil {
				s.skipOrFail(ctx, &report, e, err)
				continue
			}
			s.resume(ctx, &report, e, &report.Recovered)
		case owner == s.nodeID, owner == "", isStale[e.ExecutionID]:
			if owner != s.nodeID && s.capacity != nil && s.capacity() < 1 {
				continue // no room: a later sweep takes it, here or elsewhere
			}
			if err := s.store.TransferOwnership(ctx, e.ExecutionID, s.nodeID, int64(e.Version)); err != nil {
				s.skipOrFail(ctx, &report, e, err)
				continue
			}
			e.Version++
			e.NodeID = &s.nodeID
			counter := &report.Transferred
			switch owner {
			case s.nodeID:
				counter = &report.Recovered
			case "":
				counter = &report.Claimed
			}
			s.resume(ctx, &report, e, counter)
		}
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "recovered on startup", slog.String("node_id", s.nodeID),
		slog.Int("total", report.Total), slog.Int("recovered", report.Recovered), slog.Int("claimed", report.Claimed),
		slog.Int("transferred", report.Transferred), slog.Int("failed", report.Failed))
	return report, nil
}

// runs reports whether this node runs executions of e's definition.
func (s *Service) runs(e *models.WorkflowExecution) bool {
	if len(s.definitions) == 0 {
		return true
	}
	for _, d := range s.definitions {
		if d.ID == e.DefinitionID && d.Version == e.DefinitionVersion {
			return true
		}
	}
	return false
}

// skipOrFail counts a lost race as nothing and any other error as a failure.
func (s *Service) skipOrFail(ctx context.Context, report *Report, e *models.WorkflowExecution, err error) {
	if errors.Is(err, repository.ErrConcurrentUpdate) || errors.Is(err, repository.ErrNotFound) {
		s.logger.LogAttrs(ctx, slog.LevelDebug, "another node took the execution first",
			slog.String("execution_id", e.ExecutionID), slog.String("node_id", s.nodeID))
		return
	}
	report.Failed++
	s.logger.LogAttrs(ctx, slog.LevelError, "taking over execution", slog.String("execution_id", e.ExecutionID),
		slog.String("node_id", s.nodeID), slog.String("error", err.Error()))
}

func (s *Service) resume(ctx context.Context, report *Report, e *models.WorkflowExecution, counter *int) {
	if s.resumer != nil {
		if err := s.resumer.Resume(ctx, e); err != nil {
			report.Failed++
			s.logger.LogAttrs(ctx, slog.LevelError, "resuming execution", slog.String("execution_id", e.ExecutionID),
				slog.String("node_id", s.nodeID), slog.String("error", err.Error()))
			return
		}
	}
	*counter++
}

// Run beats for this node's executions every heartbeat interval, in one
// statement, and sweeps for executions to claim every sweep interval, until
// ctx ends; then it returns nil. Storage errors are logged and retried at the
// next tick: a database blip must not stop a node's heartbeat for good.
func (s *Service) Run(ctx context.Context) error {
	if err := s.validate(); err != nil {
		return err
	}
	heartbeat := time.NewTicker(s.heartbeatInterval)
	defer heartbeat.Stop()
	sweep := time.NewTicker(s.sweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-heartbeat.C:
			s.Heartbeat(ctx)
		case <-sweep.C:
			s.Sweep(ctx)
		case <-s.sweepNow:
			s.Sweep(ctx)
		}
	}
}

// Heartbeat beats once for every live execution this node owns (or, with
// WithRunning, for those of them it runs) and reports them to the heartbeat
// hook.
func (s *Service) Heartbeat(ctx context.Context) {
	var owned []string
	var err error
	if s.running != nil {
		owned, err = s.store.HeartbeatExecutions(ctx, s.nodeID, s.running())
	} else {
		owned, err = s.store.HeartbeatNode(ctx, s.nodeID)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "heartbeat", slog.String("node_id", s.nodeID), slog.String("error", err.Error()))
		}
		return
	}
	if s.onHeartbeat != nil {
		s.onHeartbeat(ctx, owned)
	}
}

// Sweep claims one batch of unowned or stale executions, as many as the
// capacity allows, and resumes them. It returns how many it claimed.
func (s *Service) Sweep(ctx context.Context) int {
	limit := s.batchSize
	if s.capacity != nil {
		limit = min(limit, s.capacity())
	}
	if limit < 1 {
		return 0
	}
	claimed, err := s.store.ClaimExecutions(ctx, repository.ClaimParams{
		NodeID: s.nodeID, StaleThreshold: s.staleThreshold, Limit: limit, Definitions: s.definitions,
	})
	if err != nil {
		if ctx.Err() == nil {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "sweep", slog.String("node_id", s.nodeID), slog.String("error", err.Error()))
		}
		return 0
	}
	for i := range claimed {
		e := &claimed[i]
		s.logger.LogAttrs(ctx, slog.LevelInfo, "claimed execution", slog.String("execution_id", e.ExecutionID),
			slog.String("node_id", s.nodeID), slog.Int64("version", int64(e.Version)))
		if s.resumer != nil {
			if err := s.resumer.Resume(ctx, e); err != nil {
				s.logger.LogAttrs(ctx, slog.LevelError, "resuming execution", slog.String("execution_id", e.ExecutionID),
					slog.String("node_id", s.nodeID), slog.String("error", err.Error()))
			}
		}
	}
	return len(claimed)
}
