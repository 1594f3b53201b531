package repository_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func TestOwner_HeartbeatNode(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		a := create(t, s, repository.NewExecution{NodeID: "n1"})
		b := create(t, s, repository.NewExecution{NodeID: "n1"})
		done := create(t, s, repository.NewExecution{NodeID: "n1"})
		other := create(t, s, repository.NewExecution{NodeID: "n2"})
		require.NoError(t, s.UpdateExecutionStatus(ctx, done.ExecutionID, models.ExecutionCompleted))
		for _, e := range []string{a.ExecutionID, b.ExecutionID, done.ExecutionID, other.ExecutionID} {
			ageHeartbeat(t, s, e, time.Hour)
		}
		beat, err := s.HeartbeatNode(ctx, "n1")
		require.NoError(t, err)
		require.ElementsMatch(t, []string{a.ExecutionID, b.ExecutionID}, beat, "live executions of n1 only")
		stale, err := s.ListStaleExecutions(ctx, time.Minute, nil)
		require.NoError(t, err)
		require.Equal(t, []string{other.ExecutionID}, ids(stale))
		got, err := s.GetExecution(ctx, a.ExecutionID)
		require.NoError(t, err)
		require.EqualValues(t, 1, got.Version, "a heartbeat bumps no version")
	})
}

func TestOwner_Claim(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		unowned := create(t, s, repository.NewExecution{})
		stale := create(t, s, repository.NewExecution{NodeID: "dead"})
		fresh := create(t, s, repository.NewExecution{NodeID: "alive"})
		done := create(t, s, repository.NewExecution{})
		require.NoError(t, s.UpdateExecutionStatus(ctx, done.ExecutionID, models.ExecutionFailed))
		ageHeartbeat(t, s, stale.ExecutionID, time.Hour)

		claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "me", StaleThreshold: time.Minute, Limit: 10})
		require.NoError(t, err)
		require.ElementsMatch(t, []string{unowned.ExecutionID, stale.ExecutionID}, ids(claimed))
		for _, e := range claimed {
			require.Equal(t, "me", *e.NodeID)
			require.EqualValues(t, 2, e.Version, "a claim bumps the version")
		}
		again, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "other", StaleThreshold: time.Minute, Limit: 10})
		require.NoError(t, err)
		require.Empty(t, again, "claimed executions are fresh")
		got, err := s.GetExecution(ctx, fresh.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, "alive", *got.NodeID)
	})
}

func TestOwner_ClaimOnlyKnownDefinitions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		seedDefinition(t, s, "refund", "v2")
		order := create(t, s, repository.NewExecution{})
		refund := create(t, s, repository.NewExecution{DefinitionID: "refund", DefinitionVersion: "v2"})
		claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "me", StaleThreshold: time.Minute, Limit: 10,
			Definitions: []repository.DefinitionKey{{ID: "refund", Version: "v2"}, {ID: "order", Version: "v9"}}})
		require.NoError(t, err)
		require.Equal(t, []string{refund.ExecutionID}, ids(claimed))
		got, err := s.GetExecution(ctx, order.ExecutionID)
		require.NoError(t, err)
		require.Nil(t, got.NodeID, "an execution of a definition the node cannot run stays unclaimed")
	})
}

func TestOwner_ConcurrentClaimsTakeEachOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		const total, claimers = 60, 6
		for range total {
			create(t, s, repository.NewExecution{})
		}
		var mu sync.Mutex
		owner := map[string]string{}
		race(t, claimers, func(i int) {
			node := nodeName(i)
			for range total { // bounded
				got, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: node, StaleThreshold: time.Minute, Limit: 5})
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, e := range got {
					if prev, dup := owner[e.ExecutionID]; dup {
						t.Errorf("%s claimed by %s and %s", e.ExecutionID, prev, node)
					}
					owner[e.ExecutionID] = node
				}
				mu.Unlock()
			}
		})
		require.Len(t, owner, total)
	})
}

func TestOwner_CheckpointsAreFenced(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		e := create(t, s, repository.NewExecution{NodeID: "n1"})
		step, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "charge", NodeID: "n1", Attempt: 1, Input: 5})
		require.NoError(t, err)
		require.Equal(t, models.StepRunning, step.Status)
		got, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, "charge", *got.CurrentStepID)

		// n1 is presumed dead and n2 takes over: n1 can no longer write.
		require.NoError(t, s.TransferOwnership(ctx, e.ExecutionID, "n2", int64(got.Version)))
		err = s.FinishStep(ctx, repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: step.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: "paid"})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "ship", NodeID: "n1", Attempt: 1})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
		err = s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
		history, err := s.GetStepExecutionHistory(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Len(t, history, 1)
		require.Equal(t, models.StepRunning, history[0].Status, "the fenced write changed nothing")

		// The new owner carries on with the next attempt.
		retry, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "charge", NodeID: "n2", Attempt: 2})
		require.NoError(t, err)
		require.NoError(t, s.FinishStep(ctx, repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: retry.StepExecutionID, NodeID: "n2", Status: models.StepCompleted, Output: "paid"}))
		require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: e.ExecutionID, NodeID: "n2", Status: models.ExecutionCompleted, Output: map[string]string{"ok": "yes"}}))
		got, err = s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, models.ExecutionCompleted, got.Status)
		require.NotNil(t, got.CompletedAt)
		require.JSONEq(t, `{"ok":"yes"}`, string(got.Output))
		// A terminal execution takes no more checkpoints, even from its owner.
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "late", NodeID: "n2", Attempt: 1})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
	})
}

func TestOwner_ReceiveSignal(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		e := create(t, s, repository.NewExecution{NodeID: "n1"})
		p := repository.ReceiveSignalParams{ExecutionID: e.ExecutionID, NodeID: "n1", SignalName: "approve", StepID: "signal:approve:1"}
		_, ok, err := s.ReceiveSignal(ctx, p)
		require.NoError(t, err)
		require.False(t, ok)

		require.NoError(t, s.SendSignal(ctx, e.ExecutionID, "approve", map[string]string{"by": "ann"}))
		notOwner := p
		notOwner.NodeID = "n2"
		_, _, err = s.ReceiveSignal(ctx, notOwner)
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)

		step, ok, err := s.ReceiveSignal(ctx, p)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, models.StepCompleted, step.Status)
		require.JSONEq(t, `{"by":"ann"}`, string(step.Output))
		_, ok, err = s.CheckSignal(ctx, e.ExecutionID, "approve")
		require.NoError(t, err)
		require.False(t, ok, "consumed")

		require.NoError(t, s.SendSignal(ctx, e.ExecutionID, "approve", 2))
		_, _, err = s.ReceiveSignal(ctx, p)
		require.ErrorIs(t, err, repository.ErrAlreadyExists, "journaled once; the signal stays")
		_, ok, err = s.CheckSignal(ctx, e.ExecutionID, "approve")
		require.NoError(t, err)
		require.True(t, ok)
	})
}

func TestOwner_StartStepCarriesPreviousCompletion(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		e := create(t, s, repository.NewExecution{NodeID: "n1"})
		first, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "a", NodeID: "n1", Attempt: 1})
		require.NoError(t, err)
		done := &repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: first.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: 1}
		second, err := s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "b", NodeID: "n1", Attempt: 1, Previous: done})
		require.NoError(t, err)
		h, err := s.GetStepExecutionHistory(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, []models.StepStatus{models.StepCompleted, models.StepRunning}, []models.StepStatus{h[0].Status, h[1].Status})
		require.JSONEq(t, "1", string(h[0].Output))

		// Fenced: neither the completion nor the start is written.
		got, err := s.GetExecution(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.NoError(t, s.TransferOwnership(ctx, e.ExecutionID, "n2", int64(got.Version)))
		done = &repository.FinishStepParams{ExecutionID: e.ExecutionID, StepExecutionID: second.StepExecutionID, NodeID: "n1", Status: models.StepCompleted, Output: 2}
		_, err = s.StartStep(ctx, repository.StartStepParams{ExecutionID: e.ExecutionID, StepID: "c", NodeID: "n1", Attempt: 1, Previous: done})
		require.ErrorIs(t, err, repository.ErrConcurrentUpdate)
		h, err = s.GetStepExecutionHistory(ctx, e.ExecutionID)
		require.NoError(t, err)
		require.Len(t, h, 2)
		require.Equal(t, models.StepRunning, h[1].Status)
	})
}

func TestHeartbeatExecutions_OnlyOwnedLiveOnes(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		require.NoError(t, s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: "d", Version: "v1", Name: "d"}))
		mine, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "d", DefinitionVersion: "v1", NodeID: "n1"})
		require.NoError(t, err)
		theirs, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "d", DefinitionVersion: "v1", NodeID: "n2"})
		require.NoError(t, err)
		ended, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "d", DefinitionVersion: "v1", NodeID: "n1"})
		require.NoError(t, err)
		require.NoError(t, s.FinishExecution(ctx, repository.FinishExecutionParams{ExecutionID: ended.ExecutionID, NodeID: "n1", Status: models.ExecutionCompleted}))
		notRun, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "d", DefinitionVersion: "v1", NodeID: "n1"})
		require.NoError(t, err)

		ids, err := s.HeartbeatExecutions(ctx, "n1", []string{mine.ExecutionID, theirs.ExecutionID, ended.ExecutionID})
		require.NoError(t, err)
		require.Equal(t, []string{mine.ExecutionID}, ids)
		got, err := s.GetExecution(ctx, notRun.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, notRun.LastHeartbeat, got.LastHeartbeat, "an execution not named keeps its old heartbeat")
		ids, err = s.HeartbeatExecutions(ctx, "n1", nil)
		require.NoError(t, err)
		require.Empty(t, ids)
		_, err = s.HeartbeatExecutions(ctx, "n1", []string{""})
		require.ErrorIs(t, err, repository.ErrInvalidArgument)
	})
}

func TestReleaseExecution_OwnerOnly(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		require.NoError(t, s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: "d", Version: "v1", Name: "d"}))
		exec, err := s.CreateExecution(ctx, repository.NewExecution{DefinitionID: "d", DefinitionVersion: "v1", NodeID: "n1"})
		require.NoError(t, err)
		require.ErrorIs(t, s.ReleaseExecution(ctx, exec.ExecutionID, "n2"), repository.ErrConcurrentUpdate)
		require.NoError(t, s.ReleaseExecution(ctx, exec.ExecutionID, "n1"))
		got, err := s.GetExecution(ctx, exec.ExecutionID)
		require.NoError(t, err)
		require.Nil(t, got.NodeID)
		require.Equal(t, exec.Version+1, got.Version)
		require.ErrorIs(t, s.ReleaseExecution(ctx, exec.ExecutionID, "n1"), repository.ErrConcurrentUpdate, "released already")
		claimed, err := s.ClaimExecutions(ctx, repository.ClaimParams{NodeID: "n2", StaleThreshold: time.Hour, Limit: 10})
		require.NoError(t, err)
		require.Len(t, claimed, 1, "an unowned execution is claimable at once")
		require.ErrorIs(t, s.ReleaseExecution(ctx, "", "n1"), repository.ErrInvalidArgument)
	})
}
