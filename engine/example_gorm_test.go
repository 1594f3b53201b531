package engine_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"

	"github.com/plexspaces/workflow/engine"
	"github.com/plexspaces/workflow/repository"
)

// Customer is one of the app's own models.
type Customer struct {
	ID    uint `gorm:"primaryKey"`
	Email string
}

// welcome is the workflow each new customer gets.
var welcome = engine.Define("welcome", "v1", func(ctx *engine.Context, email string) (string, error) {
	return engine.Step(ctx, "send-mail", func(context.Context) (string, error) {
		return "welcome mail sent to " + email, nil // call the mailer here
	})
})

// ExampleWorkflow_StartTx is the README's "In your GORM app": the workflow
// tables live in the app's own database, and a signup and its welcome
// workflow commit together or not at all.
func ExampleWorkflow_StartTx() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "app")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := gorm.Open(sqlite.Open(filepath.Join(dir, "app.db")), &gorm.Config{}) // the app's *gorm.DB
	if err != nil {
		log.Fatal(err)
	}
	if err := db.AutoMigrate(&Customer{}); err != nil {
		log.Fatal(err)
	}

	store, err := repository.New(ctx, db) // adds the workflow tables
	if err != nil {
		log.Fatal(err)
	}
	e := engine.New(store, engine.Config{NodeID: "node-1"})
	if err := e.Register(welcome); err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()

	var started *engine.Handle[string]
	err = db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		customer := Customer{Email: "ada@example.com"}
		if err := tx.Create(&customer).Error; err != nil {
			return err
		}
		started, err = welcome.StartTx(ctx, e, tx, customer.Email)
		return err // an error rolls back the customer and the workflow alike
	})
	if err != nil {
		log.Fatal(err)
	}
	result, err := started.Result(ctx) // a running engine picks it up after the commit
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(result)

	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output: welcome mail sent to ada@example.com
}
