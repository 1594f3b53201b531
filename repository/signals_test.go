package repository_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/repository"
)

func TestSignal_SendCheckConsume(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{})

		_, ok, err := s.CheckSignal(ctx, exec.ExecutionID, "approve")
		require.NoError(t, err)
		require.False(t, ok)
		_, ok, err = s.ConsumeSignal(ctx, exec.ExecutionID, "approve")
		require.NoError(t, err)
		require.False(t, ok)

		require.NoError(t, s.SendSignal(ctx, exec.ExecutionID, "approve", map[string]bool{"ok": true}))
		for range 2 { // checking does not consume
			sig, ok, err := s.CheckSignal(ctx, exec.ExecutionID, "approve")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "approve", sig.Name)
			require.JSONEq(t, `{"ok":true}`, string(sig.Payload))
		}
		sig, ok, err := s.ConsumeSignal(ctx, exec.ExecutionID, "approve")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, exec.ExecutionID, sig.ExecutionID)
		require.JSONEq(t, `{"ok":true}`, string(sig.Payload))
		require.False(t, sig.ReceivedAt.IsZero())
		_, ok, err = s.ConsumeSignal(ctx, exec.ExecutionID, "approve")
		require.NoError(t, err)
		require.False(t, ok, "consumed once")

		require.ErrorIs(t, s.SendSignal(ctx, "missing", "approve", nil), repository.ErrNotFound)
	})
}

func TestSignal_FIFOWithinOneSecond(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		exec := create(t, s, repository.NewExecution{})
		const n = 20
		for i := range n {
			require.NoError(t, s.SendSignal(ctx, exec.ExecutionID, "tick", i))
			require.NoError(t, s.SendSignal(ctx, exec.ExecutionID, "other", -i))
		}
		for i := range n {
			sig, ok, err := s.ConsumeSignal(ctx, exec.ExecutionID, "tick")
			require.NoError(t, err)
			require.True(t, ok)
			var got int
			require.NoError(t, json.Unmarshal(sig.Payload, &got))
			require.Equal(t, i, got, fmt.Sprintf("signal %d out of order", i))
		}
		_, ok, err := s.CheckSignal(ctx, exec.ExecutionID, "other")
		require.NoError(t, err)
		require.True(t, ok, "names are separate queues")
	})
}
