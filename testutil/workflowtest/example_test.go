package workflowtest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/testutil/workflowtest"
)

// reminder sleeps a day, then sends a reminder.
var reminder = engine.Define("reminder", "v1", func(ctx *engine.Context, name string) (string, error) {
	if err := engine.Sleep(ctx, "wait a day", 24*time.Hour); err != nil {
		return "", err
	}
	return engine.Step(ctx, "send", func(context.Context) (string, error) {
		return "reminded " + name, nil // call the mail service here
	})
})

// approval waits up to two days for someone to approve a document.
var approval = engine.Define("approval", "v1", func(ctx *engine.Context, doc string) (string, error) {
	approver, err := engine.AwaitSignal[string](ctx, "approve", 48*time.Hour)
	if errors.Is(err, engine.ErrSignalTimeout) {
		return doc + ": expired", nil
	}
	if err != nil {
		return "", err
	}
	return doc + ": approved by " + approver, nil
})

// checkout reserves stock, charges the card and ships.
var checkout = engine.Define("checkout", "v1", func(ctx *engine.Context, order int) (string, error) {
	var receipt []string
	for _, step := range []string{"reserve", "charge", "ship"} {
		done, err := engine.Step(ctx, step, func(context.Context) (string, error) {
			return fmt.Sprintf("%s %d", step, order), nil // call a real service here
		})
		if err != nil {
			return "", err
		}
		receipt = append(receipt, done)
	}
	return strings.Join(receipt, ", "), nil
})

// A test runs a workflow with Run and counts its steps with StepRuns.
func ExampleRun() {
	runTest(func(t testing.TB) {
		tt := workflowtest.New(t, checkout)
		receipt, err := workflowtest.Run(tt, checkout, 7)
		fmt.Println(receipt, err)
		fmt.Println("charge ran", tt.StepRuns("charge"), "time(s)")
	})
	// Output:
	// reserve 7, charge 7, ship 7 <nil>
	// charge ran 1 time(s)
}

// A day-long Sleep ends when the test advances the clock by a day.
func ExampleTester_Advance() {
	runTest(func(t testing.TB) {
		tt := workflowtest.New(t, reminder)
		start := tt.Clock().Now()
		h := workflowtest.Start(tt, reminder, "ada")
		tt.Advance(24 * time.Hour) // waits until the workflow sleeps, then a day passes
		out, err := workflowtest.Result(tt, h)
		fmt.Println(out, err)
		fmt.Println("the clock moved", tt.Clock().Now().Sub(start))
	})
	// Output:
	// reminded ada <nil>
	// the clock moved 24h0m0s
}

// An AwaitSignal timeout fires when the test advances the clock past it.
func ExampleTester_Advance_signalTimeout() {
	runTest(func(t testing.TB) {
		tt := workflowtest.New(t, approval)
		h := workflowtest.Start(tt, approval, "contract")
		tt.Advance(48 * time.Hour) // nobody approved in two days
		fmt.Println(workflowtest.Result(tt, h))
	})
	// Output: contract: expired <nil>
}

// A signal reaches the workflow whether it waits already or not yet.
func ExampleTester_Signal() {
	runTest(func(t testing.TB) {
		tt := workflowtest.New(t, approval)
		h := workflowtest.Start(tt, approval, "contract")
		tt.Signal(h.ID(), "approve", "grace")
		fmt.Println(workflowtest.Result(tt, h))
	})
	// Output: contract: approved by grace <nil>
}

// A stub replaces a step's function: the test charges no real card.
func ExampleTester_StubStep() {
	runTest(func(t testing.TB) {
		tt := workflowtest.New(t, checkout)
		tt.StubStep("charge", func(context.Context) (any, error) {
			return "charged by the stub", nil
		})
		receipt, err := workflowtest.Run(tt, checkout, 7)
		fmt.Println(receipt, err)
		fmt.Println("charge ran", tt.StepRuns("charge"), "time(s), reserve", tt.StepRuns("reserve"))
	})
	// Output:
	// reserve 7, charged by the stub, ship 7 <nil>
	// charge ran 0 time(s), reserve 1
}

// RunWithRestart stops the engine right after "charge" and resumes the
// execution on a fresh engine: the completed steps did not run again.
func ExampleRunWithRestart() {
	runTest(func(t testing.TB) {
		tt := workflowtest.New(t, checkout)
		receipt, err := workflowtest.RunWithRestart(tt, checkout, 7, "charge")
		fmt.Println(receipt, err)
		for _, step := range []string{"reserve", "charge", "ship"} {
			fmt.Println(step, "ran", tt.StepRuns(step), "time(s)")
		}
		fmt.Println("finished on", tt.Engine().NodeID())
	})
	// Output:
	// reserve 7, charge 7, ship 7 <nil>
	// reserve ran 1 time(s)
	// charge ran 1 time(s)
	// ship ran 1 time(s)
	// finished on workflowtest-2
}

// BlockUntil waits until several workflows wait on the clock, so that one
// Advance wakes them all.
func ExampleClock_BlockUntil() {
	runTest(func(t testing.TB) {
		tt := workflowtest.New(t, reminder)
		var handles []*engine.Handle[string]
		for _, name := range []string{"ada", "grace", "linus"} {
			handles = append(handles, workflowtest.Start(tt, reminder, name))
		}
		ctx, cancel := context.WithTimeout(context.Background(), workflowtest.MaxWait)
		defer cancel()
		if err := tt.Clock().BlockUntil(ctx, len(handles)); err != nil {
			t.Fatalf("the reminders did not all sleep: %v", err)
		}
		tt.Clock().Advance(24 * time.Hour)
		for _, h := range handles {
			fmt.Println(workflowtest.Result(tt, h))
		}
	})
	// Output:
	// reminded ada <nil>
	// reminded grace <nil>
	// reminded linus <nil>
}
