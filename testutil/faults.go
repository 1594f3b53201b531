package testutil

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// ErrInjected is the error a Fault returns unless it names its own.
var ErrInjected = errors.New("testutil: injected storage fault")

// Fault is one failure or stall of one storage method, for FaultyStorage.
type Fault struct {
	// Method is the WorkflowStorage method's name, e.g. "StartStep".
	Method string
	// Call is the call it hits, counting from 1; 0 hits every call.
	Call int
	// Delay stalls the call this long first (or until its context ends).
	Delay time.Duration
	// Err is what the call returns (ErrInjected when nil and Fail is set).
	Err error
	// Fail makes the call fail. With After, the real call runs and commits
	// first, and only its answer is lost, as when a connection dies between
	// COMMIT and its acknowledgement.
	Fail, After bool
}

// FaultyStorage wraps a WorkflowStorage and fails or stalls chosen calls of
// the methods a running engine checkpoints through. The other methods pass
// through. It is safe for concurrent use.
type FaultyStorage struct {
	repository.WorkflowStorage

	mu     sync.Mutex
	faults []Fault
	calls  map[string]int
}

var _ repository.WorkflowStorage = (*FaultyStorage)(nil)

// NewFaultyStorage wraps s with the given faults.
func NewFaultyStorage(s repository.WorkflowStorage, faults ...Fault) *FaultyStorage {
	return &FaultyStorage{WorkflowStorage: s, faults: faults, calls: map[string]int{}}
}

// Calls returns how many times method was called.
func (f *FaultyStorage) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// call counts a call and runs the real one (do), applying the faults that hit it.
func (f *FaultyStorage) call(ctx context.Context, method string, do func() error) error {
	f.mu.Lock()
	f.calls[method]++
	n := f.calls[method]
	var hits []Fault
	for _, ft := range f.faults {
		if ft.Method == method && (ft.Call == 0 || ft.Call == n) {
			hits = append(hits, ft)
		}
	}
	f.mu.Unlock()
	var fail error
	after := false
	for _, ft := range hits {
		if ft.Delay > 0 {
			t := time.NewTimer(ft.Delay)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		if ft.Fail || ft.Err != nil {
			fail = ft.Err
			if fail == nil {
				fail = ErrInjected
			}
			after = ft.After
		}
	}
	if fail != nil && !after {
		return fail
	}
	err := do()
	if fail != nil {
		return fail
	}
	return err
}

// StartStep implements repository.OwnerRepository.
func (f *FaultyStorage) StartStep(ctx context.Context, p repository.StartStepParams) (step *models.StepExecution, err error) {
	err = f.call(ctx, "StartStep", func() error { step, err = f.WorkflowStorage.StartStep(ctx, p); return err })
	return step, err
}

// FinishStep implements repository.OwnerRepository.
func (f *FaultyStorage) FinishStep(ctx context.Context, p repository.FinishStepParams) error {
	return f.call(ctx, "FinishStep", func() error { return f.WorkflowStorage.FinishStep(ctx, p) })
}

// ReceiveSignal implements repository.OwnerRepository.
func (f *FaultyStorage) ReceiveSignal(ctx context.Context, p repository.ReceiveSignalParams) (step *models.StepExecution, ok bool, err error) {
	err = f.call(ctx, "ReceiveSignal", func() error { step, ok, err = f.WorkflowStorage.ReceiveSignal(ctx, p); return err })
	return step, ok, err
}

// FinishExecution implements repository.OwnerRepository.
func (f *FaultyStorage) FinishExecution(ctx context.Context, p repository.FinishExecutionParams) error {
	return f.call(ctx, "FinishExecution", func() error { return f.WorkflowStorage.FinishExecution(ctx, p) })
}

// ReleaseExecution implements repository.OwnerRepository.
func (f *FaultyStorage) ReleaseExecution(ctx context.Context, executionID, nodeID string) error {
	return f.call(ctx, "ReleaseExecution", func() error { return f.WorkflowStorage.ReleaseExecution(ctx, executionID, nodeID) })
}

// ParkExecution implements repository.OwnerRepository.
func (f *FaultyStorage) ParkExecution(ctx context.Context, p repository.ParkParams) error {
	return f.call(ctx, "ParkExecution", func() error { return f.WorkflowStorage.ParkExecution(ctx, p) })
}

// BeatNode implements repository.OwnerRepository.
func (f *FaultyStorage) BeatNode(ctx context.Context, nodeID string) error {
	return f.call(ctx, "BeatNode", func() error { return f.WorkflowStorage.BeatNode(ctx, nodeID) })
}

// Backlog implements repository.OwnerRepository.
func (f *FaultyStorage) Backlog(ctx context.Context, p repository.ClaimParams) (claimable, liveNodes int, err error) {
	err = f.call(ctx, "Backlog", func() error { claimable, liveNodes, err = f.WorkflowStorage.Backlog(ctx, p); return err })
	return claimable, liveNodes, err
}

// HeartbeatNode implements repository.OwnerRepository.
func (f *FaultyStorage) HeartbeatNode(ctx context.Context, nodeID string) (ids []string, err error) {
	err = f.call(ctx, "HeartbeatNode", func() error { ids, err = f.WorkflowStorage.HeartbeatNode(ctx, nodeID); return err })
	return ids, err
}

// HeartbeatExecutions implements repository.OwnerRepository.
func (f *FaultyStorage) HeartbeatExecutions(ctx context.Context, nodeID string, executionIDs []string) (ids []string, err error) {
	err = f.call(ctx, "HeartbeatExecutions", func() error {
		ids, err = f.WorkflowStorage.HeartbeatExecutions(ctx, nodeID, executionIDs)
		return err
	})
	return ids, err
}

// ClaimExecutions implements repository.OwnerRepository.
func (f *FaultyStorage) ClaimExecutions(ctx context.Context, p repository.ClaimParams) (execs []models.WorkflowExecution, err error) {
	err = f.call(ctx, "ClaimExecutions", func() error { execs, err = f.WorkflowStorage.ClaimExecutions(ctx, p); return err })
	return execs, err
}

// GetStepExecutionHistory implements repository.StepRepository.
func (f *FaultyStorage) GetStepExecutionHistory(ctx context.Context, executionID string) (steps []models.StepExecution, err error) {
	err = f.call(ctx, "GetStepExecutionHistory", func() error {
		steps, err = f.WorkflowStorage.GetStepExecutionHistory(ctx, executionID)
		return err
	})
	return steps, err
}

// GetExecution implements repository.ExecutionRepository.
func (f *FaultyStorage) GetExecution(ctx context.Context, executionID string) (exec *models.WorkflowExecution, err error) {
	err = f.call(ctx, "GetExecution", func() error { exec, err = f.WorkflowStorage.GetExecution(ctx, executionID); return err })
	return exec, err
}

// UpdateExecutionStatusWithVersion implements repository.ExecutionRepository.
func (f *FaultyStorage) UpdateExecutionStatusWithVersion(ctx context.Context, executionID string, status models.ExecutionStatus, expectedVersion *int64) error {
	return f.call(ctx, "UpdateExecutionStatusWithVersion", func() error {
		return f.WorkflowStorage.UpdateExecutionStatusWithVersion(ctx, executionID, status, expectedVersion)
	})
}

// SaveDefinition implements repository.DefinitionRepository.
func (f *FaultyStorage) SaveDefinition(ctx context.Context, def *models.WorkflowDefinition) error {
	return f.call(ctx, "SaveDefinition", func() error { return f.WorkflowStorage.SaveDefinition(ctx, def) })
}
