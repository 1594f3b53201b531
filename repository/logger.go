package repository

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// slowQueryThreshold is the duration past which WithLogger's logger warns
// about a statement.
const slowQueryThreshold = 200 * time.Millisecond

// warnings is the GORM logger WithLogger installs: GORM's slog logger at
// warning level, asked about a statement only when it failed or was slow.
// GORM's slog logger writes out every statement with its values inlined
// before it decides whether to log it; on SQLite, where a workflow's
// checkpoints are a dozen statements through GORM, that was 3% of the CPU,
// for nothing.
type warnings struct{ logger.Interface }

func newWarnings(l *slog.Logger) warnings {
	return warnings{logger.NewSlogLogger(l, logger.Config{
		SlowThreshold:             slowQueryThreshold,
		LogLevel:                  logger.Warn,
		IgnoreRecordNotFoundError: true,
	})}
}

// LogMode implements logger.Interface: at Info, which logs every
// statement, GORM's logger itself; below, with the filter.
func (w warnings) LogMode(level logger.LogLevel) logger.Interface {
	if level >= logger.Info {
		return w.Interface.LogMode(level)
	}
	return warnings{w.Interface.LogMode(level)}
}

// Trace implements logger.Interface: only a failed or slow statement
// reaches GORM's logger.
func (w warnings) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	failed := err != nil && !errors.Is(err, gorm.ErrRecordNotFound)
	if failed || time.Since(begin) > slowQueryThreshold {
		w.Interface.Trace(ctx, begin, fc, err)
	}
}
