package repository

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
)

// InsertStepSQL is the statement CreateStepExecution runs: its arguments are
// the step execution id, step id, status, input, attempt, start time and the
// execution id. It inserts only for an execution that exists, so a missing
// one is ErrNotFound on a SQLite connection with foreign keys off too.
const InsertStepSQL = `INSERT INTO step_executions ` +
	`(step_execution_id, execution_id, step_id, status, input, attempt, started_at) ` +
	`SELECT ?, execution_id, ?, ?, ?, ?, ? FROM workflow_executions WHERE execution_id = ?` + returningStep

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
	var steps []models.StepExecution
	id := newID()
	err = s.run(ctx, func(db *gorm.DB) error {
		return db.Raw(InsertStepSQL, id, stepID, models.StepRunning, in, attempt, s.dialect.now(), executionID).Scan(&steps).Error
	})
	if err == nil && len(steps) == 0 {
		err = fmt.Errorf("execution %s: %w", executionID, ErrNotFound)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("starting step %s: %w", stepID, err)
	case s.dialect.isUniqueViolation(err):
		return nil, fmt.Errorf("starting step %s attempt %d of execution %s: %w", stepID, attempt, executionID, ErrAlreadyExists)
	case s.dialect.isForeignKeyViolation(err):
		return nil, fmt.Errorf("starting step %s: execution %s: %w", stepID, executionID, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("starting step %s of execution %s: %w", stepID, executionID, err)
	}
	s.dialect.scanned(&steps)
	return &steps[0], nil
}

// CompleteStepExecution implements StepRepository.
func (s *Storage) CompleteStepExecution(ctx context.Context, stepExecutionID string, status models.StepStatus, output any, errMsg string) error {
	outcome, err := newStepOutcome(stepExecutionID, status, output, errMsg)
	if err != nil {
		return err
	}
	var res *gorm.DB
	_ = s.run(ctx, func(db *gorm.DB) error {
		res = db.Model(&models.StepExecution{StepExecutionID: stepExecutionID}).Updates(outcome.values(s.dialect))
		return res.Error
	})
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
	var steps []models.StepExecution
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Where("step_execution_id = ?", stepExecutionID).Limit(1).Find(&steps).Error
	})
	if err != nil {
		return nil, fmt.Errorf("getting step execution %s: %w", stepExecutionID, err)
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("getting step execution %s: %w", stepExecutionID, ErrNotFound)
	}
	s.dialect.scanned(&steps)
	return &steps[0], nil
}

// GetStepExecutionHistory implements StepRepository. Ties in started_at are
// broken by the id, a UUIDv7 that grows with insertion.
func (s *Storage) GetStepExecutionHistory(ctx context.Context, executionID string) ([]models.StepExecution, error) {
	if err := checkID("execution id", executionID); err != nil {
		return nil, err
	}
	var steps []models.StepExecution
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Where("execution_id = ?", executionID).Order("started_at, step_execution_id").Find(&steps).Error
	})
	if err != nil {
		return nil, fmt.Errorf("getting step history of execution %s: %w", executionID, err)
	}
	s.dialect.scanned(&steps)
	return steps, nil
}
