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
	"math"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Resumer continues an execution this node now owns.
type Resumer interface {
	Resume(ctx context.Context, exec *models.WorkflowExecution) error
}

// Report counts what RecoverOnStartup did. Total executions were taken on:
// Recovered were this node's own, Claimed had no owner, Transferred were taken
// from a stale node; Failed could not be resumed (or, for this node's own,
// not taken back). Executions another node took first, or that a live node
// owns, are not counted.
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
	fairShare         bool
	onFullClaim       func()
	onClaim           func()
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
// is fresh, then claims, a batch per statement, what is unowned and due or
// stale (this node's own stale work included), as the capacity
// (WithCapacity) and the fair share (WithFairShare) allow, and resumes it.
// It reads this node's executions and the stale ones, never every live
// execution. An execution another node took first is skipped quietly.
// Non-zero staleThreshold and heartbeatInterval also become the settings of
// a later Run.
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
	// Counted among the live nodes before its first claim; the rows of
	// nodes gone for long go.
	if err := s.store.BeatNode(ctx, s.nodeID); err != nil {
		// Not fatal: it only makes this node uncounted in the shares until
		// its next heartbeat beats again.
		s.warn(ctx, "node heartbeat", err)
	}
	if _, err := s.store.PruneNodes(ctx); err != nil {
		s.warn(ctx, "pruning nodes", err)
	}
	// What it runs (WithDefinitions; nothing: every definition), so that
	// other nodes' fair shares count it only for work it could take.
	if server, ok := s.store.(repository.DefinitionServer); ok {
		if err := server.ServeDefinitions(ctx, s.nodeID, s.definitions); err != nil {
			s.warn(ctx, "recording the definitions the node runs", err)
		}
	}
	mine, err := s.store.ListExecutionsByStatus(ctx, s.statuses, &s.nodeID)
	if err != nil {
		return report, fmt.Errorf("recovering node %s: %w", s.nodeID, err)
	}
	stale, err := s.store.ListStaleExecutions(ctx, s.staleThreshold, s.statuses)
	if err != nil {
		return report, fmt.Errorf("recovering node %s: %w", s.nodeID, err)
	}
	// Who owned each stale execution, to tell a transfer from a claim.
	staleOwner := make(map[string]string, len(stale))
	for _, e := range stale {
		staleOwner[e.ExecutionID] = ""
		if e.NodeID != nil {
			staleOwner[e.ExecutionID] = *e.NodeID
		}
	}
	for i := range mine {
		e := &mine[i]
		if _, isStale := staleOwner[e.ExecutionID]; isStale || !s.runs(e) {
			continue // stale: claimed below
		}
		report.Total++
		if err := s.store.UpdateHeartbeat(ctx, e.ExecutionID, s.nodeID); err != nil {
			s.skipOrFail(ctx, &report, e, err)
			continue
		}
		s.resume(ctx, &report, e, &report.Recovered)
	}
	// Batches until nothing more is claimable, there is no room, or (with
	// WithFairShare) the node has its share of the backlog as it was at
	// the start: each batch alone would take a share of what the others
	// left, and together all of it. Bounded: every batch takes at least
	// one execution.
	budget := s.startupShare(ctx)
	for range maxStartupBatches {
		if ctx.Err() != nil || budget < 1 {
			break // stopping, or its share is taken
		}
		claimed, ok := s.claimUpTo(ctx, budget)
		budget -= len(claimed)
		if !ok {
			break // logged; the sweeps of Run try again
		}
		for i := range claimed {
			e := &claimed[i]
			report.Total++
			counter := &report.Claimed
			if owner, isStale := staleOwner[e.ExecutionID]; isStale && owner != "" {
				counter = &report.Transferred
				if owner == s.nodeID {
					counter = &report.Recovered
				}
			}
			s.resume(ctx, &report, e, counter)
		}
		if len(claimed) == 0 || s.free() < 1 {
			break
		}
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "recovered on startup", slog.String("node_id", s.nodeID),
		slog.Int("total", report.Total), slog.Int("recovered", report.Recovered), slog.Int("claimed", report.Claimed),
		slog.Int("transferred", report.Transferred), slog.Int("failed", report.Failed))
	return report, nil
}

// claimTimeout bounds one claim, which does not end with its caller's
// context.
const claimTimeout = 30 * time.Second

// startupShare is how many executions RecoverOnStartup may claim: with
// WithFairShare, the backlog divided by the live nodes (this one included),
// at least one; else no bound.
func (s *Service) startupShare(ctx context.Context) int {
	if !s.fairShare {
		return math.MaxInt
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	p := repository.ClaimParams{NodeID: s.nodeID, StaleThreshold: s.staleThreshold, Definitions: s.definitions, Limit: s.batchSize}
	backlog, nodes, err := s.store.Backlog(cctx, p)
	if err != nil || backlog == 0 {
		return math.MaxInt // the batches' own bounds decide
	}
	return max((backlog+max(nodes, 1)-1)/max(nodes, 1), 1)
}

// maxStartupBatches bounds RecoverOnStartup's claims; later sweeps take the
// rest.
const maxStartupBatches = 1000

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
	if err := s.store.BeatNode(ctx, s.nodeID); err != nil {
		s.warn(ctx, "node heartbeat", err)
	}
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
// capacity and the fair share allow, and resumes them. It returns how many
// it claimed.
func (s *Service) Sweep(ctx context.Context) int {
	claimed, _ := s.claim(ctx)
	for i := range claimed {
		e := &claimed[i]
		if s.resumer != nil {
			if err := s.resumer.Resume(ctx, e); err != nil {
				s.logger.LogAttrs(ctx, slog.LevelError, "resuming execution", slog.String("execution_id", e.ExecutionID),
					slog.String("node_id", s.nodeID), slog.String("error", err.Error()))
			}
		}
	}
	return len(claimed)
}

// free is how many more executions this node can take now.
func (s *Service) free() int {
	if s.capacity == nil {
		return s.batchSize
	}
	return s.capacity()
}

// claim takes one batch: at most the batch size, the free capacity and,
// with WithFairShare, the backlog divided by the live nodes (at least one).
// It reports false when the storage failed.
func (s *Service) claim(ctx context.Context) ([]models.WorkflowExecution, bool) {
	return s.claimUpTo(ctx, s.batchSize)
}

// claimUpTo is claim with a bound of its caller's (RecoverOnStartup's
// remaining fair share).
func (s *Service) claimUpTo(ctx context.Context, bound int) ([]models.WorkflowExecution, bool) {
	limit := min(s.batchSize, s.free(), bound)
	if limit < 1 {
		// No room: nothing is learnt, and the hooks' flag stays as the last
		// claim and the node's events left it. Setting it here made a node
		// that is merely busy sweep after every run it ends (at a short
		// sweep interval, almost every run); work nobody announced waits for
		// the next sweep after a slot frees instead.
		return nil, true
	}
	if ctx.Err() != nil {
		return nil, true
	}
	// A claim that commits must reach the caller, who resumes (or hands
	// back) what it took: the statement does not end with ctx, or it could
	// commit unseen and leave executions owned by a node that does not run
	// them, until they go stale.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	p := repository.ClaimParams{NodeID: s.nodeID, StaleThreshold: s.staleThreshold, Definitions: s.definitions, Limit: limit}
	if s.fairShare && limit > 1 { // a share is at least one: nothing to count for one
		backlog, nodes, err := s.store.Backlog(ctx, p)
		if err != nil {
			s.warn(ctx, "counting the backlog", err)
			return nil, false
		}
		// The count is of work due by time; parked work a signal made due
		// is not in it, so with nothing counted the free slots decide.
		if backlog > 0 {
			share := (backlog + max(nodes, 1) - 1) / max(nodes, 1)
			limit = min(limit, share)
		}
	}
	p.Limit = limit
	if s.onClaim != nil {
		s.onClaim()
	}
	claimed, err := s.store.ClaimExecutions(ctx, p)
	if err != nil {
		if s.onFullClaim != nil {
			s.onFullClaim() // nothing was looked at: what waited may still wait
		}
		s.warn(ctx, "sweep", err)
		return nil, false
	}
	if len(claimed) == limit && s.onFullClaim != nil {
		s.onFullClaim() // more may be waiting: sweep again as slots free
	}
	for i := range claimed {
		s.logger.LogAttrs(ctx, slog.LevelInfo, "claimed execution", slog.String("execution_id", claimed[i].ExecutionID),
			slog.String("node_id", s.nodeID), slog.Int64("version", int64(claimed[i].Version)))
	}
	return claimed, true
}

// warn logs a failed storage call, unless ctx ended (then it is expected).
func (s *Service) warn(ctx context.Context, what string, err error) {
	if ctx.Err() == nil {
		s.logger.LogAttrs(ctx, slog.LevelWarn, what, slog.String("node_id", s.nodeID), slog.String("error", err.Error()))
	}
}
