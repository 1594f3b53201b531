package repository_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/plexspaces/workflow/models"
	"github.com/plexspaces/workflow/repository"
)

// Example is the README's quick start: open, define, create, heartbeat, recover.
func Example() {
	ctx := context.Background()
	store, err := repository.Open(ctx, "sqlite::memory:") // or "postgres://user@host/db"
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	def := &models.WorkflowDefinition{ID: "order", Version: "v1", Name: "Order processing"}
	if err := store.SaveDefinition(ctx, def); err != nil {
		log.Fatal(err)
	}
	exec, err := store.CreateExecution(ctx, repository.NewExecution{
		DefinitionID: "order", DefinitionVersion: "v1", Input: map[string]int{"order": 42}, NodeID: "node-1",
	})
	if err != nil {
		log.Fatal(err)
	}
	version := int64(exec.Version) // the version it was read at
	if err := store.UpdateExecutionStatusWithVersion(ctx, exec.ExecutionID, models.ExecutionRunning, &version); err != nil {
		log.Fatal(err)
	}
	if err := store.UpdateHeartbeat(ctx, exec.ExecutionID, "node-1"); err != nil {
		log.Fatal(err)
	}

	stale, _ := store.ListStaleExecutions(ctx, 5*time.Minute, nil)
	fmt.Println("stale:", len(stale))

	// node-1 died: node-2 takes over its running executions with the version it read.
	node1 := "node-1"
	orphans, _ := store.ListExecutionsByStatus(ctx, []models.ExecutionStatus{models.ExecutionRunning}, &node1)
	for _, e := range orphans {
		if err := store.TransferOwnership(ctx, e.ExecutionID, "node-2", int64(e.Version)); err != nil {
			fmt.Println("another node won:", err) // errors.Is(err, repository.ErrConcurrentUpdate)
		}
	}
	got, _ := store.GetExecution(ctx, exec.ExecutionID)
	fmt.Println(got.Status, *got.NodeID, "version", got.Version)
	// Output:
	// stale: 0
	// RUNNING node-2 version 3
}
