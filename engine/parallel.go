package engine

import (
	"errors"
	"sync"
)

// Parallel runs fns concurrently, at most limit at a time (all at once when
// limit < 1), and waits for all of them. It returns their errors joined. Each
// function must use step ids of its own (include an index), so that a replay
// finds every result where it left it. Each function gets a Context of its own
// (use it, not the caller's), whose AwaitSignal ids carry the function's index,
// so they are the same on replay whatever order the goroutines run in.
func Parallel(ctx *Context, limit int, fns ...func(ctx *Context) error) error {
	_, err := Map(ctx, fns, limit, func(ctx *Context, _ int, fn func(*Context) error) (struct{}, error) {
		return struct{}{}, fn(ctx)
	})
	return err
}

// Map calls fn for every item, at most limit at a time (all at once when
// limit < 1), and returns the results in the order of items, with the errors
// joined. fn must name its steps after the item's index or identity. Each call
// gets a Context of its own, as in Parallel, with the item's index in its
// AwaitSignal ids.
func Map[In, Out any](ctx *Context, items []In, limit int, fn func(ctx *Context, i int, item In) (Out, error)) ([]Out, error) {
	if limit < 1 || limit > len(items) {
		limit = len(items)
	}
	out := make([]Out, len(items))
	errs := make([]error, len(items))
	slots := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	ctx.addBranches(1)
	defer ctx.addBranches(-1)
	for i, item := range items {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			out[i], errs[i] = fn(ctx.branch(i), i, item)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}
