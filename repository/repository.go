package repository

import (
	"context"
	"time"

	"github.com/plexspaces/workflow/models"
)

// NewExecution is the input of CreateExecution.
type NewExecution struct {
	// ExecutionID is optional: a caller-chosen id makes creation idempotent
	// (creating an existing id returns ErrAlreadyExists). Generated ids are
	// UUIDv7 strings, which sort by creation time.
	ExecutionID string
	// DefinitionID and DefinitionVersion name a saved definition.
	DefinitionID, DefinitionVersion string
	// Input is marshalled with encoding/json; []byte, json.RawMessage and
	// models.JSON are stored as they are if they hold valid JSON.
	Input any
	// Labels are stored with the execution, in the same transaction.
	Labels map[string]string
	// Metadata, if set, is stored in the execution's metadata column,
	// encoded as Input is. The engine keeps the W3C trace context of the
	// Start call there ({"traceparent": ...}).
	Metadata any
	// NodeID is the optional owner.
	NodeID string
	// Running, with NodeID, creates the execution RUNNING (started_at set)
	// rather than PENDING: its owner runs it at once, as the engine does
	// with a workflow it starts itself, so that its first step need not
	// change the status (on PostgreSQL that write then stays heap-only).
	Running bool
	// Definition, if set, is stored first in the same transaction when the
	// database lacks (DefinitionID, DefinitionVersion); an existing
	// definition is left as it is. Without it, a missing definition is
	// ErrNotFound.
	Definition *models.WorkflowDefinition
}

// ExecutionFilter selects executions for ListExecutions; zero fields do not filter.
type ExecutionFilter struct {
	Statuses     []models.ExecutionStatus
	NodeID       string
	DefinitionID string
	// DefinitionVersion selects one version of DefinitionID; it needs
	// DefinitionID.
	DefinitionVersion string
	// CreatedSince, if not zero, selects executions created at or after it.
	CreatedSince time.Time
	// Labels must all match.
	Labels map[string]string
	// Limit is the page size: ListLimitDefault when zero, at most ListLimitMax.
	Limit int
	// After is the keyset cursor: the ExecutionID of the last row of the previous
	// page. Results are ordered by ExecutionID.
	After string
}

// Page sizes of ListExecutions.
const (
	ListLimitDefault = 100
	ListLimitMax     = 1000
)

// DefinitionRepository stores workflow definitions.
type DefinitionRepository interface {
	// SaveDefinition inserts def, or updates its name and spec if (ID, Version)
	// exists; def's timestamps are filled from the stored row.
	SaveDefinition(ctx context.Context, def *models.WorkflowDefinition) error
	GetDefinition(ctx context.Context, id, version string) (*models.WorkflowDefinition, error)
	// ListDefinitions returns the definitions whose name starts with namePrefix
	// (case-sensitive; "" lists all), ordered by name, id and version.
	ListDefinitions(ctx context.Context, namePrefix string) ([]models.WorkflowDefinition, error)
	// DeleteDefinition deletes one version, or every version when version is "".
	// A definition that executions still reference returns ErrInUse.
	DeleteDefinition(ctx context.Context, id, version string) error
}

// ExecutionRepository stores workflow executions, their ownership and health.
type ExecutionRepository interface {
	// CreateExecution stores a PENDING execution at version 1 with its labels
	// (and in.Definition if the database lacks it), in one transaction, and
	// returns it as stored. An existing id is ErrAlreadyExists and a missing
	// definition ErrNotFound, neither a failed statement in the app's log.
	CreateExecution(ctx context.Context, in NewExecution) (*models.WorkflowExecution, error)
	// GetExecution returns the execution with its labels.
	GetExecution(ctx context.Context, executionID string) (*models.WorkflowExecution, error)
	// UpdateExecutionStatus sets the status without a version check; see
	// UpdateExecutionStatusWithVersion for what else it sets.
	UpdateExecutionStatus(ctx context.Context, executionID string, status models.ExecutionStatus) error
	// UpdateExecutionStatusWithVersion sets the status and bumps the version;
	// with a non-nil expectedVersion it fails with ErrConcurrentUpdate if the
	// stored version differs. RUNNING also sets last_heartbeat and, the first
	// time, started_at; a terminal status sets completed_at.
	UpdateExecutionStatusWithVersion(ctx context.Context, executionID string, status models.ExecutionStatus, expectedVersion *int64) error
	// UpdateExecutionOutput stores the output, with the same version rules.
	UpdateExecutionOutput(ctx context.Context, executionID string, output any, expectedVersion *int64) error
	// UpdateHeartbeat records that nodeID is alive and running the execution. It
	// does not bump the version. If nodeID is not the owner, nothing changes and
	// the error is ErrConcurrentUpdate.
	UpdateHeartbeat(ctx context.Context, executionID, nodeID string) error
	// ListStaleExecutions returns executions in the given statuses (PENDING and
	// RUNNING when none are given) whose last heartbeat is older than threshold by
	// the database's clock, oldest heartbeat first.
	ListStaleExecutions(ctx context.Context, threshold time.Duration, statuses []models.ExecutionStatus) ([]models.WorkflowExecution, error)
	// ListExecutionsByStatus returns executions in the given statuses (any status
	// when none are given), of one owner when nodeID is non-nil, oldest first.
	ListExecutionsByStatus(ctx context.Context, statuses []models.ExecutionStatus, nodeID *string) ([]models.WorkflowExecution, error)
	// TransferOwnership makes newOwner the owner if the stored version is
	// expectedVersion, bumps the version and refreshes the heartbeat.
	TransferOwnership(ctx context.Context, executionID, newOwner string, expectedVersion int64) error
	// ListExecutions returns one page of executions matching f, with labels.
	ListExecutions(ctx context.Context, f ExecutionFilter) ([]models.WorkflowExecution, error)
}

// StepRepository stores step executions, the journal of each execution.
type StepRepository interface {
	// CreateStepExecution records that an attempt (from 1) of a step started; it
	// is RUNNING. A second row for the same (execution, step, attempt) returns
	// ErrAlreadyExists.
	CreateStepExecution(ctx context.Context, executionID, stepID string, input any, attempt int) (*models.StepExecution, error)
	// CompleteStepExecution records how the attempt ended.
	CompleteStepExecution(ctx context.Context, stepExecutionID string, status models.StepStatus, output any, errMsg string) error
	GetStepExecution(ctx context.Context, stepExecutionID string) (*models.StepExecution, error)
	// GetStepExecutionHistory returns an execution's steps in the order they started.
	GetStepExecutionHistory(ctx context.Context, executionID string) ([]models.StepExecution, error)
}

// SignalRepository stores signals sent to executions, first in, first out per
// (execution, name).
type SignalRepository interface {
	// SendSignal stores a signal for a live (PENDING or RUNNING) execution.
	// An unknown execution is ErrNotFound, an ended one ErrExecutionEnded.
	SendSignal(ctx context.Context, executionID, name string, payload any) error
	// CheckSignal returns the oldest signal without consuming it.
	CheckSignal(ctx context.Context, executionID, name string) (models.Signal, bool, error)
	// ConsumeSignal removes and returns the oldest signal; of many concurrent
	// consumers, exactly one gets each signal.
	ConsumeSignal(ctx context.Context, executionID, name string) (models.Signal, bool, error)
}

// WorkflowStorage is everything the engine and the recovery service need from
// storage. Storage implements it; tests may fake it.
type WorkflowStorage interface {
	DefinitionRepository
	ExecutionRepository
	StepRepository
	SignalRepository
	OwnerRepository
}

var _ WorkflowStorage = (*Storage)(nil)
