package recovery

import (
	"context"
	"log/slog"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Defaults of a Service; Run uses them unless an option or RecoverOnStartup's
// arguments say otherwise. A node is presumed dead after StaleThresholdDefault
// without a heartbeat: five missed beats, so one slow beat is not a death.
const (
	HeartbeatIntervalDefault = 2 * time.Second
	StaleThresholdDefault    = 10 * time.Second
	SweepIntervalDefault     = 2 * time.Second
	BatchSizeDefault         = 32
)

// Option configures a Service.
type Option func(*Service)

// WithResumer sets who continues the executions the service recovers or
// claims. Without one, they are only taken over.
func WithResumer(r Resumer) Option { return func(s *Service) { s.resumer = r } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.logger = l } }

// WithStatuses sets the statuses RecoverOnStartup considers (default PENDING
// and RUNNING).
func WithStatuses(statuses ...models.ExecutionStatus) Option {
	return func(s *Service) { s.statuses = statuses }
}

// WithHeartbeatInterval sets how often Run beats for the node's executions
// (default HeartbeatIntervalDefault).
func WithHeartbeatInterval(d time.Duration) Option {
	return func(s *Service) { s.heartbeatInterval = d }
}

// WithStaleThreshold sets how long without a heartbeat makes an execution
// claimable (default StaleThresholdDefault). Keep it several heartbeat
// intervals long.
func WithStaleThreshold(d time.Duration) Option { return func(s *Service) { s.staleThreshold = d } }

// WithSweepInterval sets how often Run looks for work to claim (default
// SweepIntervalDefault).
func WithSweepInterval(d time.Duration) Option { return func(s *Service) { s.sweepInterval = d } }

// WithBatchSize bounds how many executions one sweep claims (default
// BatchSizeDefault).
func WithBatchSize(n int) Option { return func(s *Service) { s.batchSize = n } }

// WithCapacity tells a sweep how many more executions the node can take; a
// sweep claims no more than that. Default: unbounded.
func WithCapacity(free func() int) Option { return func(s *Service) { s.capacity = free } }

// WithHeartbeatHook is called after every heartbeat with the ids of the live
// executions the node still owns, so a caller can stop work it lost.
func WithHeartbeatHook(hook func(ctx context.Context, owned []string)) Option {
	return func(s *Service) { s.onHeartbeat = hook }
}

// WithRunning makes the heartbeat cover only the executions running returns
// (those the node runs, or is about to resume), instead of every live
// execution it owns: what it owns but gave up on then goes stale, and any
// node may take it over. Default: beat everything the node owns.
func WithRunning(running func() []string) Option { return func(s *Service) { s.running = running } }

// WithSweepTrigger lets a caller ask for a sweep now, by sending on the
// channel, instead of at the next tick.
func WithSweepTrigger(now <-chan struct{}) Option { return func(s *Service) { s.sweepNow = now } }

// WithDefinitions restricts recovery and sweeps to executions of these
// definitions, the ones the node can run (default: all).
func WithDefinitions(defs ...repository.DefinitionKey) Option {
	return func(s *Service) { s.definitions = defs }
}

// WithFairShare makes every sweep claim at most its share of the backlog:
// the executions claimable now divided by the nodes alive (those that beat
// within the stale threshold, idle ones too) that could take them (on a
// storage that implements repository.DefinitionServer, a node that runs
// none of this node's definitions is not counted), at least one, so that a
// node does not take all the queued work while its peers sit idle. It costs
// one counting statement per sweep.
func WithFairShare() Option { return func(s *Service) { s.fairShare = true } }

// WithFullClaimHook calls fn whenever a claim took all it was allowed to (or
// failed): more work may be waiting, so the node should sweep again as soon
// as a slot frees rather than at its next sweep interval. A sweep with no
// room claims nothing and calls neither hook.
func WithFullClaimHook(fn func()) Option { return func(s *Service) { s.onFullClaim = fn } }

// WithClaimHook calls fn right before every claim statement (a sweep with
// room to claim): what was waiting until then, the claim sees. With
// WithFullClaimHook a caller keeps a "work may wait" flag that costs no
// claims once nothing waits: cleared here, set again by a full claim or by
// whatever new work the caller learns of.
func WithClaimHook(fn func()) Option { return func(s *Service) { s.onClaim = fn } }
