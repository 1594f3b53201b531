package optimisticlock_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/plexspaces/workflow/plugins/optimisticlock"
)

// Account is an app's own model. The type of Version opts it in; the field's
// name and column are the app's choice.
type Account struct {
	ID      int64
	Balance int64
	Version optimisticlock.Version
}

func Example() {
	db, err := gorm.Open(sqlite.Open("file:/accounts.db?vfs=memdb"), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Use(optimisticlock.New()); err != nil { // repository.New does this for you
		log.Fatal(err)
	}
	if err := db.AutoMigrate(&Account{}); err != nil {
		log.Fatal(err)
	}

	acc := Account{Balance: 100}
	if err := db.Create(&acc).Error; err != nil { // stored at version 1
		log.Fatal(err)
	}
	stale := acc // another request read the same row

	acc.Balance += 50
	if err := db.Save(&acc).Error; err != nil { // SET ..., version = version + 1 WHERE id = 1 AND version = 1
		log.Fatal(err)
	}
	fmt.Println("saved at version", acc.Version)

	stale.Balance -= 30
	err = db.Save(&stale).Error
	fmt.Println("stale save refused:", errors.Is(err, optimisticlock.ErrConcurrentUpdate))

	// Read again and retry: the write now builds on the other one.
	if err := db.First(&stale, stale.ID).Error; err != nil {
		log.Fatal(err)
	}
	stale.Balance -= 30
	if err := db.Save(&stale).Error; err != nil {
		log.Fatal(err)
	}
	fmt.Println("balance", stale.Balance, "at version", stale.Version)
	// Output:
	// saved at version 2
	// stale save refused: true
	// balance 120 at version 3
}
