// Package workflowtest runs an app's workflows in its unit tests: on a fresh
// in-memory database, with a fake clock, so that a test of a workflow that
// sleeps for days or waits for a signal takes milliseconds.
//
// [New] returns a [Tester] for one test; it runs the workflows on a real engine
// and stops it at the test's cleanup. From there a test
//
//   - starts executions and waits for their results with [Start], [Result]
//     and [Run], every wait bounded by [MaxWait];
//   - moves time with [Tester.Advance], which waits until a workflow is
//     waiting on the clock (Sleep, an AwaitSignal timeout, a retry backoff,
//     WithTimeout) and then fires what is due; [Clock.BlockUntil] waits for
//     several waiting workflows;
//   - sends signals with [Tester.Signal];
//   - replaces a step's function with [Tester.StubStep] and counts how often
//     each step's function ran with [Tester.StepRuns];
//   - proves that a resumed workflow does not run its completed steps again
//     with [RunWithRestart], which stops the engine right after a given step
//     and resumes the execution on a fresh one.
//
// A test of a reminder that sleeps a day before its step "send" (as in
// ExampleTester_Advance):
//
//	func TestReminder(t *testing.T) {
//		tt := workflowtest.New(t, reminder)
//		h := workflowtest.Start(tt, reminder, "ada")
//		tt.Advance(24 * time.Hour) // waits until the workflow sleeps
//		out, err := workflowtest.Result(tt, h)
//		require.NoError(t, err)
//		require.Equal(t, "reminded ada", out)
//		require.Equal(t, 1, tt.StepRuns("send"))
//	}
//
// The Examples show each capability. Only workflow waits follow the fake
// clock; the engine's heartbeats and polling keep real time, and the clock
// starts at the current time, as the database's timestamps do. A workflow's
// WithTimeout ends it once the test has advanced the clock by the timeout.
//
// The package is for tests only; its API may change between minor versions.
package workflowtest
