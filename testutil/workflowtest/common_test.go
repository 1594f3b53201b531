package workflowtest_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// runTest runs body as a test would run it. An Example function has no
// *testing.T, so body gets a stand-in; in a real test, write body's code in
// the test function and pass its t.
func runTest(body func(t testing.TB)) {
	t := &standInT{}
	defer t.cleanup()
	body(t)
}

// standInT implements the testing.TB methods a Tester calls: a failure is
// printed, so that the Example's output check fails, and Fatalf panics.
type standInT struct {
	testing.TB // nil: any other method panics

	quiet bool // do not print failures

	mu       sync.Mutex
	cleanups []func()
	failures []string
}

// fatal is what Fatalf panics with.
type fatal struct{ msg string }

func (t *standInT) Helper() {}

func (t *standInT) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *standInT) Errorf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	t.failures = append(t.failures, msg)
	if !t.quiet {
		fmt.Println("FAIL:", msg)
	}
}

func (t *standInT) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	panic(fatal{fmt.Sprintf(format, args...)})
}

// failuresOf runs body as runTest does, quietly, and returns the failures it
// reported; a Fatalf ends body as it ends a test.
func failuresOf(body func(t testing.TB)) []string {
	t := &standInT{quiet: true}
	func() {
		defer t.cleanup()
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(fatal); !ok {
					panic(r)
				}
			}
		}()
		body(t)
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failures
}

// cleanup runs the cleanups, last registered first.
func (t *standInT) cleanup() {
	t.mu.Lock()
	fs := slices.Clone(t.cleanups)
	t.cleanups = nil
	t.mu.Unlock()
	slices.Reverse(fs)
	for _, f := range fs {
		f()
	}
}
