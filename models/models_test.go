package models_test

import (
	"encoding/json"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm/schema"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/plugins/optimisticlock"
)

func TestParseExecutionStatus(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]models.ExecutionStatus{
		"PENDING": models.ExecutionPending, "running": models.ExecutionRunning, "Completed": models.ExecutionCompleted,
		"failed": models.ExecutionFailed, " CANCELLED ": models.ExecutionCancelled, "timed_out": models.ExecutionTimedOut,
		"TIMEDOUT": models.ExecutionTimedOut, "timedout": models.ExecutionTimedOut,
	} {
		got, err := models.ParseExecutionStatus(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "DONE", "TIMED OUT", "RUNNINGX"} {
		_, err := models.ParseExecutionStatus(bad)
		require.ErrorIs(t, err, models.ErrUnknownStatus, bad)
	}
}

func TestTerminal(t *testing.T) {
	t.Parallel()
	terminal := map[models.ExecutionStatus]bool{
		models.ExecutionPending: false, models.ExecutionRunning: false, models.ExecutionCompleted: true,
		models.ExecutionFailed: true, models.ExecutionCancelled: true, models.ExecutionTimedOut: true, "BOGUS": false,
	}
	for st, want := range terminal {
		require.Equal(t, want, st.Terminal(), st)
	}
}

func TestParseStepStatus(t *testing.T) {
	t.Parallel()
	got, err := models.ParseStepStatus("retrying")
	require.NoError(t, err)
	require.Equal(t, models.StepRetrying, got)
	_, err = models.ParseStepStatus("TIMED_OUT")
	require.ErrorIs(t, err, models.ErrUnknownStatus)
}

func TestJSON(t *testing.T) {
	t.Parallel()
	type doc struct {
		Spec  models.JSON `json:"spec"`
		Empty models.JSON `json:"empty"`
	}
	out, err := json.Marshal(doc{Spec: models.JSON(`{"a":[1,2]}`)})
	require.NoError(t, err)
	require.JSONEq(t, `{"spec":{"a":[1,2]},"empty":null}`, string(out), "the document itself, not base64")

	var back doc
	require.NoError(t, json.Unmarshal(out, &back))
	require.JSONEq(t, `{"a":[1,2]}`, string(back.Spec))

	for _, src := range []any{`{"x":1}`, []byte(`{"x":1}`)} {
		var j models.JSON
		require.NoError(t, j.Scan(src))
		require.JSONEq(t, `{"x":1}`, j.String())
	}
	var j models.JSON
	require.NoError(t, j.Scan(nil))
	require.Nil(t, j)
	require.ErrorIs(t, j.Scan(42), models.ErrInvalidJSON)

	v, err := models.JSON(`[1]`).Value()
	require.NoError(t, err)
	require.Equal(t, "[1]", v)
	v, err = models.JSON(nil).Value()
	require.NoError(t, err)
	require.Nil(t, v)
	_, err = models.JSON(`{`).Value()
	require.ErrorIs(t, err, models.ErrInvalidJSON)

	var n map[string]int
	require.NoError(t, models.JSON(`{"k":3}`).Unmarshal(&n))
	require.Equal(t, 3, n["k"])
}

// The execution's Version opts in to the plugin by its type, yet stays an
// integer column and a JSON number, as it was when it was a plain int64.
func TestExecutionVersionIsALockAndAnInteger(t *testing.T) {
	t.Parallel()
	s, err := schema.Parse(&models.WorkflowExecution{}, &sync.Map{}, schema.NamingStrategy{})
	require.NoError(t, err)
	field := s.LookUpField("version")
	require.NotNil(t, field)
	require.Equal(t, schema.Int, field.DataType)
	require.Equal(t, 64, field.Size)
	var v optimisticlock.Version
	require.IsType(t, v, models.WorkflowExecution{}.Version)

	out, err := json.Marshal(models.WorkflowExecution{ExecutionID: "e", Version: 3})
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(out, &doc))
	require.Equal(t, float64(3), doc["version"])
	var back models.WorkflowExecution
	require.NoError(t, json.Unmarshal(out, &back))
	require.EqualValues(t, 3, back.Version)
}
