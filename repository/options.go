package repository

import (
	"fmt"
	"log/slog"
)

// MaxOpenConnsDefault is the pool size of a storage the repository opens
// itself. On PostgreSQL keep nodes x MaxOpenConns below max_connections.
const MaxOpenConnsDefault = 10

// Option configures a Storage at construction.
type Option func(*config)

type config struct {
	migrate      bool
	maxOpenConns int
	logger       *slog.Logger
	// inMemory: the repository opened an in-memory database itself, which
	// needs none of a file's settings.
	inMemory bool
}

func newConfig(opts []Option) (config, error) {
	c := config{migrate: true, maxOpenConns: MaxOpenConnsDefault}
	for _, opt := range opts {
		opt(&c)
	}
	if c.maxOpenConns < 1 {
		return c, fmt.Errorf("max open connections %d (must be at least 1): %w", c.maxOpenConns, ErrInvalidArgument)
	}
	return c, nil
}

// WithoutMigrations skips applying migrations at construction, for apps that
// run migrations.All() with their own gormigrate.
func WithoutMigrations() Option {
	return func(c *config) { c.migrate = false }
}

// WithMaxOpenConns sets the pool size of a database the repository opens
// (default MaxOpenConnsDefault). It does not change a *gorm.DB given to New.
func WithMaxOpenConns(n int) Option {
	return func(c *config) { c.maxOpenConns = n }
}

// WithLogger sends GORM's warnings (slow queries, errors) to l, and the
// warnings of New about the database's settings (a SQLite file without WAL).
// By default a storage the repository opens logs nothing, and one given to
// New keeps the app's logger and warns through it.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}
