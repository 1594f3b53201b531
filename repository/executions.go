package repository

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/plugins/optimisticlock"
)

// newID returns a UUIDv7: unique, and sorting by creation time as text.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

// NewID returns a new execution id as CreateExecution generates them, for
// callers that need the id before the execution is stored.
func NewID() string { return newID() }

// InsertExecutionSQL is the statement CreateExecution runs (GORM rewrites ? to
// $n on PostgreSQL). The clock arguments are now() on PostgreSQL and bound
// times on SQLite; the metadata follows the node id; then
// NewExecution.Running (status RUNNING, started_at set) and the time again;
// the last two arguments are the definition id and version again. The
// statement itself checks that the definition exists, so the
// guarantee holds on a SQLite connection with foreign keys off, and an
// existing id inserts nothing instead of failing, so an idempotent create is
// no error in the app's SQL log. When it returns no row, one read tells which
// (see ExecutionExistsSQL).
const InsertExecutionSQL = insertExecutionSQL + returningExecution

// insertExecutionSQL is InsertExecutionSQL without reading the row back,
// where every value it writes is known (see boundTime).
const insertExecutionSQL = `INSERT INTO workflow_executions ` +
	`(execution_id, definition_id, definition_version, status, input, node_id, metadata, version, last_heartbeat, created_at, updated_at, started_at) ` +
	`SELECT ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, CASE WHEN ? THEN ? END ` +
	`WHERE EXISTS (SELECT 1 FROM workflow_definitions WHERE id = ? AND version = ?) ` +
	`ON CONFLICT (execution_id) DO NOTHING`

// ExecutionExistsSQL is the read that follows a write that matched no
// execution: a count of 0 or 1.
const ExecutionExistsSQL = `SELECT count(*) FROM workflow_executions WHERE execution_id = ?`

// InsertDefinitionIfMissingSQL is the statement CreateExecution runs first, in
// the same transaction, when NewExecution.Definition is set: it never
// overwrites a stored definition.
const InsertDefinitionIfMissingSQL = `INSERT INTO workflow_definitions (id, version, name, definition, created_at, updated_at) ` +
	`VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id, version) DO NOTHING`

// CreateExecution implements ExecutionRepository.
func (s *Storage) CreateExecution(ctx context.Context, in NewExecution) (*models.WorkflowExecution, error) {
	if in.ExecutionID == "" {
		in.ExecutionID = newID()
	}
	var def *newDefinition
	if in.Definition != nil {
		if in.DefinitionID == "" && in.DefinitionVersion == "" {
			in.DefinitionID, in.DefinitionVersion = in.Definition.ID, in.Definition.Version
		}
		if in.Definition.ID != in.DefinitionID || in.Definition.Version != in.DefinitionVersion {
			return nil, fmt.Errorf("definition %s@%s given for an execution of %s@%s: %w",
				in.Definition.ID, in.Definition.Version, in.DefinitionID, in.DefinitionVersion, ErrInvalidArgument)
		}
		var err error
		if def, err = checkDefinition(in.Definition); err != nil {
			return nil, err
		}
	}
	if err := checkID("execution id", in.ExecutionID); err != nil {
		return nil, err
	}
	if err := checkID("definition id", in.DefinitionID); err != nil {
		return nil, err
	}
	if err := checkID("definition version", in.DefinitionVersion); err != nil {
		return nil, err
	}
	if in.NodeID != "" {
		if err := checkID("node id", in.NodeID); err != nil {
			return nil, err
		}
	}
	if in.Running && in.NodeID == "" {
		return nil, fmt.Errorf("execution %s created running without an owner: %w", in.ExecutionID, ErrInvalidArgument)
	}
	if err := checkLabels(in.Labels); err != nil {
		return nil, err
	}
	input, err := encodeJSON("execution input", in.Input)
	if err != nil {
		return nil, err
	}
	metadata, err := encodeJSON("execution metadata", in.Metadata)
	if err != nil {
		return nil, err
	}

	status := models.ExecutionPending
	if in.Running {
		status = models.ExecutionRunning
	}
	var exec models.WorkflowExecution
	insert := func(tx *gorm.DB) error {
		now := s.dialect.now()
		if def != nil {
			if err := tx.Exec(InsertDefinitionIfMissingSQL, def.id, def.version, def.name, def.spec, now, now).Error; err != nil {
				return fmt.Errorf("definition %s@%s: %w", def.id, def.version, err)
			}
		}
		args := []any{in.ExecutionID, in.DefinitionID, in.DefinitionVersion,
			status, input, nullable(in.NodeID), metadata, now, now, now, in.Running, now,
			in.DefinitionID, in.DefinitionVersion}
		rows := oneRow[models.WorkflowExecution]()
		if at, known := s.dialect.boundTime(now); known {
			res := tx.Exec(insertExecutionSQL, args...)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 1 {
				rows = append(rows, insertedExecution(in, status, input, metadata, at))
			}
		} else if err := tx.Raw(InsertExecutionSQL, args...).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			// Nothing inserted: the id exists, or the definition does not.
			var n int64
			if err := tx.Raw(ExecutionExistsSQL, in.ExecutionID).Scan(&n).Error; err != nil {
				return err
			}
			if n > 0 {
				return ErrAlreadyExists
			}
			return fmt.Errorf("definition %s@%s: %w", in.DefinitionID, in.DefinitionVersion, ErrNotFound)
		}
		exec = rows[0]
		if len(in.Labels) > 0 {
			return tx.Create(labelRows(in.ExecutionID, in.Labels)).Error
		}
		return nil
	}
	c := &checkpoint{ctx: ctx, op: insert, single: def == nil && len(in.Labels) == 0}
	if c.single {
		// On PostgreSQL, written with the creations that queue meanwhile,
		// as one statement (groupcommit_postgres.go).
		c.create = &executionCreate{
			executionID: in.ExecutionID, definitionID: in.DefinitionID, definitionVersion: in.DefinitionVersion,
			status: status, input: input, metadata: metadata, nodeID: nullable(in.NodeID), running: in.Running, created: &exec,
		}
	}
	err = s.writeCheckpoint(c)
	switch {
	case errors.Is(err, ErrAlreadyExists), errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("creating execution %s: %w", in.ExecutionID, err)
	case s.dialect.isUniqueViolation(err):
		// A label row of an id created concurrently, where the database
		// reports the conflict as an error after all.
		return nil, fmt.Errorf("creating execution %s: %w", in.ExecutionID, ErrAlreadyExists)
	case s.dialect.isForeignKeyViolation(err):
		// A definition deleted concurrently (PostgreSQL's foreign key).
		return nil, fmt.Errorf("creating execution %s: definition %s@%s: %w", in.ExecutionID, in.DefinitionID, in.DefinitionVersion, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("creating execution %s: %w", in.ExecutionID, err)
	}
	if len(in.Labels) > 0 {
		exec.Labels = maps.Clone(in.Labels)
	}
	s.dialect.scanned(&exec)
	if in.NodeID == "" {
		s.publish(EventClaimable, exec.ExecutionID)
	}
	return &exec, nil
}

// insertedExecution is the row insertExecutionSQL writes for in at time at.
func insertedExecution(in NewExecution, status models.ExecutionStatus, input, metadata models.JSON, at time.Time) models.WorkflowExecution {
	heartbeat := at
	x := models.WorkflowExecution{ExecutionID: in.ExecutionID, DefinitionID: in.DefinitionID, DefinitionVersion: in.DefinitionVersion,
		Status: status, Input: input, NodeID: nullable(in.NodeID), Metadata: metadata, Version: 1,
		LastHeartbeat: &heartbeat, CreatedAt: at, UpdatedAt: at}
	if in.Running {
		started := at
		x.StartedAt = &started
	}
	return x
}

func labelRows(executionID string, labels map[string]string) []models.ExecutionLabel {
	rows := make([]models.ExecutionLabel, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		rows = append(rows, models.ExecutionLabel{ExecutionID: executionID, Key: k, Value: labels[k]})
	}
	return rows
}

// nullable stores "" as NULL.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// GetExecution implements ExecutionRepository.
func (s *Storage) GetExecution(ctx context.Context, executionID string) (*models.WorkflowExecution, error) {
	if err := checkID("execution id", executionID); err != nil {
		return nil, err
	}
	// Find, not Take: a missing id is an answer, not an error in the app's
	// SQL log.
	var execs []models.WorkflowExecution
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Where("execution_id = ?", executionID).Limit(1).Find(&execs).Error
	})
	if err != nil {
		return nil, fmt.Errorf("getting execution %s: %w", executionID, err)
	}
	if len(execs) == 0 {
		return nil, fmt.Errorf("getting execution %s: %w", executionID, ErrNotFound)
	}
	if err := s.fillLabels(ctx, execs); err != nil {
		return nil, err
	}
	s.dialect.scanned(&execs)
	return &execs[0], nil
}

// fillLabels reads the labels of execs with one query.
func (s *Storage) fillLabels(ctx context.Context, execs []models.WorkflowExecution) error {
	if len(execs) == 0 {
		return nil
	}
	index := make(map[string]int, len(execs))
	ids := make([]string, len(execs))
	for i, e := range execs {
		index[e.ExecutionID] = i
		ids[i] = e.ExecutionID
	}
	var labels []models.ExecutionLabel
	err := s.run(ctx, func(db *gorm.DB) error { return db.Where("execution_id IN ?", ids).Find(&labels).Error })
	if err != nil {
		return fmt.Errorf("getting labels: %w", err)
	}
	for _, l := range labels {
		e := &execs[index[l.ExecutionID]]
		if e.Labels == nil {
			e.Labels = map[string]string{}
		}
		e.Labels[l.Key] = l.Value
	}
	return nil
}

// notFound maps GORM's not-found to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotFound
	}
	return err
}

// UpdateExecutionStatus implements ExecutionRepository.
func (s *Storage) UpdateExecutionStatus(ctx context.Context, executionID string, status models.ExecutionStatus) error {
	return s.UpdateExecutionStatusWithVersion(ctx, executionID, status, nil)
}

// UpdateExecutionStatusWithVersion implements ExecutionRepository.
func (s *Storage) UpdateExecutionStatusWithVersion(ctx context.Context, executionID string, status models.ExecutionStatus, expectedVersion *int64) error {
	if err := checkExecutionStatus(status); err != nil {
		return err
	}
	now := s.dialect.now()
	values := map[string]any{"status": status, "updated_at": now}
	if status == models.ExecutionRunning {
		values["last_heartbeat"] = now
		values["started_at"] = gorm.Expr("COALESCE(started_at, ?)", now)
	}
	if status.Terminal() {
		values["completed_at"] = now
	}
	if err := s.updateExecution(ctx, executionID, expectedVersion, values); err != nil {
		return fmt.Errorf("setting execution %s to %s: %w", executionID, status, err)
	}
	s.publishEnded(executionID, status)
	return nil
}

// UpdateExecutionOutput implements ExecutionRepository.
func (s *Storage) UpdateExecutionOutput(ctx context.Context, executionID string, output any, expectedVersion *int64) error {
	out, err := encodeJSON("execution output", output)
	if err != nil {
		return err
	}
	values := map[string]any{"output": out, "updated_at": s.dialect.now()}
	if err := s.updateExecution(ctx, executionID, expectedVersion, values); err != nil {
		return fmt.Errorf("setting output of execution %s: %w", executionID, err)
	}
	return nil
}

// TransferOwnership implements ExecutionRepository.
func (s *Storage) TransferOwnership(ctx context.Context, executionID, newOwner string, expectedVersion int64) error {
	if err := checkID("new owner", newOwner); err != nil {
		return err
	}
	now := s.dialect.now()
	values := map[string]any{"node_id": newOwner, "last_heartbeat": now, "updated_at": now}
	if err := s.updateExecution(ctx, executionID, &expectedVersion, values); err != nil {
		return fmt.Errorf("transferring execution %s to %s: %w", executionID, newOwner, err)
	}
	return nil
}

// updateExecution writes values in one UPDATE that bumps the version through
// the optimisticlock plugin, checked against expectedVersion when it is set.
func (s *Storage) updateExecution(ctx context.Context, executionID string, expectedVersion *int64, values map[string]any) error {
	if err := checkID("execution id", executionID); err != nil {
		return err
	}
	model := &models.WorkflowExecution{ExecutionID: executionID}
	if expectedVersion != nil {
		if err := checkExpectedVersion(*expectedVersion); err != nil {
			return err
		}
		model.Version = optimisticlock.Version(*expectedVersion)
	}
	var res *gorm.DB
	_ = s.run(ctx, func(db *gorm.DB) error {
		res = db.Model(model).Updates(values)
		return res.Error
	})
	if res.Error != nil {
		return notFound(res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// UpdateHeartbeat implements ExecutionRepository.
func (s *Storage) UpdateHeartbeat(ctx context.Context, executionID, nodeID string) error {
	if err := checkID("execution id", executionID); err != nil {
		return err
	}
	if err := checkID("node id", nodeID); err != nil {
		return err
	}
	// UpdateColumn skips hooks, so the plugin leaves the version alone.
	var res *gorm.DB
	_ = s.run(ctx, func(db *gorm.DB) error {
		res = db.Model(&models.WorkflowExecution{}).
			Where("execution_id = ? AND node_id = ?", executionID, nodeID).
			UpdateColumn("last_heartbeat", s.dialect.now())
		return res.Error
	})
	if res.Error != nil {
		return fmt.Errorf("heartbeat of execution %s from %s: %w", executionID, nodeID, res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("heartbeat of execution %s from %s: %w", executionID, nodeID, s.missingOrNotOwner(ctx, executionID))
	}
	return nil
}

// missingOrNotOwner runs after a write that matched no row: ErrNotFound if the
// execution does not exist, ErrConcurrentUpdate if another node owns it.
func (s *Storage) missingOrNotOwner(ctx context.Context, executionID string) error {
	var n int64
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Model(&models.WorkflowExecution{}).Where("execution_id = ?", executionID).Count(&n).Error
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return ErrConcurrentUpdate
}

// liveOnly reports whether every status is PENDING or RUNNING: the rows whose
// live_heartbeat is set and that idx_workflow_executions_stale covers.
func liveOnly(statuses []models.ExecutionStatus) bool {
	for _, st := range statuses {
		if st != models.ExecutionPending && st != models.ExecutionRunning {
			return false
		}
	}
	return true
}

// ListStaleExecutions implements ExecutionRepository.
func (s *Storage) ListStaleExecutions(ctx context.Context, threshold time.Duration, statuses []models.ExecutionStatus) ([]models.WorkflowExecution, error) {
	if err := checkThreshold(threshold); err != nil {
		return nil, err
	}
	if err := checkExecutionStatuses(statuses); err != nil {
		return nil, err
	}
	if len(statuses) == 0 {
		statuses = models.LiveExecutionStatuses()
	}
	// live_heartbeat is last_heartbeat for live rows and NULL for the others;
	// comparing it lets both planners use the partial index (see migrations).
	heartbeat := "last_heartbeat"
	if liveOnly(statuses) {
		heartbeat = "live_heartbeat"
	}
	var out []models.WorkflowExecution
	err := s.run(ctx, func(db *gorm.DB) error {
		return db.Where("status IN ?", statuses).
			Where(heartbeat+" < ?", s.dialect.before(threshold)).
			Order(heartbeat + ", execution_id").Find(&out).Error
	})
	if err != nil {
		return nil, fmt.Errorf("listing executions stale for %s: %w", threshold, err)
	}
	s.dialect.scanned(&out)
	return out, nil
}

// ListExecutionsByStatus implements ExecutionRepository.
func (s *Storage) ListExecutionsByStatus(ctx context.Context, statuses []models.ExecutionStatus, nodeID *string) ([]models.WorkflowExecution, error) {
	if err := checkExecutionStatuses(statuses); err != nil {
		return nil, err
	}
	if nodeID != nil {
		if err := checkID("node id", *nodeID); err != nil {
			return nil, err
		}
	}
	var out []models.WorkflowExecution
	err := s.run(ctx, func(q *gorm.DB) error {
		if len(statuses) > 0 {
			q = q.Where("status IN ?", statuses)
		}
		if nodeID != nil {
			q = q.Where("node_id = ?", *nodeID)
		}
		return q.Order("created_at, execution_id").Find(&out).Error
	})
	if err != nil {
		return nil, fmt.Errorf("listing executions by status: %w", err)
	}
	s.dialect.scanned(&out)
	return out, nil
}

// ListExecutions implements ExecutionRepository.
func (s *Storage) ListExecutions(ctx context.Context, f ExecutionFilter) ([]models.WorkflowExecution, error) {
	if err := checkExecutionStatuses(f.Statuses); err != nil {
		return nil, err
	}
	if err := checkLabels(f.Labels); err != nil {
		return nil, err
	}
	for what, v := range map[string]string{"node id": f.NodeID, "definition id": f.DefinitionID, "definition version": f.DefinitionVersion, "cursor": f.After} {
		if err := checkText(what, v); err != nil {
			return nil, err
		}
	}
	if f.DefinitionVersion != "" && f.DefinitionID == "" {
		return nil, fmt.Errorf("definition version %q without a definition id: %w", f.DefinitionVersion, ErrInvalidArgument)
	}
	limit := f.Limit
	switch {
	case limit == 0:
		limit = ListLimitDefault
	case limit < 0 || limit > ListLimitMax:
		return nil, fmt.Errorf("limit %d (want 0 to %d): %w", limit, ListLimitMax, ErrInvalidArgument)
	}

	var out []models.WorkflowExecution
	err := s.run(ctx, func(q *gorm.DB) error {
		return listQuery(q, f).Order("execution_id").Limit(limit).Find(&out).Error
	})
	if err != nil {
		return nil, fmt.Errorf("listing executions: %w", err)
	}
	if err := s.fillLabels(ctx, out); err != nil {
		return nil, err
	}
	s.dialect.scanned(&out)
	return out, nil
}

// listQuery adds f's conditions to q.
func listQuery(q *gorm.DB, f ExecutionFilter) *gorm.DB {
	if len(f.Statuses) > 0 {
		q = q.Where("status IN ?", f.Statuses)
	}
	if f.NodeID != "" {
		q = q.Where("node_id = ?", f.NodeID)
	}
	if f.DefinitionID != "" {
		q = q.Where("definition_id = ?", f.DefinitionID)
	}
	if f.DefinitionVersion != "" {
		q = q.Where("definition_version = ?", f.DefinitionVersion)
	}
	if !f.CreatedSince.IsZero() {
		q = q.Where("created_at >= ?", f.CreatedSince.UTC().Truncate(time.Microsecond))
	}
	for _, k := range slices.Sorted(maps.Keys(f.Labels)) {
		q = q.Where(`EXISTS (SELECT 1 FROM workflow_execution_labels l `+
			`WHERE l.execution_id = workflow_executions.execution_id AND l.label_key = ? AND l.label_value = ?)`, k, f.Labels[k])
	}
	if f.After != "" {
		q = q.Where("execution_id > ?", f.After)
	}
	return q
}
