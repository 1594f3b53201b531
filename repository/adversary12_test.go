package repository_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/migrations"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
	"github.com/plexspaces/workflow/testutil"
)

// Adversary 12: the "IS TRUE" fencing predicate and definition filter
// (ownership.go, groupcommit_postgres.go), migration 012's partial index by
// node, RETURNING statements read with Raw().Find, and the SQLite driver
// upgrade (modernc.org/sqlite v1.62.0 under glebarez).

func adv12Ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// adv12Row is what a refused write must leave as it was.
type adv12Row struct {
	Status        string
	NodeID        *string
	Version       int64
	CurrentStepID *string
	LastHeartbeat time.Time
	Output        *string
	WaitSignal    *string
}

func adv12Snapshot(t *testing.T, s *repository.Storage, id string) (adv12Row, []string, int64) {
	t.Helper()
	var r adv12Row
	require.NoError(t, s.DB().Raw(`SELECT status, node_id, version, current_step_id, last_heartbeat, `+
		`CAST(output AS TEXT) AS output, wait_signal FROM workflow_executions WHERE execution_id = ?`, id).Scan(&r).Error)
	r.LastHeartbeat = r.LastHeartbeat.UTC()
	steps := statuses12(history(t, s, id))
	var sigs int64
	require.NoError(t, s.DB().Table("signals").Where("execution_id = ?", id).Count(&sigs).Error)
	return r, steps, sigs
}

func statuses12(h []models.StepExecution) []string {
	out := make([]string, len(h))
	for i, st := range h {
		out[i] = fmt.Sprintf("%s#%d:%s:%s", st.StepID, st.Attempt, st.Status, string(st.Output))
	}
	return out
}

// adv12State prepares an execution that node n1 ran (step "a" started),
// then left in the named state, and returns its id and step execution id.
func adv12State(t *testing.T, s *repository.Storage, state string) (string, string) {
	t.Helper()
	ctx := adv12Ctx(t)
	e := create(t, s, repository.NewExecution{NodeID: "n1", Running: true})
	step, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
	require.NoError(t, err)
	require.NoError(t, s.SendSignal(ctx, e.ExecutionID, "go", map[string]int{"n": 1}))
	set := func(sql string) {
		res := s.DB().Exec(sql, e.ExecutionID)
		require.NoError(t, res.Error)
		require.EqualValues(t, 1, res.RowsAffected)
	}
	switch state {
	case "owned":
	case "unowned":
		set(`UPDATE workflow_executions SET node_id = NULL WHERE execution_id = ?`)
	case "other":
		set(`UPDATE workflow_executions SET node_id = 'n2' WHERE execution_id = ?`)
	case "empty-owner":
		set(`UPDATE workflow_executions SET node_id = '' WHERE execution_id = ?`)
	case "completed":
		require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n1",
			Status: models.ExecutionCompleted, Output: "done"}))
		x, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		if x.NodeID == nil || *x.NodeID != "n1" {
			set(`UPDATE workflow_executions SET node_id = 'n1' WHERE execution_id = ?`)
		}
	case "cancelled":
		set(`UPDATE workflow_executions SET status = 'CANCELLED', completed_at = updated_at WHERE execution_id = ?`)
	case "failed":
		set(`UPDATE workflow_executions SET status = 'FAILED', completed_at = updated_at WHERE execution_id = ?`)
	case "parked":
		require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: e.ExecutionID, NodeID: "n1", Signal: "other"}))
	default:
		t.Fatalf("unknown state %s", state)
	}
	return e.ExecutionID, step.StepExecutionID
}

// adv12Ops are the fenced writes node n1 makes, each on one execution with
// its started step.
func adv12Ops() []struct {
	name string
	op   func(ctx context.Context, s *repository.Storage, id, step string) error
} {
	prev := func(id, step string) *repository.FinishStepParams {
		return &repository.FinishStepParams{ExecutionID: id, StepExecutionID: step, NodeID: "n1", Status: models.StepCompleted, Output: "out"}
	}
	return []struct {
		name string
		op   func(ctx context.Context, s *repository.Storage, id, step string) error
	}{
		{"StartStep", func(ctx context.Context, s *repository.Storage, id, _ string) error {
			_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1})
			return err
		}},
		{"StartStepWithPrevious", func(ctx context.Context, s *repository.Storage, id, step string) error {
			_, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "b", NodeID: "n1", Attempt: 1, Previous: prev(id, step)})
			return err
		}},
		{"FinishStep", func(ctx context.Context, s *repository.Storage, id, step string) error {
			return s.FinishStep(ctx, *prev(id, step))
		}},
		{"FinishExecution", func(ctx context.Context, s *repository.Storage, id, _ string) error {
			return s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n1", Status: models.ExecutionFailed, Error: "x"})
		}},
		{"FinishExecutionWithPrevious", func(ctx context.Context, s *repository.Storage, id, step string) error {
			return s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n1", Status: models.ExecutionCompleted,
				Output: "o", Previous: prev(id, step)})
		}},
		{"ParkExecution", func(ctx context.Context, s *repository.Storage, id, _ string) error {
			return s.ParkExecution(ctx, repository.ParkParams{ExecutionID: id, NodeID: "n1", For: time.Hour})
		}},
		{"ReleaseExecution", func(ctx context.Context, s *repository.Storage, id, _ string) error {
			return s.ReleaseExecution(ctx, id, "n1")
		}},
		{"ReceiveSignal", func(ctx context.Context, s *repository.Storage, id, _ string) error {
			_, got, err := s.ReceiveSignal(ctx, repository.ReceiveSignalParams{ExecutionID: id, NodeID: "n1", SignalName: "go", StepID: "sig"})
			if err == nil && !got {
				return errors.New("no signal received")
			}
			return err
		}},
		{"UpdateHeartbeat", func(ctx context.Context, s *repository.Storage, id, _ string) error {
			return s.UpdateHeartbeat(ctx, id, "n1")
		}},
		{"HeartbeatExecutions", func(ctx context.Context, s *repository.Storage, id, _ string) error {
			ids, err := s.HeartbeatExecutions(ctx, "n1", []string{id})
			if err == nil && len(ids) == 0 {
				return repository.ErrConcurrentUpdate
			}
			return err
		}},
	}
}

// TestAdversary12_FencingIsExact: every fenced write of node n1 succeeds on
// a live execution n1 owns, and on an execution with no owner, another
// owner, an empty owner, or that ended (n1 still named as its node), is
// refused with ErrConcurrentUpdate and changes nothing (row, journal,
// pending signals).
func TestAdversary12_FencingIsExact(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv12Ctx(t)
		for _, op := range adv12Ops() {
			id, step := adv12State(t, s, "owned")
			require.NoError(t, op.op(ctx, s, id, step), "%s on the owner's live execution", op.name)
		}
		for _, state := range []string{"unowned", "other", "empty-owner", "completed", "cancelled", "failed", "parked"} {
			for _, op := range adv12Ops() {
				if op.name == "UpdateHeartbeat" && (state == "completed" || state == "cancelled" || state == "failed") {
					continue // documented as an owner check only; an ended row's beat is harmless
				}
				id, step := adv12State(t, s, state)
				row, steps, sigs := adv12Snapshot(t, s, id)
				err := op.op(ctx, s, id, step)
				require.ErrorIs(t, err, repository.ErrConcurrentUpdate, "%s on a %s execution", op.name, state)
				row2, steps2, sigs2 := adv12Snapshot(t, s, id)
				require.Equal(t, row, row2, "%s on a %s execution changed the row", op.name, state)
				require.Equal(t, steps, steps2, "%s on a %s execution changed the journal", op.name, state)
				require.Equal(t, sigs, sigs2, "%s on a %s execution consumed a signal", op.name, state)
			}
		}
	})
}

// TestAdversary12_HeartbeatNodeBeatsOnlyLiveOwned: a node that ran many
// executions (ended ones still name it) beats exactly its live ones; ended,
// parked and other nodes' executions keep their heartbeat. ListNodes counts
// only live owned executions, and ExecutionFilter.NodeID still lists the
// node's ended executions, every page of them.
func TestAdversary12_HeartbeatNodeBeatsOnlyLiveOwned(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv12Ctx(t)
		const ended = 240
		var endedIDs []string
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			for range ended {
				e, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
				if err != nil {
					return err
				}
				endedIDs = append(endedIDs, e.ExecutionID)
			}
			return nil
		}))
		statusesByIndex := []string{"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
		for i, id := range endedIDs {
			require.NoError(t, s.DB().Exec(`UPDATE workflow_executions SET status = ?, completed_at = updated_at WHERE execution_id = ?`,
				statusesByIndex[i%len(statusesByIndex)], id).Error)
		}
		var live []string
		for i := range 3 {
			e := create(t, s, repository.NewExecution{NodeID: "n1", Running: i > 0}) // one PENDING owned, two RUNNING
			live = append(live, e.ExecutionID)
		}
		parked := create(t, s, repository.NewExecution{NodeID: "n1", Running: true}).ExecutionID
		require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: parked, NodeID: "n1", Signal: "s"}))
		var others []string
		for range 2 {
			others = append(others, create(t, s, repository.NewExecution{NodeID: "n2", Running: true}).ExecutionID)
		}
		unowned := create(t, s, repository.NewExecution{}).ExecutionID
		// Every heartbeat an hour ago, then n1 beats.
		past := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
		require.NoError(t, s.DB().Exec(`UPDATE workflow_executions SET last_heartbeat = ? WHERE execution_id <> ?`, past, parked).Error)
		before := map[string]time.Time{}
		var rows []struct {
			ExecutionID   string
			LastHeartbeat time.Time
		}
		require.NoError(t, s.DB().Raw(`SELECT execution_id, last_heartbeat FROM workflow_executions`).Scan(&rows).Error)
		for _, r := range rows {
			before[r.ExecutionID] = r.LastHeartbeat.UTC()
		}

		beaten, err := s.HeartbeatNode(ctx, "n1")
		require.NoError(t, err)
		require.ElementsMatch(t, live, beaten)
		rows = nil
		require.NoError(t, s.DB().Raw(`SELECT execution_id, last_heartbeat FROM workflow_executions`).Scan(&rows).Error)
		for _, r := range rows {
			if slicesContains(live, r.ExecutionID) {
				require.True(t, r.LastHeartbeat.UTC().After(before[r.ExecutionID]), "live %s not beaten", r.ExecutionID)
			} else {
				require.Equal(t, before[r.ExecutionID], r.LastHeartbeat.UTC(), "%s beaten though not live and owned by n1", r.ExecutionID)
			}
		}
		all := append(append(append(append([]string{}, endedIDs...), live...), parked, unowned), others...)
		beaten, err = s.HeartbeatExecutions(ctx, "n1", all)
		require.NoError(t, err)
		require.ElementsMatch(t, live, beaten)
		beaten, err = s.HeartbeatNode(ctx, "n2")
		require.NoError(t, err)
		require.ElementsMatch(t, others, beaten)

		require.NoError(t, s.BeatNode(ctx, "n1"))
		require.NoError(t, s.BeatNode(ctx, "n2"))
		require.NoError(t, s.BeatNode(ctx, "n3"))
		nodes, err := s.ListNodes(ctx)
		require.NoError(t, err)
		counts := map[string]int64{}
		for _, n := range nodes {
			counts[n.NodeID] = n.Executions
		}
		require.Equal(t, map[string]int64{"n1": 3, "n2": 2, "n3": 0}, counts)

		// The node's ended executions, page by page.
		var listed []string
		after := ""
		for range 100 {
			page, err := s.ListExecutions(ctx, repository.ExecutionFilter{NodeID: "n1",
				Statuses: []models.ExecutionStatus{models.ExecutionCompleted, models.ExecutionFailed, models.ExecutionCancelled, models.ExecutionTimedOut},
				Limit:    50, After: after})
			require.NoError(t, err)
			for _, x := range page {
				require.True(t, x.Status.Terminal())
				require.NotNil(t, x.NodeID)
				require.Equal(t, "n1", *x.NodeID)
				listed = append(listed, x.ExecutionID)
			}
			if len(page) < 50 {
				break
			}
			after = page[len(page)-1].ExecutionID
		}
		require.ElementsMatch(t, endedIDs, listed)
		one, err := s.ListExecutions(ctx, repository.ExecutionFilter{NodeID: "n1", Statuses: []models.ExecutionStatus{models.ExecutionCancelled}, Limit: 1000})
		require.NoError(t, err)
		require.Len(t, one, ended/4)
		mine, err := s.ListExecutions(ctx, repository.ExecutionFilter{NodeID: "n1", Limit: 1000})
		require.NoError(t, err)
		require.Len(t, mine, ended+len(live), "every execution naming n1, ended or live (the parked one names no node)")
		byStatus, err := s.ListExecutionsByStatus(ctx, models.LiveExecutionStatuses(), ptr("n1"))
		require.NoError(t, err)
		var ids []string
		for _, x := range byStatus {
			ids = append(ids, x.ExecutionID)
		}
		require.ElementsMatch(t, live, ids)
	})
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestAdversary12_OwnedIndexRollbackAndReapply: with live and ended work in
// the table, rolling migration 012 back (and 011 with it) and applying it
// again keeps heartbeats, node counts and claims exact at every stage, and
// leaves exactly one of the two indexes by node.
func TestAdversary12_OwnedIndexRollbackAndReapply(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv12Ctx(t)
		var live []string
		for range 3 {
			live = append(live, create(t, s, repository.NewExecution{NodeID: "n1", Running: true}).ExecutionID)
		}
		for range 5 {
			id := create(t, s, repository.NewExecution{NodeID: "n1", Running: true}).ExecutionID
			require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n1", Status: models.ExecutionCompleted}))
		}
		require.NoError(t, s.BeatNode(ctx, "n1"))
		check := func(stage string) {
			beaten, err := s.HeartbeatNode(ctx, "n1")
			require.NoError(t, err, stage)
			require.ElementsMatch(t, live, beaten, stage)
			nodes, err := s.ListNodes(ctx)
			require.NoError(t, err, stage)
			require.Len(t, nodes, 1, stage)
			require.EqualValues(t, len(live), nodes[0].Executions, stage)
			owned := s.DB().Migrator().HasIndex("workflow_executions", "idx_workflow_executions_owned")
			byNode := s.DB().Migrator().HasIndex("workflow_executions", "idx_workflow_executions_node_id")
			require.True(t, owned != byNode, "%s: owned index %v, node index %v: want exactly one", stage, owned, byNode)
		}
		check("migrated")
		db := s.DB()
		rollBackThrough(t, db, migrations.IDOwnedIndex)
		check("012 rolled back")
		require.True(t, db.Migrator().HasIndex("workflow_executions", "idx_workflow_executions_node_id"))
		require.NoError(t, migrations.RollbackLast(ctx, db))
		check("011 rolled back too")
		require.NoError(t, migrations.Migrate(ctx, db))
		check("migrated again")
		require.True(t, db.Migrator().HasIndex("workflow_executions", "idx_workflow_executions_owned"))
		require.NoError(t, migrations.Migrate(ctx, db))
		check("migrated twice")
		// A claim of n1's stale work after the round trip.
		for _, id := range live {
			ageHeartbeat(t, s, id, time.Hour)
		}
		claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 10})
		require.NoError(t, err)
		require.Len(t, claimed, len(live))
		beaten, err := s.HeartbeatNode(ctx, "n1")
		require.NoError(t, err)
		require.Empty(t, beaten)
	})
}

// TestAdversary12_HeartbeatUsesOwnedIndex: with many ended executions of
// the node and statistics, the heartbeat's and the node list's lookups by
// node read the partial index of live executions (the reason for 012).
func TestAdversary12_HeartbeatUsesOwnedIndex(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv12Ctx(t)
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			for range 300 {
				if _, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true}); err != nil {
					return err
				}
			}
			return nil
		}))
		require.NoError(t, s.DB().Exec(`UPDATE workflow_executions SET status = 'COMPLETED', completed_at = updated_at`).Error)
		create(t, s, repository.NewExecution{NodeID: "n1", Running: true})
		require.NoError(t, s.BeatNode(ctx, "n1"))
		require.NoError(t, s.DB().Exec("ANALYZE").Error)
		c := captureQueries(t, s)
		beaten, err := s.HeartbeatNode(ctx, "n1")
		require.NoError(t, err)
		require.Len(t, beaten, 1)
		_, err = s.ListNodes(ctx)
		require.NoError(t, err)
		require.Len(t, c.sql, 2)
		for i, stmt := range c.sql {
			plan := explain(t, s, stmt, c.vars[i])
			t.Logf("%s plan of %s:\n%s", s.Dialect(), stmt, plan)
			require.Contains(t, plan, "idx_workflow_executions_owned", "statement %d", i)
		}
	})
}

// TestAdversary12_ClaimHonoursDefinitions: a claim restricted to some
// (id, version) pairs takes only executions of exactly those pairs (not
// the crossed ones), due, stale or parked for a stored signal alike; the
// backlog count agrees.
func TestAdversary12_ClaimHonoursDefinitions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv12Ctx(t)
		keys := []repository.DefinitionKey{{"order", "v1"}, {"order", "v2"}, {"other", "v1"}, {"other", "v2"}}
		for _, k := range keys {
			seedDefinition(t, s, k.ID, k.Version)
		}
		byKey := map[repository.DefinitionKey][]string{}
		for _, k := range keys {
			in := repository.NewExecution{DefinitionID: k.ID, DefinitionVersion: k.Version}
			byKey[k] = append(byKey[k], create(t, s, in).ExecutionID) // unowned, due
			in.NodeID, in.Running = "dead", true
			stale := create(t, s, in).ExecutionID
			ageHeartbeat(t, s, stale, time.Hour)
			byKey[k] = append(byKey[k], stale)
			in.NodeID = "n0"
			parked := create(t, s, in).ExecutionID
			require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: parked, NodeID: "n0", Signal: "go"}))
			require.NoError(t, s.SendSignal(ctx, parked, "go", nil))
			byKey[k] = append(byKey[k], parked)
		}
		want := []repository.DefinitionKey{{"order", "v2"}, {"other", "v1"}}
		p := repository.ClaimParams{NodeID: "n1", StaleThreshold: time.Minute, Limit: 100, Definitions: want}
		backlog, _, err := s.Backlog(ctx, p)
		require.NoError(t, err)
		require.Equal(t, 4, backlog, "the due and stale executions of the two pairs (signalled ones are not counted)")
		claimed, err := s.ClaimExecutions(ctx, p)
		require.NoError(t, err)
		var got []string
		for _, x := range claimed {
			require.Contains(t, want, repository.DefinitionKey{ID: x.DefinitionID, Version: x.DefinitionVersion}, "claimed %s of %s@%s", x.ExecutionID, x.DefinitionID, x.DefinitionVersion)
			got = append(got, x.ExecutionID)
		}
		require.ElementsMatch(t, append(append([]string{}, byKey[want[0]]...), byKey[want[1]]...), got)
		// Nothing more for those pairs; the others are still there.
		claimed, err = s.ClaimExecutions(ctx, p)
		require.NoError(t, err)
		require.Empty(t, claimed)
		claimed, err = s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 100,
			Definitions: []repository.DefinitionKey{{"order", "v1"}}})
		require.NoError(t, err)
		got = nil
		for _, x := range claimed {
			got = append(got, x.ExecutionID)
		}
		require.ElementsMatch(t, byKey[repository.DefinitionKey{ID: "order", Version: "v1"}], got)
		claimed, err = s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n3", StaleThreshold: time.Minute, Limit: 100})
		require.NoError(t, err)
		got = nil
		for _, x := range claimed {
			got = append(got, x.ExecutionID)
		}
		require.ElementsMatch(t, byKey[repository.DefinitionKey{ID: "other", Version: "v2"}], got)
	})
}

// adv12Blocker holds a transaction with the execution's row locked, as a
// takeover (or a Cancel) in progress does, on PostgreSQL.
type adv12Blocker struct {
	tx  *gorm.DB
	pid int
}

func adv12Lock(t *testing.T, s *repository.Storage, id string) *adv12Blocker {
	t.Helper()
	tx := s.DB().Begin()
	require.NoError(t, tx.Error)
	b := &adv12Blocker{tx: tx}
	require.NoError(t, tx.Raw(`SELECT pg_backend_pid()`).Scan(&b.pid).Error)
	require.NoError(t, tx.Exec(`SELECT 1 FROM workflow_executions WHERE execution_id = ? FOR UPDATE`, id).Error)
	t.Cleanup(func() { _ = tx.Rollback().Error })
	return b
}

// waitBlocked waits (at most 10 s) for a backend blocked by b.
func (b *adv12Blocker) waitBlocked(t *testing.T, s *repository.Storage) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var n int64
		require.NoError(t, s.DB().Raw(`SELECT count(*) FROM pg_stat_activity WHERE ? = ANY(pg_blocking_pids(pid))`, b.pid).Scan(&n).Error)
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no statement waited for the takeover's row lock within 10 s")
}

// TestAdversary12_TakeoverRacingCheckpoints (PostgreSQL): each fenced write
// of n1 waits for the row lock of a transaction that takes the execution
// over (node n2) or cancels it, then commits: the write must then be
// refused with ErrConcurrentUpdate and write nothing, alone and grouped with
// another execution's checkpoint.
func TestAdversary12_TakeoverRacingCheckpoints(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		if s.Dialect() != "postgres" {
			t.Skip("SQLite serializes writers: no write waits on a row lock")
		}
		ctx := adv12Ctx(t)
		changes := map[string]string{
			"takeover": `UPDATE workflow_executions SET node_id = 'n2', version = version + 1 WHERE execution_id = ?`,
			"cancel":   `UPDATE workflow_executions SET status = 'CANCELLED', completed_at = now(), version = version + 1 WHERE execution_id = ?`,
		}
		for _, grouped := range []bool{false, true} {
			for change, sql := range changes {
				for _, op := range adv12Ops() {
					switch op.name {
					case "FinishStep", "HeartbeatExecutions", "ReceiveSignal":
						continue // they take no lock of the execution's row first: nothing to wait for
					case "UpdateHeartbeat":
						if change == "cancel" || grouped {
							continue // an owner check only; never grouped
						}
					case "ParkExecution", "ReleaseExecution":
						if grouped {
							continue // never grouped
						}
					}
					name := fmt.Sprintf("%s/%s/grouped=%v", op.name, change, grouped)
					id, step := adv12State(t, s, "owned")
					other, otherStep := adv12State(t, s, "owned")
					b := adv12Lock(t, s, id)
					require.NoError(t, b.tx.Exec(sql, id).Error)
					row, steps, sigs := adv12Snapshot(t, s, id) // as committed so far: n1 owns it
					errc := make(chan error, 1)
					otherc := make(chan error, 1)
					if grouped {
						release, ok := repository.HoldCheckpoints(s)
						if !ok {
							require.NoError(t, b.tx.Rollback().Error)
							t.Skip("this storage writes checkpoints one by one")
						}
						go func() { errc <- op.op(ctx, s, id, step) }()
						require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 1 }, 10*time.Second, time.Millisecond, name)
						go func() { otherc <- op.op(ctx, s, other, otherStep) }()
						require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == 2 }, 10*time.Second, time.Millisecond, name)
						release()
					} else {
						go func() { errc <- op.op(ctx, s, id, step) }()
						otherc <- nil
					}
					b.waitBlocked(t, s)
					require.NoError(t, b.tx.Commit().Error)
					var err error
					select {
					case err = <-errc:
					case <-time.After(30 * time.Second):
						t.Fatalf("%s: no answer within 30 s of the takeover's commit", name)
					}
					require.ErrorIs(t, err, repository.ErrConcurrentUpdate, name)
					require.NoError(t, <-otherc, "%s: the other execution's checkpoint", name)
					row2, steps2, sigs2 := adv12Snapshot(t, s, id)
					// The takeover's own change, nothing of n1's.
					if change == "takeover" {
						row.NodeID = ptr("n2")
					} else {
						row.Status = "CANCELLED"
					}
					row.Version++
					require.Equal(t, row, row2, "%s wrote the execution", name)
					require.Equal(t, steps, steps2, "%s wrote the journal", name)
					require.Equal(t, sigs, sigs2, "%s consumed the signal", name)
				}
			}
		}
	})
}

// adv12Tracer records every statement a pgx connection runs.
type adv12Tracer struct {
	mu  sync.Mutex
	sql []string
}

func (r *adv12Tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	r.sql = append(r.sql, d.SQL)
	r.mu.Unlock()
	return ctx
}

func (r *adv12Tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *adv12Tracer) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sql
	r.sql = nil
	return out
}

var adv12Param = regexp.MustCompile(`\$(\d+)`)

// genericPlan returns the plan PostgreSQL caches for query as a prepared
// statement under plan_cache_mode = force_generic_plan (what a cached plan
// of a pgx connection is once it goes generic).
// adv12GenericConn is a connection of its own to dsn on which every
// prepared statement is planned generically, as a cached one would be.
func adv12GenericConn(t *testing.T, ctx context.Context, dsn string) *sql.Conn {
	t.Helper()
	plain, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = plain.Close() })
	conn, err := plain.Conn(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = conn.ExecContext(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	return conn
}

func adv12GenericPlan(t *testing.T, conn *sql.Conn, i int, query string) string {
	t.Helper()
	ctx := adv12Ctx(t)
	n := 0
	for _, m := range adv12Param.FindAllStringSubmatch(query, -1) {
		k, _ := strconv.Atoi(m[1])
		n = max(n, k)
	}
	name := fmt.Sprintf("adv12_%d", i)
	_, err := conn.ExecContext(ctx, "PREPARE "+name+" AS "+query)
	require.NoError(t, err, query)
	defer func() { _, _ = conn.ExecContext(ctx, "DEALLOCATE "+name) }()
	args := make([]string, n)
	for j := range args {
		args[j] = "NULL"
	}
	call := "EXPLAIN EXECUTE " + name
	if n > 0 {
		call += "(" + strings.Join(args, ", ") + ")"
	}
	rows, err := conn.QueryContext(ctx, call)
	require.NoError(t, err, query)
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan.WriteString(line + "\n")
	}
	require.NoError(t, rows.Err())
	return plan.String()
}

// TestAdversary12_GenericPlansOfCheckpointsUsePrimaryKey (PostgreSQL): on a
// table that was never analyzed (autovacuum off) and holds thousands of
// ended executions of the node, every checkpoint statement the storage
// sends (alone and grouped), prepared and planned generically, finds the
// execution by its primary key, never by the index of a node's executions
// or of a definition's; the claim never reads the definition index.
func TestAdversary12_GenericPlansOfCheckpointsUsePrimaryKey(t *testing.T) {
	t.Parallel()
	dsn := testutil.PostgresSchemaDSN(t)
	ctx := adv12Ctx(t)
	tracer := &adv12Tracer{}
	cc, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	cc.Tracer = tracer
	pool := stdlib.OpenDB(*cc)
	pool.SetMaxOpenConns(4)
	t.Cleanup(func() { _ = pool.Close() })
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: pool}), &gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	s, err := repository.New(ctx, gdb)
	require.NoError(t, err)
	for _, table := range []string{"workflow_executions", "step_executions", "signals", "workflow_definitions"} {
		require.NoError(t, gdb.Exec("ALTER TABLE "+table+" SET (autovacuum_enabled = false)").Error)
	}
	seedDefinition(t, s, "order", "v1")
	require.NoError(t, gdb.Exec(`INSERT INTO workflow_executions (execution_id, definition_id, definition_version, status, node_id, version, `+
		`last_heartbeat, created_at, updated_at, started_at, completed_at) SELECT 'old-' || lpad(g::text, 6, '0'), 'order', 'v1', 'COMPLETED', 'n1', 2, `+
		`now(), now(), now(), now(), now() FROM generate_series(1, 5000) g`).Error)
	var analyzed int64
	require.NoError(t, gdb.Raw(`SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'workflow_executions' `+
		`AND schemaname = current_schema() AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)`).Scan(&analyzed).Error)
	require.Zero(t, analyzed, "precondition: the table has no statistics")

	tracer.take()
	var live []string
	for range 4 {
		live = append(live, create(t, s, repository.NewExecution{NodeID: "n1", Running: true}).ExecutionID)
	}
	// Alone: each checkpoint kind once.
	a, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: live[0], StepID: "a", NodeID: "n1", Attempt: 1})
	require.NoError(t, err)
	b, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: live[0], StepID: "b", NodeID: "n1", Attempt: 1,
		Previous: &repository.FinishStepParams{ExecutionID: live[0], StepExecutionID: a.StepExecutionID, NodeID: "n1", Status: models.StepCompleted}})
	require.NoError(t, err)
	require.NoError(t, s.FinishStep(ctx, repository.FinishStepParams{ExecutionID: live[0], StepExecutionID: b.StepExecutionID, NodeID: "n1", Status: models.StepCompleted}))
	require.NoError(t, s.SendSignal(ctx, live[0], "go", 1))
	_, _, err = s.ReceiveSignal(ctx, repository.ReceiveSignalParams{ExecutionID: live[0], NodeID: "n1", SignalName: "go", StepID: "sig"})
	require.NoError(t, err)
	require.NoError(t, s.UpdateHeartbeat(ctx, live[0], "n1"))
	c, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: live[0], StepID: "c", NodeID: "n1", Attempt: 1})
	require.NoError(t, err)
	require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: live[0], NodeID: "n1", Status: models.ExecutionCompleted,
		Previous: &repository.FinishStepParams{ExecutionID: live[0], StepExecutionID: c.StepExecutionID, NodeID: "n1", Status: models.StepCompleted}}))
	require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: live[1], NodeID: "n1", Status: models.ExecutionFailed}))
	require.NoError(t, s.ParkExecution(ctx, repository.ParkParams{ExecutionID: live[2], NodeID: "n1", Signal: "s"}))
	require.NoError(t, s.ReleaseExecution(ctx, live[3], "n1"))
	checkpoints := tracer.take()
	// Grouped: two step starts, then two ends, each pair in one statement.
	var g []string
	for range 2 {
		g = append(g, create(t, s, repository.NewExecution{NodeID: "n1", Running: true}).ExecutionID)
	}
	tracer.take()
	groupedRun := func(op func(id string) error) {
		release, ok := repository.HoldCheckpoints(s)
		require.True(t, ok, "pgx storages group checkpoints")
		errc := make(chan error, len(g))
		for _, id := range g {
			go func() { errc <- op(id) }()
		}
		require.Eventually(t, func() bool { return repository.QueuedCheckpoints(s) == len(g) }, 10*time.Second, time.Millisecond)
		release()
		for range g {
			require.NoError(t, <-errc)
		}
	}
	starts := map[string]string{}
	var mu sync.Mutex
	groupedRun(func(id string) error {
		st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: id, StepID: "a", NodeID: "n1", Attempt: 1})
		if err == nil {
			mu.Lock()
			starts[id] = st.StepExecutionID
			mu.Unlock()
		}
		return err
	})
	groupedRun(func(id string) error {
		mu.Lock()
		step := starts[id]
		mu.Unlock()
		return s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: id, NodeID: "n1", Status: models.ExecutionCompleted,
			Previous: &repository.FinishStepParams{ExecutionID: id, StepExecutionID: step, NodeID: "n1", Status: models.StepCompleted}})
	})
	grouped := tracer.take()

	// The claim and the heartbeat, with a definitions filter.
	for range 3 {
		create(t, s, repository.NewExecution{})
	}
	tracer.take()
	_, err = s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 2,
		Definitions: []repository.DefinitionKey{{"order", "v1"}}})
	require.NoError(t, err)
	_, _, err = s.Backlog(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 2,
		Definitions: []repository.DefinitionKey{{"order", "v1"}}})
	require.NoError(t, err)
	claims := tracer.take()

	require.NoError(t, gdb.Raw(`SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'workflow_executions' `+
		`AND schemaname = current_schema() AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)`).Scan(&analyzed).Error)
	require.Zero(t, analyzed, "the table got statistics during the test")
	conn := adv12GenericConn(t, ctx, dsn)

	forbidden := []string{"idx_workflow_executions_owned", "idx_workflow_executions_node_id", "idx_workflow_executions_definition"}
	seen := 0
	for i, q := range append(checkpoints, grouped...) {
		if !strings.Contains(q, "workflow_executions") || strings.HasPrefix(strings.TrimSpace(q), "SELECT") && !strings.Contains(q, "FOR ") {
			continue // reads of their own (GetExecution after a miss, counts)
		}
		plan := adv12GenericPlan(t, conn, i, q)
		t.Logf("generic plan of %s\n%s", q, plan)
		for _, idx := range forbidden {
			require.NotContains(t, plan, idx, "checkpoint statement %s", q)
		}
		require.Contains(t, plan, "workflow_executions_pkey", "checkpoint statement %s finds its execution by primary key", q)
		seen++
	}
	require.GreaterOrEqual(t, seen, 8, "statements checked")
	for i, q := range claims {
		plan := adv12GenericPlan(t, conn, 1000+i, q)
		t.Logf("generic plan of %s\n%s", q, plan)
		require.NotContains(t, plan, "idx_workflow_executions_definition", "claim statement %s", q)
		require.NotContains(t, plan, "Seq Scan on workflow_executions", "claim statement %s", q)
	}
	require.NotEmpty(t, claims)
}

// TestAdversary12_ZeroRowOutcomesInsideTransaction: inside the caller's
// Storage.Transaction, a refused create (existing id), a start or end that
// lost ownership, and an empty claim are answers, not SQL errors: the
// transaction goes on, and what it wrote after them commits.
func TestAdversary12_ZeroRowOutcomesInsideTransaction(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv12Ctx(t)
		existing := create(t, s, repository.NewExecution{NodeID: "n1", Running: true}).ExecutionID
		lost := create(t, s, repository.NewExecution{NodeID: "n2", Running: true}).ExecutionID
		var fresh string
		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			_, err := tx.CreateExecution(ctx, repository.NewExecution{ExecutionID: existing, DefinitionID: "order", DefinitionVersion: "v1"})
			require.ErrorIs(t, err, repository.ErrAlreadyExists)
			_, err = tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v9"})
			require.ErrorIs(t, err, repository.ErrNotFound)
			_, err = tx.StartStep(ctx, repository.StartStepParams{ExecutionID: lost, StepID: "a", NodeID: "n1", Attempt: 1})
			require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
			err = tx.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: lost, NodeID: "n1", Status: models.ExecutionCompleted})
			require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
			claimed, err := tx.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n3", StaleThreshold: time.Minute, Limit: 5})
			require.NoError(t, err)
			require.Empty(t, claimed)
			x, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true})
			require.NoError(t, err)
			fresh = x.ExecutionID
			st, err := tx.StartStep(ctx, repository.StartStepParams{ExecutionID: fresh, StepID: "a", NodeID: "n1", Attempt: 1})
			require.NoError(t, err)
			require.Equal(t, fresh, st.ExecutionID)
			require.Equal(t, models.StepRunning, st.Status)
			var ended models.WorkflowExecution
			require.NoError(t, tx.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: existing, NodeID: "n1",
				Status: models.ExecutionCompleted, Output: map[string]int{"k": 7}, Finished: &ended}))
			require.Equal(t, existing, ended.ExecutionID)
			require.Equal(t, models.ExecutionCompleted, ended.Status)
			require.JSONEq(t, `{"k":7}`, string(ended.Output))
			return nil
		}))
		require.Len(t, history(t, s, fresh), 1)
		x, err := s.GetExecution(ctx, existing)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCompleted, x.Status)
		require.Empty(t, history(t, s, lost))
		// Outside a transaction, the same answers.
		_, err = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: existing, DefinitionID: "order", DefinitionVersion: "v1"})
		require.ErrorIs(t, err, repository.ErrAlreadyExists)
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: fresh, StepID: "a", NodeID: "n1", Attempt: 1})
		require.ErrorIs(t, err, repository.ErrAlreadyExists, "the same attempt again")
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: repository.NewID(), StepID: "a", NodeID: "n1", Attempt: 1})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate, "an unknown execution")
	})
}

// TestAdversary12_MockRefusedCreate: on sqlmock, an insert that returns no
// row is ErrAlreadyExists when the id exists and ErrNotFound when not, in a
// transaction of the caller's too.
func TestAdversary12_MockRefusedCreate(t *testing.T) {
	t.Parallel()
	for _, exists := range []bool{true, false} {
		for _, inTx := range []bool{false, true} {
			t.Run(fmt.Sprintf("exists=%v/tx=%v", exists, inTx), func(t *testing.T) {
				db, mock := testutil.NewMockDB(t)
				in := repository.NewExecution{ExecutionID: "e-1", DefinitionID: "order", DefinitionVersion: "v1"}
				want := repository.ErrNotFound
				if exists {
					want = repository.ErrAlreadyExists
				}
				if !inTx {
					s, err := repository.New(context.Background(), db, repository.WithoutMigrations())
					require.NoError(t, err)
					testutil.ExpectCreateExecutionRefused(mock, in, exists)
					_, err = s.CreateExecution(context.Background(), in)
					require.ErrorIs(t, err, want)
					return
				}
				mock.ExpectBegin()
				testutil.ExpectCreateExecutionRefused(mock, in, exists, testutil.InTransaction())
				mock.ExpectCommit()
				require.NoError(t, db.Transaction(func(tx *gorm.DB) error {
					s, err := repository.InTransaction(tx)
					require.NoError(t, err)
					_, err = s.CreateExecution(context.Background(), in)
					require.ErrorIs(t, err, want)
					return nil
				}))
			})
		}
	}
}

// adv12SQLite opens a file storage at path.
func adv12SQLite(t *testing.T, path string) *repository.Storage {
	t.Helper()
	s, err := repository.NewSQLite(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestAdversary12_SQLiteTwoStoragesWriteAtOnce: two storages on one file
// (two processes, in effect: separate pools, no shared group commit) write
// executions, steps and ends at once, and one holds a write transaction
// meanwhile: every call succeeds (busy timeout and retries), nothing is
// lost.
func TestAdversary12_SQLiteTwoStoragesWriteAtOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "two.db")
	a := adv12SQLite(t, path)
	seedDefinition(t, a, "order", "v1")
	b := adv12SQLite(t, path)
	ctx := adv12Ctx(t)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each+1)
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		node := fmt.Sprintf("n%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				x, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: node, Running: true})
				if err != nil {
					errs <- fmt.Errorf("create: %w", err)
					return
				}
				st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: node, Attempt: 1, Input: "in"})
				if err != nil {
					errs <- fmt.Errorf("start: %w", err)
					return
				}
				if err := s.SendSignal(ctx, x.ExecutionID, "sig", 1); err != nil {
					errs <- fmt.Errorf("signal: %w", err)
					return
				}
				if err := s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: x.ExecutionID, NodeID: node, Status: models.ExecutionCompleted,
					Previous: &repository.FinishStepParams{ExecutionID: x.ExecutionID, StepExecutionID: st.StepExecutionID, NodeID: node, Status: models.StepCompleted}}); err != nil {
					errs <- fmt.Errorf("finish: %w", err)
					return
				}
			}
		}()
	}
	// A long write transaction on one storage while the others write.
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := b.Transaction(ctx, func(tx *repository.Storage) error {
			if _, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1"}); err != nil {
				return err
			}
			time.Sleep(300 * time.Millisecond)
			return nil
		})
		if err != nil {
			errs <- fmt.Errorf("transaction: %w", err)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var n, done, steps int64
	require.NoError(t, a.DB().Table("workflow_executions").Count(&n).Error)
	require.NoError(t, a.DB().Table("workflow_executions").Where("status = 'COMPLETED'").Count(&done).Error)
	require.NoError(t, a.DB().Table("step_executions").Where("status = 'COMPLETED'").Count(&steps).Error)
	require.EqualValues(t, workers*each+1, n)
	require.EqualValues(t, workers*each, done)
	require.EqualValues(t, workers*each, steps)
	var check string
	require.NoError(t, a.DB().Raw("PRAGMA integrity_check").Scan(&check).Error)
	require.Equal(t, "ok", check)
}

// TestAdversary12_SQLiteUniqueViolations: on a file database and in memory,
// what the database refuses as a duplicate comes back as ErrAlreadyExists
// (the driver's constraint codes are read right), and a foreign key as
// ErrNotFound or ErrConcurrentUpdate, never as a raw driver error.
func TestAdversary12_SQLiteUniqueViolations(t *testing.T) {
	t.Parallel()
	stores := map[string]*repository.Storage{
		"file":   adv12SQLite(t, filepath.Join(t.TempDir(), "u.db")),
		"memory": testutil.NewSQLiteStorage(t),
	}
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := adv12Ctx(t)
			seedDefinition(t, s, "order", "v1")
			x := create(t, s, repository.NewExecution{NodeID: "n1", Running: true, Labels: map[string]string{"k": "v"}})
			_, err := s.CreateExecution(ctx, repository.NewExecution{ExecutionID: x.ExecutionID, DefinitionID: "order", DefinitionVersion: "v1"})
			require.ErrorIs(t, err, repository.ErrAlreadyExists)
			_, err = s.CreateExecution(ctx, repository.NewExecution{ExecutionID: x.ExecutionID, DefinitionID: "order", DefinitionVersion: "v1",
				Labels: map[string]string{"k": "v"}})
			require.ErrorIs(t, err, repository.ErrAlreadyExists, "with labels (its own transaction)")
			_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
			require.NoError(t, err)
			_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
			require.ErrorIs(t, err, repository.ErrAlreadyExists)
			require.NoError(t, s.SendSignal(ctx, x.ExecutionID, "go", 1))
			require.NoError(t, s.SendSignal(ctx, x.ExecutionID, "go", 2))
			_, got, err := s.ReceiveSignal(ctx, repository.ReceiveSignalParams{ExecutionID: x.ExecutionID, NodeID: "n1", SignalName: "go", StepID: "sig"})
			require.NoError(t, err)
			require.True(t, got)
			_, _, err = s.ReceiveSignal(ctx, repository.ReceiveSignalParams{ExecutionID: x.ExecutionID, NodeID: "n1", SignalName: "go", StepID: "sig"})
			require.ErrorIs(t, err, repository.ErrAlreadyExists)
			pending, err := s.ListPendingSignals(ctx, x.ExecutionID)
			require.NoError(t, err)
			require.Len(t, pending, 1, "the refused receive consumed nothing")
			_, err = s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "nope"})
			require.ErrorIs(t, err, repository.ErrNotFound)
			err = s.SendSignal(ctx, repository.NewID(), "go", 1)
			require.ErrorIs(t, err, repository.ErrNotFound)
			// Contention between transactions is retried, a duplicate is not:
			// concurrent creates of one id, exactly one wins.
			id := repository.NewID()
			var wg sync.WaitGroup
			results := make(chan error, 8)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := s.CreateExecution(ctx, repository.NewExecution{ExecutionID: id, DefinitionID: "order", DefinitionVersion: "v1",
						Labels: map[string]string{"a": "b"}})
					results <- err
				}()
			}
			wg.Wait()
			close(results)
			won := 0
			for err := range results {
				if err == nil {
					won++
					continue
				}
				require.ErrorIs(t, err, repository.ErrAlreadyExists)
			}
			require.Equal(t, 1, won)
		})
	}
}

// TestAdversary12_Payloads: odd payloads either round-trip byte for byte or
// are refused as ErrInvalidArgument before anything is written, on both
// dialects: invalid UTF-8, NUL (raw, escaped, and an escaped backslash
// before "u0000", which is fine), 4-byte runes, and 10 MB documents.
func TestAdversary12_Payloads(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := adv12Ctx(t)
		refused := []any{
			"bad \xff utf8",
			"nul \x00 inside",
			[]byte(`{"a":"\u0000"}`),
			[]byte("{\"a\":\"\xc3\x28\"}"),
			map[string]string{"k\xfe": "v"},
		}
		for i, in := range refused {
			_, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Input: in})
			require.ErrorIs(t, err, repository.ErrInvalidArgument, "input %d", i)
		}
		var n int64
		require.NoError(t, s.DB().Table("workflow_executions").Count(&n).Error)
		require.Zero(t, n)
		big := strings.Repeat("é𝄞x", 10<<20/7)
		accepted := []any{
			map[string]string{"s": `\u0000 is text here`},
			[]byte(`{"a":"\\u0000"}`),
			"😀 𝄞 \u2028 \u2029 \ufeff",
			big,
		}
		for i, in := range accepted {
			x, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Input: in, NodeID: "n1", Running: true})
			require.NoError(t, err, "input %d", i)
			want, err := repository.EncodeJSON("x", in)
			require.NoError(t, err)
			same := func(what string, got []byte) {
				t.Helper()
				if str, ok := in.(string); ok && str == big {
					var back string
					require.NoError(t, json.Unmarshal(got, &back), what)
					require.True(t, back == big, "%s: the 10 MB document differs after the round trip (%d bytes back)", what, len(back))
					return
				}
				require.JSONEq(t, string(want), string(got), "%s %d", what, i)
			}
			got, err := s.GetExecution(ctx, x.ExecutionID)
			require.NoError(t, err)
			same("input", got.Input)
			st, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1, Input: in})
			require.NoError(t, err)
			require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: x.ExecutionID, NodeID: "n1",
				Status: models.ExecutionCompleted, Output: in,
				Previous: &repository.FinishStepParams{ExecutionID: x.ExecutionID, StepExecutionID: st.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: in}}))
			got, err = s.GetExecution(ctx, x.ExecutionID)
			require.NoError(t, err)
			same("output", got.Output)
			h := history(t, s, x.ExecutionID)
			require.Len(t, h, 1)
			same("step input", h[0].Input)
			same("step output", h[0].Output)
		}
	})
}

// TestAdversary12_SQLiteCancelMidStatement: calls whose context ends at
// random points (before, during and after their statements) on a file
// database leave a pool that works and a database that is consistent: no
// connection is left inside a transaction or interrupted, and every
// execution either exists whole or not at all.
func TestAdversary12_SQLiteCancelMidStatement(t *testing.T) {
	t.Parallel()
	s := adv12SQLite(t, filepath.Join(t.TempDir(), "c.db"))
	seedDefinition(t, s, "order", "v1")
	ctx := adv12Ctx(t)
	// Some rows for reads to spend time on.
	require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
		for range 2000 {
			if _, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1",
				Labels: map[string]string{"k": "v"}}); err != nil {
				return err
			}
		}
		return nil
	}))
	deadline := time.Now().Add(20 * time.Second)
	var cancelled int
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(i%40)*50*time.Microsecond)
		var wg sync.WaitGroup
		wg.Add(3)
		go func() {
			defer wg.Done()
			x, err := s.CreateExecution(cctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n1", Running: true,
				Labels: map[string]string{"i": strconv.Itoa(i)}})
			if err != nil {
				return
			}
			st, err := s.StartStep(cctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
			if err != nil {
				return
			}
			_ = s.FinishExecution(cctx, repository.FinishExecutionParams{ExecutionID: x.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted,
				Previous: &repository.FinishStepParams{ExecutionID: x.ExecutionID, StepExecutionID: st.StepExecutionID, NodeID: "n1", Status: models.StepCompleted}})
		}()
		go func() {
			defer wg.Done()
			_, err := s.ListExecutions(cctx, repository.ExecutionFilter{Labels: map[string]string{"k": "v"}, Limit: 1000})
			if err != nil {
				cancelled++
			}
		}()
		go func() {
			defer wg.Done()
			_ = s.Transaction(cctx, func(tx *repository.Storage) error {
				_, err := tx.CreateExecution(cctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", Labels: map[string]string{"tx": "1"}})
				return err
			})
		}()
		wg.Wait()
		cancel()
	}
	t.Logf("%d reads cancelled", cancelled)
	// The pool still works, on every connection.
	for range 20 {
		x, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "n9", Running: true})
		require.NoError(t, err)
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "n9", Attempt: 1})
		require.NoError(t, err)
		page, err := s.ListExecutions(ctx, repository.ExecutionFilter{Labels: map[string]string{"k": "v"}, Limit: 1000})
		require.NoError(t, err)
		require.Len(t, page, 1000)
	}
	var check string
	require.NoError(t, s.DB().Raw("PRAGMA integrity_check").Scan(&check).Error)
	require.Equal(t, "ok", check)
	// Whole or nothing: every execution of the loop has its label, every
	// COMPLETED one its completed step; every transaction's has its label.
	var broken int64
	require.NoError(t, s.DB().Raw(`SELECT count(*) FROM workflow_executions e WHERE e.node_id = 'n1' AND NOT EXISTS `+
		`(SELECT 1 FROM workflow_execution_labels l WHERE l.execution_id = e.execution_id AND l.label_key = 'i')`).Scan(&broken).Error)
	require.Zero(t, broken, "executions without their labels")
	require.NoError(t, s.DB().Raw(`SELECT count(*) FROM workflow_executions e WHERE e.status = 'COMPLETED' AND NOT EXISTS `+
		`(SELECT 1 FROM step_executions st WHERE st.execution_id = e.execution_id AND st.status = 'COMPLETED')`).Scan(&broken).Error)
	require.Zero(t, broken, "completed executions whose last step was not written with the end")
	require.NoError(t, s.DB().Raw(`SELECT count(*) FROM workflow_executions e WHERE e.node_id IS NULL AND e.execution_id NOT IN `+
		`(SELECT execution_id FROM workflow_execution_labels)`).Scan(&broken).Error)
	require.Zero(t, broken, "transactions committed in part")
}

// TestAdversary12_SQLiteReopenAfterKill: a process writing to a file
// database is SIGKILLed mid-work; the file opens again (WAL recovery under
// the new driver), passes integrity_check, holds every write the process
// saw commit, whole, and takes new writes.
func TestAdversary12_SQLiteReopenAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "killed.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAdversary12HelperWriter$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "ADV12_SQLITE_PATH="+path, "ADV12_ROUND="+strconv.Itoa(round))
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		committed := map[string]bool{}
		lines := bufio.NewScanner(out)
		lines.Buffer(make([]byte, 1<<20), 1<<20)
		timer := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
		for lines.Scan() {
			line := lines.Text()
			if id, ok := strings.CutPrefix(line, "COMMITTED "); ok {
				committed[id] = true
				if len(committed) == 40 {
					require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
				}
			}
		}
		timer.Stop()
		_ = cmd.Wait()
		require.GreaterOrEqual(t, len(committed), 40, "round %d: the writer committed too little before it died", round)
		st, _ := os.Stat(path + "-wal")
		t.Logf("round %d: killed after %d commits seen; WAL left: %v", round, len(committed), st != nil && st.Size() > 0)

		s, err := repository.NewSQLite(context.Background(), path)
		require.NoError(t, err, "round %d: reopening after the kill", round)
		var check string
		require.NoError(t, s.DB().Raw("PRAGMA integrity_check").Scan(&check).Error)
		require.Equal(t, "ok", check, "round %d", round)
		for id := range committed {
			x, err := s.GetExecution(context.Background(), id)
			require.NoError(t, err, "round %d: committed execution %s lost", round, id)
			require.Equal(t, models.ExecutionCompleted, x.Status, "round %d", round)
			h := history(t, s, id)
			require.Len(t, h, 2, "round %d", round)
			require.Equal(t, "v", x.Labels["k"], "round %d", round)
		}
		var broken int64
		require.NoError(t, s.DB().Raw(`SELECT count(*) FROM workflow_executions e WHERE e.status = 'COMPLETED' AND `+
			`(SELECT count(*) FROM step_executions st WHERE st.execution_id = e.execution_id AND st.status = 'COMPLETED') <> 2`).Scan(&broken).Error)
		require.Zero(t, broken, "round %d: completed executions without both steps", round)
		x, err := s.CreateExecution(context.Background(), repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: "after", Running: true})
		require.NoError(t, err, "round %d: writing after the reopen", round)
		_, err = s.StartStep(context.Background(), repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: "after", Attempt: 1})
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
}

// TestAdversary12HelperWriter is the child of TestAdversary12_SQLiteReopenAfterKill:
// it writes executions of two steps each until killed, printing each id once
// its end returned.
func TestAdversary12HelperWriter(t *testing.T) {
	path := os.Getenv("ADV12_SQLITE_PATH")
	if path == "" {
		t.Skip("helper of TestAdversary12_SQLiteReopenAfterKill")
	}
	ctx := context.Background()
	s, err := repository.NewSQLite(ctx, path)
	if err != nil {
		fmt.Println("OPEN", err)
		os.Exit(3)
	}
	if err := s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: "order", Version: "v1", Name: "order", Spec: models.JSON(`{}`)}); err != nil {
		fmt.Println("DEF", err)
		os.Exit(3)
	}
	node := "w" + os.Getenv("ADV12_ROUND")
	var wg sync.WaitGroup
	var mu sync.Mutex
	deadline := time.Now().Add(50 * time.Second)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				x, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1", NodeID: node, Running: true,
					Labels: map[string]string{"k": "v"}, Input: strings.Repeat("p", 2000)})
				if err != nil {
					fmt.Println("ERR", err)
					os.Exit(4)
				}
				a, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "a", NodeID: node, Attempt: 1})
				if err != nil {
					fmt.Println("ERR", err)
					os.Exit(4)
				}
				b, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: x.ExecutionID, StepID: "b", NodeID: node, Attempt: 1,
					Previous: &repository.FinishStepParams{ExecutionID: x.ExecutionID, StepExecutionID: a.StepExecutionID, NodeID: node, Status: models.StepCompleted}})
				if err != nil {
					fmt.Println("ERR", err)
					os.Exit(4)
				}
				if err := s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: x.ExecutionID, NodeID: node, Status: models.ExecutionCompleted,
					Previous: &repository.FinishStepParams{ExecutionID: x.ExecutionID, StepExecutionID: b.StepExecutionID, NodeID: node, Status: models.StepCompleted}}); err != nil {
					fmt.Println("ERR", err)
					os.Exit(4)
				}
				mu.Lock()
				fmt.Println("COMMITTED " + x.ExecutionID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestAdversary12_GenericPlansOfSweepsSkipParked (PostgreSQL): before the
// table has statistics, with thousands of executions parked for a signal
// (live, no owner) and a few signals pending, the sweep's generic plans
// (probe, claim, backlog count) must not read every parked execution
// through an index range "node_id IS NULL": per sweep, or per pending
// signal in the signalled pick. Run with migration 012 (the partial index
// of live executions by node) and without it (the old full index), to tell
// a regression from an old behaviour.
func TestAdversary12_GenericPlansOfSweepsSkipParked(t *testing.T) {
	t.Parallel()
	for _, variant := range []string{"with-012", "without-012"} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			ctx := adv12Ctx(t)
			dsn := testutil.PostgresSchemaDSN(t)
			s, err := repository.NewPostgres(ctx, dsn, repository.WithMaxOpenConns(2))
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			db := s.DB()
			if variant == "without-012" {
				rollBackThrough(t, db, migrations.IDOwnedIndex)
				// A storage opened on it as it now is (013, which needs 012,
				// is gone too).
				s, err = repository.NewPostgres(ctx, dsn, repository.WithMaxOpenConns(2), repository.WithoutMigrations())
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				db = s.DB()
			}
			for _, table := range []string{"workflow_executions", "step_executions", "signals", "workflow_definitions", "workflow_nodes"} {
				require.NoError(t, db.Exec("ALTER TABLE "+table+" SET (autovacuum_enabled = false)").Error)
			}
			seedDefinition(t, s, "order", "v1")
			require.NoError(t, db.Exec(`INSERT INTO workflow_executions (execution_id, definition_id, definition_version, status, node_id, version, `+
				`last_heartbeat, created_at, updated_at, started_at, completed_at) SELECT 'old-' || lpad(g::text, 6, '0'), 'order', 'v1', 'COMPLETED', 'n1', 2, `+
				`now(), now(), now(), now(), now() FROM generate_series(1, 5000) g`).Error)
			require.NoError(t, db.Exec(`INSERT INTO workflow_executions (execution_id, definition_id, definition_version, status, node_id, version, `+
				`last_heartbeat, created_at, updated_at, started_at, wait_signal) SELECT 'parked-' || lpad(g::text, 6, '0'), 'order', 'v1', 'RUNNING', NULL, 2, `+
				`'9999-12-31', now(), now(), now(), 'go' FROM generate_series(1, 3000) g`).Error)
			for i := range 3 {
				require.NoError(t, s.SendSignal(ctx, fmt.Sprintf("parked-%06d", i+1), "go", i))
			}
			for range 3 {
				create(t, s, repository.NewExecution{})
			}
			var analyzed int64
			require.NoError(t, db.Raw(`SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'workflow_executions' `+
				`AND schemaname = current_schema() AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)`).Scan(&analyzed).Error)
			require.Zero(t, analyzed, "precondition: no statistics")
			c := captureQueries(t, s)
			p := repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Minute, Limit: 2, Definitions: []repository.DefinitionKey{{"order", "v1"}}}
			_, _, err = s.Backlog(ctx, p)
			require.NoError(t, err)
			claimed, err := s.ClaimExecutions(ctx, p)
			require.NoError(t, err)
			require.Len(t, claimed, 2)
			p.Definitions = nil
			_, err = s.ClaimExecutions(ctx, p)
			require.NoError(t, err)
			c.mu.Lock()
			stmts := append([]string(nil), c.sql...)
			c.mu.Unlock()
			require.Len(t, stmts, 5, "backlog, probe and claim, probe and claim")

			conn := adv12GenericConn(t, ctx, dsn)
			// The probe reads the parked executions once either way (a hash
			// join from the signals: logged, not asserted). The claim's
			// signalled pick runs once per pending signal: it must find the
			// signal's execution by primary key.
			claims := 0
			for i, q := range stmts {
				plan := adv12GenericPlan(t, conn, i, q)
				t.Logf("%s: generic plan of %s\n%s", variant, q, plan)
				if !strings.HasPrefix(q, "WITH due") {
					continue
				}
				claims++
				require.Contains(t, plan, "Index Cond: (execution_id = s.execution_id)",
					"%s: the claim's signalled pick does not look the signal's execution up by primary key; per pending signal it reads "+
						"every parked execution (\"Index Cond: (node_id IS NULL)\" on the index by node): %v", variant, strings.Contains(plan, "Index Cond: (node_id IS NULL)"))
			}
			require.Equal(t, 2, claims)
		})
	}
}

// rollBackThrough rolls db's migrations back, newest first, until id is
// rolled back too.
func rollBackThrough(t *testing.T, db *gorm.DB, id string) {
	t.Helper()
	for {
		var ids []string
		require.NoError(t, db.Table(migrations.TableName).Order("id").Pluck("id", &ids).Error)
		require.Contains(t, ids, id)
		require.NoError(t, migrations.RollbackLast(context.Background(), db))
		if ids[len(ids)-1] == id {
			return
		}
	}
}
