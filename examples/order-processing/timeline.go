package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// lockedWriter keeps lines from several goroutines whole.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// timelineHandler prints the engine's takeovers, parked waits, hand-overs
// and finished executions as timeline lines, and drops its other logs.
type timelineHandler struct {
	out   io.Writer
	node  string
	attrs []slog.Attr
}

func timelineLogger(out io.Writer, node string) *slog.Logger {
	return slog.New(&timelineHandler{out: out, node: node})
}

func (h *timelineHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *timelineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &timelineHandler{out: h.out, node: h.node, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h *timelineHandler) WithGroup(string) slog.Handler { return h }

func (h *timelineHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]slog.Value{}
	for _, a := range h.attrs {
		attrs[a.Key] = a.Value
	}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
	var what string
	switch r.Message {
	case "claimed execution":
		v := attrs["version"].Int64()
		what = fmt.Sprintf("claimed it (version %d -> %d)", v-1, v)
	case "execution parked":
		what = "parked until it is due"
		if sig := attrs["signal"].String(); sig != "" {
			what = "parked, waiting for the " + sig + " signal: its slot and goroutine are free"
		}
	case "execution handed back":
		what = "handed back on a graceful stop: any node resumes it now"
	case "execution finished":
		what = "finished: " + attrs["status"].String()
	default:
		return nil
	}
	_, err := fmt.Fprintf(h.out, "%s  %-7s %-9s %s\n", time.Now().Format("15:04:05.000"), h.node, attrs["execution_id"].String(), what)
	return err
}

// stepLabel is how the timeline and the table name a journal entry: an
// AwaitSignal entry "signal:approval:1" reads "approval-signal".
func stepLabel(stepID string) string {
	if name, ok := strings.CutPrefix(stepID, "signal:"); ok {
		name, _, _ = strings.Cut(name, ":")
		return name + "-signal"
	}
	return stepID
}
