package engine

import (
	"errors"
	"sync"
)

// Parallel runs fns concurrently, at most limit at a time (all at once when
// limit < 1), and waits for all of them. It returns their errors joined. Each
// function must use step ids of its own (include an index), so that a replay
// finds every result where it left it.
func Parallel(ctx *Context, limit int, fns ...func(ctx *Context) error) error {
	_, err := Map(ctx, fns, limit, func(ctx *Context, _ int, fn func(*Context) error) (struct{}, error) {
		return struct{}{}, fn(ctx)
	})
	return err
}

// Map calls fn for every item, at most limit at a time (all at once when
// limit < 1), and returns the results in the order of items, with the errors
// joined. fn must name its steps after the item's index or identity.
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
			out[i], errs[i] = fn(ctx, i, item)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}
