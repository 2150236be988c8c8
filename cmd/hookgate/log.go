package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/hookgate/hookgate/config"
	"github.com/hookgate/hookgate/telemetry"
)

// redactHandler passes every message and string attribute through a
// redaction function before the real handler sees it: the last line of
// defence that keeps secret values out of the log.
//
// Attributes added with With (WithAttrs) are kept and redacted at every
// Handle with the redaction function of that moment, as the record's own
// are: a secret the store serves after a logger was made is still caught.
type redactHandler struct {
	next   slog.Handler
	redact *atomic.Pointer[func(string) string]
	ops    []handlerOp // WithAttrs and WithGroup calls, in order
}

// handlerOp is one WithAttrs (attrs) or WithGroup (group) call.
type handlerOp struct {
	group string
	attrs []slog.Attr
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
	// trace_id and span_id on lines made inside a span (docs/operations.md, "Tracing")
	return slog.New(redactHandler{next: telemetry.LogHandler(h), redact: p}), p
}

func (h redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h redactHandler) Handle(ctx context.Context, r slog.Record) error {
	f := h.redact.Load()
	next := h.next
	for _, op := range h.ops {
		if op.group != "" {
			next = next.WithGroup(op.group)
			continue
		}
		attrs := op.attrs
		if f != nil {
			attrs = make([]slog.Attr, len(op.attrs))
			for i, a := range op.attrs {
				attrs[i] = redactAttr(a, *f)
			}
		}
		next = next.WithAttrs(attrs)
	}
	if f == nil {
		return next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, (*f)(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a, *f))
		return true
	})
	return next.Handle(ctx, out)
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
		// any other value: as text, when that text holds a secret
		if s := fmt.Sprint(v.Any()); f(s) != s {
			return slog.String(a.Key, f(s))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (h redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return redactHandler{next: h.next, redact: h.redact, ops: append(slices.Clip(h.ops), handlerOp{attrs: slices.Clone(attrs)})}
}

func (h redactHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return redactHandler{next: h.next, redact: h.redact, ops: append(slices.Clip(h.ops), handlerOp{group: name})}
}

// redactPtr holds the redaction function once the secret store exists.
type redactPtr = *atomic.Pointer[func(string) string]

// redactOf returns the redaction hook of a logger made by newLogger (a
// fresh, unused one for any other logger), for openSecrets to fill.
func redactOf(log *slog.Logger) redactPtr {
	if h, ok := log.Handler().(redactHandler); ok {
		return h.redact
	}
	return &atomic.Pointer[func(string) string]{}
}
