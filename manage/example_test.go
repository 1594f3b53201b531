package manage_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"sync/atomic"
	"time"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/manage"
	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Example_retry finds the failed executions and retries them once the cause
// is fixed: the step that failed runs again, the step before it does not.
func Example_retry() {
	ctx := context.Background()
	store, err := repository.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	var declined atomic.Bool
	declined.Store(true)
	wf := engine.Define("pay", "v1", func(ctx *engine.Context, cents int) (string, error) {
		card, err := engine.Step(ctx, "load", func(context.Context) (string, error) {
			fmt.Println("loading the card")
			return "visa", nil
		})
		if err != nil {
			return "", err
		}
		return engine.Step(ctx, "charge", func(context.Context) (string, error) {
			if declined.Load() {
				return "", engine.NonRetryable(errors.New("card declined"))
			}
			return fmt.Sprintf("charged %d to %s", cents, card), nil
		})
	})
	e := engine.New(store, engine.Config{NodeID: "example", PollInterval: 10 * time.Millisecond})
	if err := e.Register(wf); err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = e.Run(runCtx) }()

	h, err := wf.Start(ctx, e, 500)
	if err != nil {
		log.Fatal(err)
	}
	failed, err := e.Await(ctx, h.ID())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(failed.Status, *failed.Error)

	c := manage.New(store)
	page, err := c.List(ctx, manage.Filter{Statuses: []models.ExecutionStatus{models.ExecutionFailed}})
	if err != nil {
		log.Fatal(err)
	}
	declined.Store(false) // the cause is fixed
	var retried *models.WorkflowExecution
	for _, x := range page.Executions {
		if retried, err = c.Retry(ctx, x.ExecutionID); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(h.Result(ctx))
	d, err := c.Get(ctx, h.ID())
	if err != nil {
		log.Fatal(err)
	}
	// The failed attempt stays in the journal, under a retired step id.
	retiredPrefix := repository.RetiredStepPrefix(int64(retried.Version))
	for _, step := range d.Steps {
		fmt.Println(strings.Replace(step.StepID, retiredPrefix, "retried:<version>/", 1), step.Attempt, step.Status)
	}
	// Output:
	// loading the card
	// FAILED step charge failed after attempt 1: card declined
	// charged 500 to visa <nil>
	// load 1 COMPLETED
	// retried:<version>/charge 1 FAILED
	// charge 1 COMPLETED
}
