package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hookgate/hookgate/config"
)

// redactHandler passes every message and string attribute through a
// redaction function before the real handler sees it: the last line of
// defence that keeps secret values out of the log.
type redactHandler struct {
	next   slog.Handler
	redact *atomic.Pointer[func(string) string]
}

func newLogger(cfg config.Log, w io.Writer) (*slog.Logger, redactPtr) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if strings.EqualFold(cfg.Format, "json") {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	p := &atomic.Pointer[func(string) string]{}
	return slog.New(redactHandler{next: h, redact: p}), p
}

func (h redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h redactHandler) Handle(ctx context.Context, r slog.Record) error {
	f := h.redact.Load()
	if f == nil {
		return h.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, (*f)(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a, *f))
		return true
	})
	return h.next.Handle(ctx, out)
}

func redactAttr(a slog.Attr, f func(string) string) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, f(v.String()))
	case slog.KindGroup:
		attrs := v.Group()
		out := make([]any, len(attrs))
		for i, g := range attrs {
			out[i] = redactAttr(g, f)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, f(err.Error()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (h redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return redactHandler{next: h.next.WithAttrs(attrs), redact: h.redact}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	return redactHandler{next: h.next.WithGroup(name), redact: h.redact}
}

// redactPtr holds the redaction function once the secret store exists.
type redactPtr = *atomic.Pointer[func(string) string]
