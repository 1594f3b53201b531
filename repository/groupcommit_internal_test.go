package repository

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestGroupCommit_PanicFreesTheLane: a write whose commit panics (a bug)
// panics in its caller, and the checkpoints that queued behind it are still
// written, and later ones too: the lane does not stay taken.
func TestGroupCommit_PanicFreesTheLane(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var written []int
	g := &groupCommit{}
	g.commit = func(batch []*checkpoint) {
		if batch[0].ctx.Value(panicKey{}) != nil {
			close(entered)
			<-release
			panic("commit bug")
		}
		mu.Lock()
		defer mu.Unlock()
		written = append(written, len(batch))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_ = g.write(&checkpoint{ctx: context.WithValue(ctx, panicKey{}, true)})
	}()
	<-entered
	queued := make(chan error, 1)
	go func() { queued <- g.write(&checkpoint{ctx: ctx}) }()
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.queue) == 1
	}, 10*time.Second, time.Millisecond)
	close(release)
	require.Equal(t, "commit bug", <-panicked)
	require.NoError(t, <-queued, "the checkpoint queued behind the panic was not written")
	require.NoError(t, g.write(&checkpoint{ctx: ctx}), "a later checkpoint")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{1, 1}, written)
}

type panicKey struct{}

// TestGroupCommit_PanicInASharedWrite: a shared write that panics on its
// own goroutine does not end the process: each of its callers gets an error,
// and later checkpoints are written.
func TestGroupCommit_PanicInASharedWrite(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	var calls int
	g := &groupCommit{}
	g.commit = func(batch []*checkpoint) {
		calls++
		switch calls {
		case 1:
			close(entered)
			<-release
		case 2:
			panic("shared commit bug")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() { first <- g.write(&checkpoint{ctx: ctx}) }()
	<-entered
	queued := make(chan error, 2)
	for range 2 {
		go func() { queued <- g.write(&checkpoint{ctx: ctx}) }()
	}
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.queue) == 2
	}, 10*time.Second, time.Millisecond)
	close(release)
	require.NoError(t, <-first)
	for range 2 {
		err := <-queued
		require.Error(t, err)
		require.Contains(t, err.Error(), "shared commit bug")
	}
	require.NoError(t, g.write(&checkpoint{ctx: ctx}), "a later checkpoint")
}
