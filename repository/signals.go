package repository

import (
	"context"
	"fmt"

	"github.com/plexspaces/workflow/models"
)

// InsertSignalSQL is the statement SendSignal runs.
const InsertSignalSQL = `INSERT INTO signals (signal_id, execution_id, signal_name, payload, received_at) VALUES (?, ?, ?, ?, ?)`

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
	err = s.query(ctx).Exec(InsertSignalSQL, newID(), executionID, name, body, s.dialect.now()).Error
	switch {
	case s.dialect.isForeignKeyViolation(err):
		return fmt.Errorf("sending signal %s: execution %s: %w", name, executionID, ErrNotFound)
	case err != nil:
		return fmt.Errorf("sending signal %s to execution %s: %w", name, executionID, err)
	}
	return nil
}

// CheckSignal implements SignalRepository.
func (s *Storage) CheckSignal(ctx context.Context, executionID, name string) (models.Signal, bool, error) {
	if err := checkSignal(executionID, name); err != nil {
		return models.Signal{}, false, err
	}
	var sigs []models.Signal
	err := s.query(ctx).Where("execution_id = ? AND signal_name = ?", executionID, name).Order("seq").Limit(1).Find(&sigs).Error
	if err != nil {
		return models.Signal{}, false, fmt.Errorf("checking signal %s of execution %s: %w", name, executionID, err)
	}
	if len(sigs) == 0 {
		return models.Signal{}, false, nil
	}
	return sigs[0], true, nil
}

// ConsumeSignal implements SignalRepository.
func (s *Storage) ConsumeSignal(ctx context.Context, executionID, name string) (models.Signal, bool, error) {
	if err := checkSignal(executionID, name); err != nil {
		return models.Signal{}, false, err
	}
	var sigs []models.Signal
	err := s.query(ctx).Raw(fmt.Sprintf(consumeSignalSQL, s.dialect.claimLock()), executionID, name).Scan(&sigs).Error
	if err != nil {
		return models.Signal{}, false, fmt.Errorf("consuming signal %s of execution %s: %w", name, executionID, err)
	}
	if len(sigs) == 0 {
		return models.Signal{}, false, nil
	}
	return sigs[0], true, nil
}
