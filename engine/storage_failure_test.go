package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// flakyStorage fails the first StartStep and the first FinishExecution, as a
// database restart would.
type flakyStorage struct {
	*repository.Storage
	startFailures, finishFailures atomic.Int64
}

var errConnectionReset = errors.New("connection reset by peer")

func (f *flakyStorage) StartStep(ctx context.Context, p repository.StartStepParams) (*models.StepExecution, error) {
	if f.startFailures.Add(1) == 1 {
		return nil, errConnectionReset
	}
	return f.Storage.StartStep(ctx, p)
}

func (f *flakyStorage) FinishExecution(ctx context.Context, p repository.FinishExecutionParams) error {
	if f.finishFailures.Add(1) == 1 {
		return errConnectionReset
	}
	return f.Storage.FinishExecution(ctx, p)
}

// TestEngine_StorageFailureResumesLater: a checkpoint that fails for a reason
// other than fencing stops the workflow without failing it, and the engine
// resumes it when the storage answers again.
func TestEngine_StorageFailureResumesLater(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		flaky := &flakyStorage{Storage: s}
		var runs atomic.Int64
		e := engine.New(flaky, fast("n1"))
		require.NoError(t, e.Register(engine.Dynamic(def("flaky"), func(ctx *engine.Context, _ json.RawMessage) (any, error) {
			return engine.Step(ctx, "work", func(context.Context) (int64, error) { return runs.Add(1), nil })
		})))
		run(t, e)
		id, err := e.Start(t.Context(), "flaky", "v1", nil)
		require.NoError(t, err)
		exec := await(t, e, id)
		require.Equal(t, models.ExecutionCompleted, exec.Status, "error: %v", exec.Error)
		require.EqualValues(t, 1, runs.Load())
		require.GreaterOrEqual(t, flaky.finishFailures.Load(), int64(2), "the end was written on a second try")
	})
}
