package repository

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/plexspaces/workflow/migrations"
)

// The PostgreSQL listener: one connection of its own per Listen call, outside
// the pool (a LISTEN must stay on one session, and a pooled connection
// would hold a pool slot for good). Its settings are those of a connection of
// the storage's pool, read afresh at every (re)connect, so it works the same
// for a Storage the repository opened (NewPostgres, Open) and for New on an
// app's *gorm.DB, as long as the pool's connections come from pgx (the
// driver gorm.io/driver/postgres uses, and the "pgx" database/sql driver).
// Other drivers get ErrListenUnsupported: their engines poll. It needs a
// session that LISTEN works on: not PgBouncer in transaction mode.

const (
	// listenRetryMin and listenRetryMax bound the pause between attempts to
	// connect again; it doubles from the first to the second while attempts
	// fail, and starts over once LISTEN succeeds.
	listenRetryMin = 100 * time.Millisecond
	listenRetryMax = 10 * time.Second
	// listenIdle is how long the listener waits without a notification before
	// it pings: a connection whose server vanished without a word (a network
	// partition) would otherwise stay silent until TCP gives up.
	listenIdle        = 30 * time.Second
	listenPingTimeout = 5 * time.Second
)

// listenChannelSQL names the channel of the schema that holds
// workflow_executions for this session's search_path, by the function
// migration 008 created there, so that channel and triggers always agree.
const listenChannelSQL = `SELECT workflow_events_channel(n.nspname::text) FROM pg_class c ` +
	`JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass('workflow_executions')`

// pgUndefinedFunction is the SQLSTATE of a call to a function that does not
// exist: migration 008 has not run.
const pgUndefinedFunction = "42883"

// listenPostgres listens until ctx ends, connecting again after every loss.
func (s *Storage) listenPostgres(ctx context.Context, onEvent func(kind, executionID string)) error {
	delay := listenRetryMin
	for {
		listened, err := s.listenOnce(ctx, onEvent)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrListenUnsupported) {
			return err
		}
		if listened {
			delay = listenRetryMin
		}
		if s.logger != nil {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "workflow listener: connecting again",
				slog.String("error", err.Error()), slog.Duration("after", delay))
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		delay = min(2*delay, listenRetryMax)
	}
}

// listenOnce connects, LISTENs and passes notifications on until the
// connection fails or ctx ends. listened reports whether LISTEN succeeded.
func (s *Storage) listenOnce(ctx context.Context, onEvent func(kind, executionID string)) (listened bool, err error) {
	cfg, err := s.listenConfig(ctx)
	if err != nil {
		return false, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connecting the listener: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	var channel *string
	if err := conn.QueryRow(ctx, listenChannelSQL).Scan(&channel); err != nil {
		var pgErr *pgconn.PgError
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return false, fmt.Errorf("no workflow_executions table on the search_path: %w", ErrListenUnsupported)
		case errors.As(err, &pgErr) && pgErr.Code == pgUndefinedFunction:
			return false, fmt.Errorf("migration %s has not run: %w", migrations.IDWakeUps, ErrListenUnsupported)
		}
		return false, fmt.Errorf("naming the listener's channel: %w", err)
	}
	if channel == nil {
		return false, fmt.Errorf("no channel for the workflow schema: %w", ErrListenUnsupported)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{*channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listening on %s: %w", *channel, err)
	}
	// Changes committed before LISTEN took effect were announced to nobody.
	onEvent(EventResync, "")
	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(waitCtx)
		idle := waitCtx.Err() != nil
		cancel()
		switch {
		case err == nil:
			if kind, id, ok := parseEvent(n.Payload); ok {
				onEvent(kind, id)
			}
		case ctx.Err() != nil:
			return true, nil
		case idle && !conn.IsClosed():
			pingCtx, cancel := context.WithTimeout(ctx, listenPingTimeout)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("listener connection unresponsive: %w", err)
			}
		default:
			return true, fmt.Errorf("listener connection lost: %w", err)
		}
	}
}

// listenConfig reads the settings of a connection of the storage's pool, for
// a connection of the listener's own.
func (s *Storage) listenConfig(ctx context.Context) (*pgx.ConnConfig, error) {
	pooled, err := s.pool.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking a pool connection for the listener's settings: %w", err)
	}
	defer pooled.Close()
	var cfg *pgx.ConnConfig
	err = pooled.Raw(func(driverConn any) error {
		c, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the pool's connections are %T, not pgx's: %w", driverConn, ErrListenUnsupported)
		}
		cfg = c.Conn().Config() // a copy
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The copy's notification hook is the pooled connection's buffer: the
	// listener's connection must buffer its own.
	cfg.OnNotification = nil
	// A deadline, not a cancel request, ends an idle wait: the connection
	// stays usable, and the listener pings it.
	cfg.BuildContextWatcherHandler = func(pgConn *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pgConn.Conn()}
	}
	return cfg, nil
}

// parseEvent splits a notification's payload, "kind:execution_id"; it
// ignores kinds it does not know, which a later migration may add.
func parseEvent(payload string) (kind, executionID string, ok bool) {
	kind, executionID, found := strings.Cut(payload, ":")
	switch {
	case !found || executionID == "":
		return "", "", false
	case kind == EventClaimable, kind == EventSignal, kind == EventEnded:
		return kind, executionID, true
	}
	return "", "", false
}
