package repository_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func TestDefinition_RoundTrip(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		def := &models.WorkflowDefinition{ID: "ship", Version: "1.0", Name: "Shipping", Spec: models.JSON(`{"steps":[{"id":"pack"}]}`)}
		require.NoError(t, s.SaveDefinition(ctx, def))
		require.False(t, def.CreatedAt.IsZero())
		created := def.CreatedAt

		got, err := s.GetDefinition(ctx, "ship", "1.0")
		require.NoError(t, err)
		require.Equal(t, "Shipping", got.Name)
		require.JSONEq(t, `{"steps":[{"id":"pack"}]}`, string(got.Spec))
		require.Equal(t, created, got.CreatedAt)

		// Saving again is an upsert on (id, version) that keeps created_at.
		def2 := &models.WorkflowDefinition{ID: "ship", Version: "1.0", Name: "Shipping v1", Spec: models.JSON(`{"steps":[]}`)}
		require.NoError(t, s.SaveDefinition(ctx, def2))
		require.Equal(t, created, def2.CreatedAt)
		require.False(t, def2.UpdatedAt.Before(def2.CreatedAt))
		got, err = s.GetDefinition(ctx, "ship", "1.0")
		require.NoError(t, err)
		require.Equal(t, "Shipping v1", got.Name)

		_, err = s.GetDefinition(ctx, "ship", "2.0")
		require.ErrorIs(t, err, repository.ErrNotFound)
	})
}

func TestDefinition_ListByPrefix(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		for _, d := range []struct{ id, name string }{
			{"a", "payments-refund"}, {"b", "payments"}, {"c", "Payments-upper"},
			{"d", "pay%_like"}, {"e", "paymentsz"}, {"f", "ünïcode"}, {"g", "pay\U0010FFFF"},
		} {
			require.NoError(t, s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: d.id, Version: "1", Name: d.name}))
		}
		names := func(prefix string) []string {
			defs, err := s.ListDefinitions(ctx, prefix)
			require.NoError(t, err)
			var out []string
			for _, d := range defs {
				out = append(out, d.Name)
			}
			return out
		}
		require.Equal(t, []string{"payments", "payments-refund", "paymentsz"}, names("payments"), "case-sensitive, in name order")
		require.Equal(t, []string{"pay%_like"}, names("pay%"), "no LIKE wildcards")
		require.Equal(t, []string{"ünïcode"}, names("ün"))
		require.Equal(t, []string{"pay\U0010FFFF"}, names("pay\U0010FFFF"))
		require.Len(t, names(""), 8, "all, with the seeded definition")
		require.Empty(t, names("zzz"))
	})
}

func TestDefinition_Delete(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		for _, v := range []string{"1", "2", "3"} {
			require.NoError(t, s.SaveDefinition(ctx, &models.WorkflowDefinition{ID: "tmp", Version: v, Name: "tmp"}))
		}
		require.NoError(t, s.DeleteDefinition(ctx, "tmp", "1"))
		_, err := s.GetDefinition(ctx, "tmp", "1")
		require.ErrorIs(t, err, repository.ErrNotFound)
		_, err = s.GetDefinition(ctx, "tmp", "2")
		require.NoError(t, err)

		require.NoError(t, s.DeleteDefinition(ctx, "tmp", ""), "all versions")
		_, err = s.GetDefinition(ctx, "tmp", "3")
		require.ErrorIs(t, err, repository.ErrNotFound)
		require.ErrorIs(t, s.DeleteDefinition(ctx, "tmp", ""), repository.ErrNotFound)

		create(t, s, repository.NewExecution{})
		require.ErrorIs(t, s.DeleteDefinition(ctx, "order", "v1"), repository.ErrInUse)
	})
}
