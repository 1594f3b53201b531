// Package manage is the management API of workflow executions: what an
// operator, a CLI (cmd/workflowctl) or an admin page needs to see which
// executions run, where and why one failed, and to cancel, signal, retry or
// purge them. It works with or without an engine running in the process:
// everything goes through the database, and running engines notice.
//
// [New] returns a [Client] on a [Store], which *repository.Storage is:
//
//	store, err := repository.Open(ctx, dsn)
//	...
//	c := manage.New(store)
//	page, err := c.List(ctx, manage.Filter{Statuses: []models.ExecutionStatus{models.ExecutionFailed}})
//	for _, x := range page.Executions {
//		if _, err := c.Retry(ctx, x.ExecutionID); err != nil { ... }
//	}
//
// Every write is one statement or one transaction, fenced like the engine's
// own (see [Client.Retry] and [Client.Purge]). Errors wrap the repository's
// sentinels, re-exported here: match them with errors.Is ([ErrNotFound],
// [ErrInvalidArgument], [ErrConcurrentUpdate], [ErrExecutionEnded],
// [ErrNotRetryable]).
package manage

import (
	"context"
	"fmt"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Errors of the Client's methods, the repository's own; match them with
// errors.Is.
var (
	// ErrNotFound: no execution has the id.
	ErrNotFound = repository.ErrNotFound
	// ErrInvalidArgument: the input was rejected before any SQL ran.
	ErrInvalidArgument = repository.ErrInvalidArgument
	// ErrConcurrentUpdate: the execution kept changing under Cancel.
	ErrConcurrentUpdate = repository.ErrConcurrentUpdate
	// ErrExecutionEnded: a signal to an execution that has ended.
	ErrExecutionEnded = repository.ErrExecutionEnded
	// ErrNotRetryable: a retry of a live or COMPLETED execution.
	ErrNotRetryable = repository.ErrNotRetryable
)

// PurgeCounts is what Purge deleted, or in a dry run would delete.
type PurgeCounts = repository.PurgeCounts

// NodeInfo is one node, as Nodes reports it.
type NodeInfo = repository.NodeInfo

// Store is what a Client needs from storage; *repository.Storage
// implements it, and tests may fake it.
type Store interface {
	repository.ManageRepository
	ListExecutions(ctx context.Context, f repository.ExecutionFilter) ([]models.WorkflowExecution, error)
	GetExecution(ctx context.Context, executionID string) (*models.WorkflowExecution, error)
	GetStepExecutionHistory(ctx context.Context, executionID string) ([]models.StepExecution, error)
	UpdateExecutionStatusWithVersion(ctx context.Context, executionID string, status models.ExecutionStatus, expectedVersion *int64) error
	SendSignal(ctx context.Context, executionID, name string, payload any) error
	ListStaleExecutions(ctx context.Context, threshold time.Duration, statuses []models.ExecutionStatus) ([]models.WorkflowExecution, error)
}

var _ Store = (*repository.Storage)(nil)

// Client is the management API on one database. It holds no state of its
// own beyond its store and is safe for concurrent use.
type Client struct {
	store Store
}

// New returns a Client on store.
func New(store Store) *Client { return &Client{store: store} }

// Filter selects executions for List; zero fields do not filter.
type Filter struct {
	// Statuses, if any, must include the execution's.
	Statuses []models.ExecutionStatus
	// DefinitionID and DefinitionVersion select a workflow, or one version
	// of it; a version needs the id.
	DefinitionID, DefinitionVersion string
	// Labels must all match.
	Labels map[string]string
	// NodeID selects the executions a node owns.
	NodeID string
	// CreatedSince selects executions created at or after it.
	CreatedSince time.Time
	// Limit is the page size: repository.ListLimitDefault (100) when zero, at
	// most repository.ListLimitMax (1000).
	Limit int
	// After is the cursor: the Next of the previous page.
	After string
}

// Page is one page of List.
type Page struct {
	// Executions are ordered by execution id (ids made by the library
	// sort by creation time), each with its labels.
	Executions []models.WorkflowExecution `json:"executions"`
	// Next is the cursor of the next page, "" on the last. A full page
	// always has one, so the page after it may be empty.
	Next string `json:"next,omitempty"`
}

// List returns one page of the executions f selects, by keyset paging on the
// execution id: pages stay consistent while executions are added.
func (c *Client) List(ctx context.Context, f Filter) (Page, error) {
	limit := f.Limit
	if limit == 0 {
		limit = repository.ListLimitDefault
	}
	execs, err := c.store.ListExecutions(ctx, repository.ExecutionFilter{
		Statuses: f.Statuses, NodeID: f.NodeID, DefinitionID: f.DefinitionID, DefinitionVersion: f.DefinitionVersion,
		CreatedSince: f.CreatedSince, Labels: f.Labels, Limit: f.Limit, After: f.After,
	})
	if err != nil {
		return Page{}, err
	}
	page := Page{Executions: execs}
	if page.Executions == nil {
		page.Executions = []models.WorkflowExecution{}
	}
	if len(execs) == limit {
		page.Next = execs[len(execs)-1].ExecutionID
	}
	return page, nil
}

// Detail is one execution with its journal and the signals it has not
// consumed.
type Detail struct {
	// Execution holds its labels.
	Execution models.WorkflowExecution `json:"execution"`
	// Steps is the journal, in the order the attempts started; rows a retry
	// retired have step ids starting with "retried:" (see Client.Retry).
	Steps []models.StepExecution `json:"steps"`
	// PendingSignals are the stored signals not consumed yet, oldest first.
	PendingSignals []models.Signal `json:"pending_signals"`
}

// Get returns an execution with its labels, journal and pending signals.
// The three are read one after the other, not as one snapshot.
func (c *Client) Get(ctx context.Context, executionID string) (*Detail, error) {
	exec, err := c.store.GetExecution(ctx, executionID)
	if err != nil {
		return nil, err
	}
	steps, err := c.store.GetStepExecutionHistory(ctx, executionID)
	if err != nil {
		return nil, err
	}
	signals, err := c.store.ListPendingSignals(ctx, executionID)
	if err != nil {
		return nil, err
	}
	d := &Detail{Execution: *exec, Steps: steps, PendingSignals: signals}
	if d.Steps == nil {
		d.Steps = []models.StepExecution{}
	}
	if d.PendingSignals == nil {
		d.PendingSignals = []models.Signal{}
	}
	return d, nil
}

// Cancel marks a live execution CANCELLED, as engine.Engine.Cancel does: a
// version-checked write, tried again while the execution changes under it.
// The node that runs it stops it at its next heartbeat or step, or at once
// where the database pushes the change (PostgreSQL), waking it from Sleep or
// AwaitSignal. Cancelling an execution that has ended changes nothing and
// returns nil.
func (c *Client) Cancel(ctx context.Context, executionID string) error {
	return repository.CancelExecution(ctx, c.store, executionID)
}

// Signal sends a signal to a live execution; its AwaitSignal(name) receives
// payload, which is stored as JSON (json.RawMessage and []byte holding JSON
// are stored as they are). An execution that has ended is
// ErrExecutionEnded, an unknown one ErrNotFound.
func (c *Client) Signal(ctx context.Context, executionID, name string, payload any) error {
	if err := c.store.SendSignal(ctx, executionID, name, payload); err != nil {
		return fmt.Errorf("signalling execution %s: %w", executionID, err)
	}
	return nil
}

// Retry makes a FAILED, CANCELLED or TIMED_OUT execution run again from its
// first step that did not complete, and returns it as it now is: PENDING,
// unowned, with a version bump, due at once for any engine that runs its
// workflow. Completed steps keep their results and do not run again; the
// journal rows of steps that did not complete stay in the history under
// "retried:<version>/<step id>" (see repository.Storage.RetryExecution). A
// live or COMPLETED execution is ErrNotRetryable; of concurrent retries of
// one execution, exactly one succeeds.
func (c *Client) Retry(ctx context.Context, executionID string) (*models.WorkflowExecution, error) {
	return c.store.RetryExecution(ctx, executionID)
}

// PurgeOptions says which ended executions Purge deletes. Exactly one of
// OlderThan and EndedBefore sets the cutoff.
type PurgeOptions struct {
	// OlderThan purges executions that ended more than this long ago.
	OlderThan time.Duration
	// EndedBefore purges executions that ended before this time.
	EndedBefore time.Time
	// BatchSize is how many executions each short transaction deletes:
	// repository.PurgeBatchSizeDefault (500) when zero, at most
	// repository.PurgeBatchSizeMax (5000).
	BatchSize int
	// DryRun counts what would be purged and deletes nothing.
	DryRun bool
	// Progress, if set, hears the running totals after every batch.
	Progress func(PurgeCounts)
}

// Purge deletes the executions that ended (COMPLETED, FAILED, CANCELLED or
// TIMED_OUT) before the cutoff, with their labels, steps and signals, in
// batches of short transactions, and returns the counts. A live execution
// is never deleted, not even one a concurrent Retry revives. After a failed
// batch it returns what the committed batches deleted, with the error.
func (c *Client) Purge(ctx context.Context, o PurgeOptions) (PurgeCounts, error) {
	return c.store.PurgeExecutions(ctx, repository.PurgeParams{
		OlderThan: o.OlderThan, EndedBefore: o.EndedBefore, BatchSize: o.BatchSize, DryRun: o.DryRun, Progress: o.Progress,
	})
}

// Nodes returns the nodes that beat within the last week, ordered by id,
// with their last beat and the live executions each owns. A node whose
// LastSeen is older than a few heartbeat intervals has stopped.
func (c *Client) Nodes(ctx context.Context) ([]NodeInfo, error) {
	nodes, err := c.store.ListNodes(ctx)
	if nodes == nil && err == nil {
		nodes = []NodeInfo{}
	}
	return nodes, err
}

// Stale returns the live executions whose heartbeat is older than
// threshold by the database's clock, oldest first: owned by a node that
// stopped beating, or unowned and due (waiting for a node to claim them).
// threshold must be positive.
func (c *Client) Stale(ctx context.Context, threshold time.Duration) ([]models.WorkflowExecution, error) {
	if threshold <= 0 {
		return nil, fmt.Errorf("stale threshold %s (want > 0): %w", threshold, ErrInvalidArgument)
	}
	execs, err := c.store.ListStaleExecutions(ctx, threshold, nil)
	if execs == nil && err == nil {
		execs = []models.WorkflowExecution{}
	}
	return execs, err
}
