//go:build race

package engine_test

// raceDetector: this test binary runs with -race, which makes the scale
// tests too slow to be worth it; make test runs them in a pass without it.
const raceDetector = true
