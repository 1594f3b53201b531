package repository

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
)

// sendSignalSQL stores a signal only for an execution that exists and is live,
// so the guarantee holds on a SQLite connection with foreign keys off and a
// signal never lands on an ended execution. The %s is the dialect's share
// lock: on PostgreSQL a concurrent finish of the execution is ordered before
// or after the signal, never beside it.
const sendSignalSQL = `INSERT INTO signals (signal_id, execution_id, signal_name, payload, received_at) ` +
	`SELECT ?, execution_id, ?, ?, ? FROM workflow_executions WHERE execution_id = ? AND status IN ('PENDING', 'RUNNING')%s`

// SendSignalSQL returns the statement SendSignal runs on a dialect ("sqlite"
// or "postgres"). Its arguments are the signal id, name, payload, the time
// received (now() on PostgreSQL) and the execution id. When it inserts no
// row, SendSignal reads the execution's status (ExecutionStatusSQL) to tell
// ErrNotFound from ErrExecutionEnded.
func SendSignalSQL(dialectName string) string {
	if dialectName == "postgres" {
		return fmt.Sprintf(sendSignalSQL, postgresDialect{}.shareLock())
	}
	return fmt.Sprintf(sendSignalSQL, sqliteDialect{}.shareLock())
}

// ExecutionStatusSQL reads an execution's status after a write that matched
// no live execution.
const ExecutionStatusSQL = `SELECT status FROM workflow_executions WHERE execution_id = ?`

// consumeSignalSQL pops the oldest signal in one statement. The %s is the
// dialect's claim lock: on PostgreSQL, concurrent consumers skip a row another
// is deleting and take the next, so each signal goes to exactly one of them.
const consumeSignalSQL = `DELETE FROM signals WHERE seq = (SELECT seq FROM signals ` +
	`WHERE execution_id = ? AND signal_name = ? ORDER BY seq LIMIT 1%s)` + returningSignal

// ConsumeSignalSQL returns the statement ConsumeSignal runs on a dialect
// ("sqlite" or "postgres").
func ConsumeSignalSQL(dialectName string) string {
	if dialectName == "postgres" {
		return fmt.Sprintf(consumeSignalSQL, postgresDialect{}.claimLock())
	}
	return fmt.Sprintf(consumeSignalSQL, "")
}

func checkSignal(executionID, name string) error {
	if err := checkID("execution id", executionID); err != nil {
		return err
	}
	return checkID("signal name", name)
}

// SendSignal implements SignalRepository.
func (s *Storage) SendSignal(ctx context.Context, executionID, name string, payload any) error {
	if err := checkSignal(executionID, name); err != nil {
		return err
	}
	body, err := encodeJSON("signal payload", payload)
	if err != nil {
		return err
	}
	id, insert := newID(), fmt.Sprintf(sendSignalSQL, s.dialect.shareLock())
	err = s.run(ctx, func(db *gorm.DB) error {
		// A second try covers an execution that was not live at the insert
		// but is by the read (its status was set back by hand).
		for range 2 {
			res := db.Exec(insert, id, name, body, s.dialect.now(), executionID)
			if res.Error != nil || res.RowsAffected > 0 {
				return res.Error
			}
			var statuses []models.ExecutionStatus
			if err := db.Raw(ExecutionStatusSQL, executionID).Scan(&statuses).Error; err != nil {
				return err
			}
			switch {
			case len(statuses) == 0:
				return fmt.Errorf("execution %s: %w", executionID, ErrNotFound)
			case statuses[0].Terminal():
				return fmt.Errorf("execution %s is %s: %w", executionID, statuses[0], ErrExecutionEnded)
			}
		}
		return fmt.Errorf("execution %s: %w", executionID, ErrConcurrentUpdate)
	})
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrExecutionEnded), errors.Is(err, ErrConcurrentUpdate):
		return fmt.Errorf("sending signal %s: %w", name, err)
	case s.dialect.isForeignKeyViolation(err):
		return fmt.Errorf("sending signal %s: execution %s: %w", name, executionID, ErrNotFound)
	case err != nil:
		return fmt.Errorf("sending signal %s to execution %s: %w", name, executionID, err)
	}
	s.publish(EventSignal, executionID)
	return nil
}

// CheckSignal implements SignalRepository.
func (s *Storage) CheckSignal(ctx context.Context, executionID, name string) (models.Signal, bool, error) {
	if err := checkSignal(executionID, name); err != nil {
		return models.Signal{}, false, err
	}
	var sigs []models.Signal
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Where("execution_id = ? AND signal_name = ?", executionID, name).Order("seq").Limit(1).Find(&sigs).Error
	})
	if err != nil {
		return models.Signal{}, false, fmt.Errorf("checking signal %s of execution %s: %w", name, executionID, err)
	}
	if len(sigs) == 0 {
		return models.Signal{}, false, nil
	}
	s.dialect.scanned(&sigs)
	return sigs[0], true, nil
}

// ConsumeSignal implements SignalRepository.
func (s *Storage) ConsumeSignal(ctx context.Context, executionID, name string) (models.Signal, bool, error) {
	if err := checkSignal(executionID, name); err != nil {
		return models.Signal{}, false, err
	}
	var sigs []models.Signal
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Raw(fmt.Sprintf(consumeSignalSQL, s.dialect.claimLock()), executionID, name).Scan(&sigs).Error
	})
	if err != nil {
		return models.Signal{}, false, fmt.Errorf("consuming signal %s of execution %s: %w", name, executionID, err)
	}
	if len(sigs) == 0 {
		return models.Signal{}, false, nil
	}
	s.dialect.scanned(&sigs)
	return sigs[0], true, nil
}
