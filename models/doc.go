// Package models holds the GORM models and value types of the workflow store:
// definitions, executions with their labels, step executions and signals.
//
// The entry types are [WorkflowExecution] and [StepExecution]; [ExecutionStatus]
// and [StepStatus] are their state machines' vocabularies and [JSON] is the column
// type for every JSON document. The package knows nothing of queries: the
// repository package reads and writes these types, and the migrations package
// owns the schema they map to.
package models
