package models

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownStatus is returned when a string names no known status.
var ErrUnknownStatus = errors.New("models: unknown status")

// ExecutionStatus is where a workflow execution stands.
type ExecutionStatus string

// The statuses of a workflow execution. PENDING and RUNNING are live; the others
// are terminal.
const (
	ExecutionPending   ExecutionStatus = "PENDING"
	ExecutionRunning   ExecutionStatus = "RUNNING"
	ExecutionCompleted ExecutionStatus = "COMPLETED"
	ExecutionFailed    ExecutionStatus = "FAILED"
	ExecutionCancelled ExecutionStatus = "CANCELLED"
	ExecutionTimedOut  ExecutionStatus = "TIMED_OUT"
)

// ParseExecutionStatus reads a status case-insensitively. "TIMEDOUT" is accepted
// as TIMED_OUT; anything else unknown returns an error matching ErrUnknownStatus.
func ParseExecutionStatus(s string) (ExecutionStatus, error) {
	upper := strings.ToUpper(strings.TrimSpace(s))
	if upper == "TIMEDOUT" {
		return ExecutionTimedOut, nil
	}
	if st := ExecutionStatus(upper); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("parsing execution status %q: %w", s, ErrUnknownStatus)
}

// Valid reports whether s is one of the six execution statuses, spelled exactly.
func (s ExecutionStatus) Valid() bool {
	switch s {
	case ExecutionPending, ExecutionRunning, ExecutionCompleted,
		ExecutionFailed, ExecutionCancelled, ExecutionTimedOut:
		return true
	}
	return false
}

// Terminal reports whether an execution in status s will never run again.
func (s ExecutionStatus) Terminal() bool {
	switch s {
	case ExecutionCompleted, ExecutionFailed, ExecutionCancelled, ExecutionTimedOut:
		return true
	}
	return false
}

// LiveExecutionStatuses are the statuses of executions that some node should be
// running: the ones heartbeats and stale detection are about.
func LiveExecutionStatuses() []ExecutionStatus {
	return []ExecutionStatus{ExecutionPending, ExecutionRunning}
}

// StepStatus is where one attempt of a step stands.
type StepStatus string

// The statuses of a step execution.
const (
	StepPending   StepStatus = "PENDING"
	StepRunning   StepStatus = "RUNNING"
	StepCompleted StepStatus = "COMPLETED"
	StepFailed    StepStatus = "FAILED"
	StepRetrying  StepStatus = "RETRYING"
	StepCancelled StepStatus = "CANCELLED"
)

// ParseStepStatus reads a step status case-insensitively.
func ParseStepStatus(s string) (StepStatus, error) {
	if st := StepStatus(strings.ToUpper(strings.TrimSpace(s))); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("parsing step status %q: %w", s, ErrUnknownStatus)
}

// Valid reports whether s is one of the six step statuses, spelled exactly.
func (s StepStatus) Valid() bool {
	switch s {
	case StepPending, StepRunning, StepCompleted, StepFailed, StepRetrying, StepCancelled:
		return true
	}
	return false
}
