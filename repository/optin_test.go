package repository_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/plugins/optimisticlock"
	"github.com/plexspaces/workflow/repository"
)

// appNote is an app's model with an integer Version of its own; appLedger opts
// in to optimistic locking.
type appNote struct {
	ID      int64
	Text    string
	Version int64
}

type appLedger struct {
	ID      int64
	Total   int64
	Version optimisticlock.Version
}

// New registers the plugin on the app's database; the app's models must
// behave as before unless they opt in.
func TestNew_AppModelsChangeOnlyIfTheyOptIn(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *repository.Storage) {
		db := s.DB().WithContext(t.Context())
		require.NoError(t, db.AutoMigrate(&appNote{}, &appLedger{}))

		note := appNote{Text: "a", Version: 7}
		require.NoError(t, db.Create(&note).Error)
		stale := note
		note.Text = "b"
		require.NoError(t, db.Save(&note).Error)
		require.EqualValues(t, 7, note.Version, "no bump")
		stale.Text = "c"
		require.NoError(t, db.Save(&stale).Error, "a stale Save of a plain model succeeds")

		ledger := appLedger{Total: 1}
		require.NoError(t, db.Create(&ledger).Error)
		staleLedger := ledger
		ledger.Total = 2
		require.NoError(t, db.Save(&ledger).Error)
		require.EqualValues(t, 2, ledger.Version)
		staleLedger.Total = 3
		require.ErrorIs(t, db.Save(&staleLedger).Error, repository.ErrConcurrentUpdate)
	})
}
