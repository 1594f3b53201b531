package repository_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

func TestList_KeysetPaging(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		const total = 1000
		created := make([]string, 0, total)
		// Insert in batches, each one transaction, to keep setup quick.
		for batch := 0; batch < total; batch += 100 {
			require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
				for range 100 {
					e, err := tx.CreateExecution(ctx, repository.NewExecution{DefinitionID: "order", DefinitionVersion: "v1"})
					if err != nil {
						return err
					}
					created = append(created, e.ExecutionID)
				}
				return nil
			}))
		}
		var paged []string
		after := ""
		for range total { // bounded: at most one page per row
			page, err := s.ListExecutions(ctx, repository.ExecutionFilter{Limit: 64, After: after})
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				paged = append(paged, e.ExecutionID)
			}
			after = page[len(page)-1].ExecutionID
		}
		require.Equal(t, created, paged, "generated ids sort by creation: no duplicates, no gaps, creation order")
	})
}

func TestList_Filters(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		seedDefinition(t, s, "refund", "v1")
		tricky := map[string]string{`it's "quoted"; DROP TABLE signals; --`: `ünï'cøde ✓ ; OR 1=1`, "tenant": "acme"}
		a := create(t, s, repository.NewExecution{ExecutionID: "a", NodeID: "n1", Labels: tricky})
		b := create(t, s, repository.NewExecution{ExecutionID: "b", NodeID: "n2", Labels: map[string]string{"tenant": "acme"}})
		c := create(t, s, repository.NewExecution{ExecutionID: "c", NodeID: "n1", DefinitionID: "refund", DefinitionVersion: "v1", Labels: map[string]string{"tenant": "globex"}})
		require.NoError(t, s.UpdateExecutionStatus(ctx, b.ExecutionID, models.ExecutionRunning))

		list := func(f repository.ExecutionFilter) []string {
			out, err := s.ListExecutions(ctx, f)
			require.NoError(t, err)
			return ids(out)
		}
		require.Equal(t, []string{"a", "b", "c"}, list(repository.ExecutionFilter{}))
		require.Equal(t, []string{"a", "b"}, list(repository.ExecutionFilter{Labels: map[string]string{"tenant": "acme"}}))
		require.Equal(t, []string{"a"}, list(repository.ExecutionFilter{Labels: tricky}), "labels match verbatim")
		require.Empty(t, list(repository.ExecutionFilter{Labels: map[string]string{"tenant": "ACME"}}))
		require.Equal(t, []string{"a", "c"}, list(repository.ExecutionFilter{NodeID: "n1"}))
		require.Equal(t, []string{"c"}, list(repository.ExecutionFilter{NodeID: "n1", DefinitionID: "refund"}))
		require.Equal(t, []string{"b"}, list(repository.ExecutionFilter{Statuses: []models.ExecutionStatus{models.ExecutionRunning}, Labels: map[string]string{"tenant": "acme"}}))
		require.Equal(t, []string{"c"}, list(repository.ExecutionFilter{After: "b"}))
		require.Equal(t, []string{"a"}, list(repository.ExecutionFilter{Limit: 1}))

		got, err := s.ListExecutions(ctx, repository.ExecutionFilter{Labels: tricky})
		require.NoError(t, err)
		require.Equal(t, tricky, got[0].Labels, "labels come back verbatim")
		one, err := s.GetExecution(ctx, a.ExecutionID)
		require.NoError(t, err)
		require.Equal(t, tricky, one.Labels)
		_ = c
	})
}

func TestList_Empty(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		for name, list := range map[string]func() (int, error){
			"by status": func() (int, error) {
				r, err := s.ListExecutionsByStatus(ctx, models.LiveExecutionStatuses(), nil)
				return len(r), err
			},
			"stale":   func() (int, error) { r, err := s.ListStaleExecutions(ctx, 0, nil); return len(r), err },
			"filter":  func() (int, error) { r, err := s.ListExecutions(ctx, repository.ExecutionFilter{}); return len(r), err },
			"history": func() (int, error) { r, err := s.GetStepExecutionHistory(ctx, "none"); return len(r), err },
		} {
			n, err := list()
			require.NoError(t, err, name)
			require.Zero(t, n, name)
		}
	})
}

func TestTransaction_CommitsTogether(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		ctx := t.Context()
		type appOrder struct {
			ID          int64 `gorm:"primaryKey"`
			ExecutionID string
		}
		table := fmt.Sprintf("app_orders_%s", s.Dialect())
		require.NoError(t, s.DB().Table(table).AutoMigrate(&appOrder{}))

		boom := fmt.Errorf("payment gateway said no")
		err := s.Transaction(ctx, func(tx *repository.Storage) error {
			e, err := tx.CreateExecution(ctx, repository.NewExecution{ExecutionID: "rolled-back", DefinitionID: "order", DefinitionVersion: "v1"})
			require.NoError(t, err)
			require.NoError(t, tx.DB().Table(table).Create(&appOrder{ExecutionID: e.ExecutionID}).Error)
			return boom
		})
		require.ErrorIs(t, err, boom)
		_, err = s.GetExecution(ctx, "rolled-back")
		require.ErrorIs(t, err, repository.ErrNotFound)

		require.NoError(t, s.Transaction(ctx, func(tx *repository.Storage) error {
			e, err := tx.CreateExecution(ctx, repository.NewExecution{ExecutionID: "kept", DefinitionID: "order", DefinitionVersion: "v1", Labels: map[string]string{"x": "y"}})
			if err != nil {
				return err
			}
			return tx.DB().Table(table).Create(&appOrder{ExecutionID: e.ExecutionID}).Error
		}))
		var n int64
		require.NoError(t, s.DB().Table(table).Count(&n).Error)
		require.EqualValues(t, 1, n)
		got, err := s.GetExecution(ctx, "kept")
		require.NoError(t, err)
		require.Equal(t, map[string]string{"x": "y"}, got.Labels)
	})
}
