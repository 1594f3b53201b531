package workflowtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/plexspaces/workflow/testutil/workflowtest"
)

// The README's "Testing your workflows": the reminder and approval workflows
// of example_test.go, tested without waiting a day.

func TestReadme_SleepEndsWhenTheClockSays(t *testing.T) {
	tt := workflowtest.New(t, reminder)
	h := workflowtest.Start(tt, reminder, "ada")
	tt.Advance(24 * time.Hour) // waits until the workflow sleeps, then a day passes
	out, err := workflowtest.Result(tt, h)
	require.NoError(t, err)
	require.Equal(t, "reminded ada", out)
}

func TestReadme_SignalsAndTimeouts(t *testing.T) {
	tt := workflowtest.New(t, approval)
	approved := workflowtest.Start(tt, approval, "contract")
	tt.Signal(approved.ID(), "approve", "bo")
	out, err := workflowtest.Result(tt, approved)
	require.NoError(t, err)
	require.Equal(t, "contract: approved by bo", out)

	expired := workflowtest.Start(tt, approval, "offer")
	tt.Advance(48 * time.Hour) // nobody approves the offer in time
	out, err = workflowtest.Result(tt, expired)
	require.NoError(t, err)
	require.Equal(t, "offer: expired", out)
}

func TestReadme_StubsAndRestarts(t *testing.T) {
	tt := workflowtest.New(t, checkout)
	tt.StubStep("charge", func(context.Context) (any, error) { return "charge stubbed", nil })

	// Stop the engine right after "reserve" completes, resume on a new one.
	receipt, err := workflowtest.RunWithRestart(tt, checkout, 7, "reserve")
	require.NoError(t, err)
	require.Equal(t, "reserve 7, charge stubbed, ship 7", receipt)
	require.Equal(t, 1, tt.StepRuns("reserve"), "a completed step does not run again")
	require.Equal(t, 0, tt.StepRuns("charge"), "the stub ran instead")
	require.Equal(t, "workflowtest-2", tt.Engine().NodeID())
}
