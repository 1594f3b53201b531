package repository

import (
	"context"
	"fmt"

	"github.com/plexspaces/workflow/models"
)

// InsertStepSQL is the statement CreateStepExecution runs.
const InsertStepSQL = `INSERT INTO step_executions ` +
	`(step_execution_id, execution_id, step_id, status, input, attempt, started_at) ` +
	`VALUES (?, ?, ?, ?, ?, ?, ?)` + returningStep

// CreateStepExecution implements StepRepository.
func (s *Storage) CreateStepExecution(ctx context.Context, executionID, stepID string, input any, attempt int) (*models.StepExecution, error) {
	if err := checkID("execution id", executionID); err != nil {
		return nil, err
	}
	if err := checkID("step id", stepID); err != nil {
		return nil, err
	}
	if attempt < 1 {
		return nil, fmt.Errorf("step attempt %d (attempts start at 1): %w", attempt, ErrInvalidArgument)
	}
	in, err := encodeJSON("step input", input)
	if err != nil {
		return nil, err
	}
	var step models.StepExecution
	err = s.query(ctx).Raw(InsertStepSQL, newID(), executionID, stepID, models.StepRunning, in, attempt, s.dialect.now()).
		Scan(&step).Error
	switch {
	case s.dialect.isUniqueViolation(err):
		return nil, fmt.Errorf("starting step %s attempt %d of execution %s: %w", stepID, attempt, executionID, ErrAlreadyExists)
	case s.dialect.isForeignKeyViolation(err):
		return nil, fmt.Errorf("starting step %s: execution %s: %w", stepID, executionID, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("starting step %s of execution %s: %w", stepID, executionID, err)
	}
	return &step, nil
}

// CompleteStepExecution implements StepRepository.
func (s *Storage) CompleteStepExecution(ctx context.Context, stepExecutionID string, status models.StepStatus, output any, errMsg string) error {
	outcome, err := newStepOutcome(stepExecutionID, status, output, errMsg)
	if err != nil {
		return err
	}
	res := s.query(ctx).Model(&models.StepExecution{StepExecutionID: stepExecutionID}).Updates(outcome.values(s.dialect))
	switch {
	case res.Error != nil:
		return fmt.Errorf("completing step execution %s: %w", stepExecutionID, res.Error)
	case res.RowsAffected == 0:
		return fmt.Errorf("completing step execution %s: %w", stepExecutionID, ErrNotFound)
	}
	return nil
}

// GetStepExecution implements StepRepository.
func (s *Storage) GetStepExecution(ctx context.Context, stepExecutionID string) (*models.StepExecution, error) {
	if err := checkID("step execution id", stepExecutionID); err != nil {
		return nil, err
	}
	var step models.StepExecution
	if err := s.query(ctx).Where("step_execution_id = ?", stepExecutionID).Take(&step).Error; err != nil {
		return nil, fmt.Errorf("getting step execution %s: %w", stepExecutionID, notFound(err))
	}
	return &step, nil
}

// GetStepExecutionHistory implements StepRepository. Ties in started_at are
// broken by the id, a UUIDv7 that grows with insertion.
func (s *Storage) GetStepExecutionHistory(ctx context.Context, executionID string) ([]models.StepExecution, error) {
	if err := checkID("execution id", executionID); err != nil {
		return nil, err
	}
	var steps []models.StepExecution
	err := s.query(ctx).Where("execution_id = ?", executionID).Order("started_at, step_execution_id").Find(&steps).Error
	if err != nil {
		return nil, fmt.Errorf("getting step history of execution %s: %w", executionID, err)
	}
	return steps, nil
}
