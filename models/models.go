package models

import (
	"time"

	"github.com/plexspaces/workflow/plugins/optimisticlock"
)

// WorkflowDefinition is one version of a workflow: its id, a human name and the
// definition document. (ID, Version) is the primary key.
type WorkflowDefinition struct {
	ID        string    `gorm:"column:id;primaryKey" json:"id"`
	Version   string    `gorm:"column:version;primaryKey" json:"version"`
	Name      string    `gorm:"column:name" json:"name"`
	Spec      JSON      `gorm:"column:definition" json:"spec,omitempty"`
	CreatedAt time.Time `gorm:"column:created_at" json:"created_at"`
	UpdatedAt time.Time `gorm:"column:updated_at" json:"updated_at"`
}

// TableName maps the model to its table.
func (WorkflowDefinition) TableName() string { return "workflow_definitions" }

// WorkflowExecution is one run of a workflow definition.
//
// Version is the optimistic lock: it starts at 1 and every state change bumps
// it, so a writer holding an old version learns of the conflict. Its type opts
// the model in to the optimisticlock plugin; it is stored as an integer and is
// a number in JSON. NodeID is the owner, the only node allowed to run the
// execution; LastHeartbeat is when the owner last said it is alive. An
// execution no node owns is claimable from its LastHeartbeat on: at once when
// it was created or handed back, at its due time when it is parked (it waits
// for a time or a signal, holding no node's slot).
type WorkflowExecution struct {
	ExecutionID       string                 `gorm:"column:execution_id;primaryKey" json:"execution_id"`
	DefinitionID      string                 `gorm:"column:definition_id" json:"definition_id"`
	DefinitionVersion string                 `gorm:"column:definition_version" json:"definition_version"`
	Status            ExecutionStatus        `gorm:"column:status" json:"status"`
	CurrentStepID     *string                `gorm:"column:current_step_id" json:"current_step_id,omitempty"`
	Input             JSON                   `gorm:"column:input" json:"input,omitempty"`
	Output            JSON                   `gorm:"column:output" json:"output,omitempty"`
	Error             *string                `gorm:"column:error" json:"error,omitempty"`
	NodeID            *string                `gorm:"column:node_id" json:"node_id,omitempty"`
	Version           optimisticlock.Version `gorm:"column:version" json:"version"`
	LastHeartbeat     *time.Time             `gorm:"column:last_heartbeat" json:"last_heartbeat,omitempty"`
	Metadata          JSON                   `gorm:"column:metadata" json:"metadata,omitempty"`
	Labels            map[string]string      `gorm:"-" json:"labels,omitempty"`
	CreatedAt         time.Time              `gorm:"column:created_at" json:"created_at"`
	UpdatedAt         time.Time              `gorm:"column:updated_at" json:"updated_at"`
	StartedAt         *time.Time             `gorm:"column:started_at" json:"started_at,omitempty"`
	CompletedAt       *time.Time             `gorm:"column:completed_at" json:"completed_at,omitempty"`
	// WaitSignal names the signal a parked execution waits for: nil while it
	// runs, or when it waits only for a time.
	WaitSignal *string `gorm:"column:wait_signal" json:"wait_signal,omitempty"`
}

// TableName maps the model to its table.
func (WorkflowExecution) TableName() string { return "workflow_executions" }

// ExecutionLabel is one key/value label of an execution; the repository reads
// them into WorkflowExecution.Labels.
type ExecutionLabel struct {
	ExecutionID string `gorm:"column:execution_id;primaryKey"`
	Key         string `gorm:"column:label_key;primaryKey"`
	Value       string `gorm:"column:label_value"`
}

// TableName maps the model to its table.
func (ExecutionLabel) TableName() string { return "workflow_execution_labels" }

// StepExecution is one attempt of one step of an execution. The rows of an
// execution are its journal: a COMPLETED row holds the output a resumed workflow
// gets back instead of running the step again.
type StepExecution struct {
	StepExecutionID string     `gorm:"column:step_execution_id;primaryKey" json:"step_execution_id"`
	ExecutionID     string     `gorm:"column:execution_id" json:"execution_id"`
	StepID          string     `gorm:"column:step_id" json:"step_id"`
	Status          StepStatus `gorm:"column:status" json:"status"`
	Input           JSON       `gorm:"column:input" json:"input,omitempty"`
	Output          JSON       `gorm:"column:output" json:"output,omitempty"`
	Error           *string    `gorm:"column:error" json:"error,omitempty"`
	Attempt         int        `gorm:"column:attempt" json:"attempt"`
	Metadata        JSON       `gorm:"column:metadata" json:"metadata,omitempty"`
	StartedAt       *time.Time `gorm:"column:started_at" json:"started_at,omitempty"`
	CompletedAt     *time.Time `gorm:"column:completed_at" json:"completed_at,omitempty"`
}

// TableName maps the model to its table.
func (StepExecution) TableName() string { return "step_executions" }

// Signal is a message sent to an execution, waiting to be consumed. Seq orders
// the signals of one (execution, name) first in, first out, even when several
// arrive within the clock's resolution.
type Signal struct {
	Seq         int64     `gorm:"column:seq;primaryKey;autoIncrement" json:"seq"`
	SignalID    string    `gorm:"column:signal_id" json:"signal_id"`
	ExecutionID string    `gorm:"column:execution_id" json:"execution_id"`
	Name        string    `gorm:"column:signal_name" json:"name"`
	Payload     JSON      `gorm:"column:payload" json:"payload,omitempty"`
	ReceivedAt  time.Time `gorm:"column:received_at" json:"received_at"`
}

// TableName maps the model to its table.
func (Signal) TableName() string { return "signals" }
