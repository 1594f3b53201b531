package engine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/plexspaces/workflow/repository"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of Config's zero fields. A dead node's work is resumed elsewhere
// after about StaleThresholdDefault + PollIntervalDefault.
const (
	HeartbeatIntervalDefault = 2 * time.Second
	StaleThresholdDefault    = 10 * time.Second
	PollIntervalDefault      = time.Second
	MaxConcurrentDefault     = 64
	// DrainTimeoutDefault is how long a stopping engine lets running steps
	// finish before it ends their context.
	DrainTimeoutDefault = 10 * time.Second
	// MaxStepCrashesDefault is how many attempts of one step may die with their
	// node (leave no outcome) before the workflow is failed instead of resumed
	// again.
	MaxStepCrashesDefault = 5
)

// ErrInvalidConfig is returned by Run for a Config that cannot work.
var ErrInvalidConfig = errors.New("engine: invalid configuration")

// Config configures an Engine. The zero value works: every zero field takes
// its default.
type Config struct {
	// NodeID names this engine among those sharing the database; it must be
	// unique among live engines. Default: host name, process id and a random
	// suffix.
	NodeID string
	// HeartbeatInterval is how often the engine proves it is alive for the
	// executions it owns (default HeartbeatIntervalDefault).
	HeartbeatInterval time.Duration
	// StaleThreshold is how long without a heartbeat makes an execution
	// claimable by another engine (default StaleThresholdDefault). It must exceed
	// HeartbeatInterval; several times it is safest.
	StaleThreshold time.Duration
	// PollInterval is how often the engine looks for work nobody runs, checks
	// for signals and watches awaited executions (default PollIntervalDefault).
	PollInterval time.Duration
	// MaxConcurrent bounds the executions this engine runs at once (default
	// MaxConcurrentDefault).
	MaxConcurrent int
	// MaxStepCrashes bounds the attempts of one step that may die with their
	// node (default MaxStepCrashesDefault).
	MaxStepCrashes int
	// DrainTimeout is how long, once Run's context ends, steps already
	// running may go on before their context ends too (default
	// DrainTimeoutDefault). No new step starts meanwhile.
	DrainTimeout time.Duration
	// Logger receives the engine's logs (default: discard).
	Logger *slog.Logger
	// Clock is the time workflows wait by (default: the system clock).
	Clock Clock
	// InterceptStep, if set, runs around every step attempt (see
	// StepInterceptor).
	InterceptStep StepInterceptor
	// Retention, if positive, makes the engines purge the executions that
	// ended (COMPLETED, FAILED, CANCELLED or TIMED_OUT) more than Retention
	// ago, with their labels, journal and signals, in the background, one
	// node at a time (see retention.go). Zero, the default, keeps everything.
	Retention time.Duration

	// onPurge, if set, hears each background purge this engine made
	// (tests).
	onPurge func(repository.PurgeCounts, error)
	// TracerProvider makes the spans of runs, step attempts and waits
	// (default: otel.GetTracerProvider() when New is called, so an app that
	// set up OpenTelemetry gets traces with no code).
	TracerProvider trace.TracerProvider
	// MeterProvider makes the workflow.* metrics (default:
	// otel.GetMeterProvider() when New is called).
	MeterProvider metric.MeterProvider
}

func (c Config) withDefaults() Config {
	if c.NodeID == "" {
		c.NodeID = defaultNodeID()
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = HeartbeatIntervalDefault
	}
	if c.StaleThreshold == 0 {
		c.StaleThreshold = StaleThresholdDefault
	}
	if c.PollInterval == 0 {
		c.PollInterval = PollIntervalDefault
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = MaxConcurrentDefault
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DrainTimeoutDefault
	}
	if c.MaxStepCrashes == 0 {
		c.MaxStepCrashes = MaxStepCrashesDefault
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.HeartbeatInterval < 0 || c.StaleThreshold < 0 || c.PollInterval < 0 || c.MaxConcurrent < 0 || c.MaxStepCrashes < 0 || c.DrainTimeout < 0 || c.Retention < 0:
		return fmt.Errorf("negative setting: %w", ErrInvalidConfig)
	case c.StaleThreshold <= c.HeartbeatInterval:
		return fmt.Errorf("stale threshold %s must exceed heartbeat interval %s: %w", c.StaleThreshold, c.HeartbeatInterval, ErrInvalidConfig)
	}
	return nil
}

func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "node"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
