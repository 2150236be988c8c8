package telemetry

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// W3C trace context header names: on HTTP requests, and as CloudEvents
// distributed-tracing extension attributes of the event.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

var w3c propagation.TraceContext

// Carrier is a trace context in its W3C text form, as the CloudEvent and a
// job's payload hold it.
type Carrier struct {
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// Get, Set and Keys make a Carrier a propagation.TextMapCarrier.
func (c *Carrier) Get(key string) string {
	switch key {
	case HeaderTraceParent:
		return c.TraceParent
	case HeaderTraceState:
		return c.TraceState
	}
	return ""
}

// Set stores the traceparent or tracestate value.
func (c *Carrier) Set(key, value string) {
	switch key {
	case HeaderTraceParent:
		c.TraceParent = value
	case HeaderTraceState:
		c.TraceState = value
	}
}

// Keys lists the keys a Carrier holds.
func (c *Carrier) Keys() []string { return []string{HeaderTraceParent, HeaderTraceState} }

// Inject returns the trace context of the span in ctx; empty when there is
// none or tracing is off.
func Inject(ctx context.Context) Carrier {
	if !enabled.Load() {
		return Carrier{}
	}
	return inject(ctx)
}

// inject is Inject's work, apart so that the carrier it takes the address
// of escapes to the heap only when tracing is on.
func inject(ctx context.Context) Carrier {
	c := new(Carrier)
	w3c.Inject(ctx, c)
	return *c
}

// InjectHeader sets traceparent (and tracestate) on h from the span in
// ctx, when tracing is on and there is one.
func InjectHeader(ctx context.Context, h http.Header) {
	if !enabled.Load() {
		return
	}
	w3c.Inject(ctx, propagation.HeaderCarrier(h))
}

// Headers returns the trace context of ctx as header name → value, for a
// client that takes a map (resty's SetHeaders); nil when there is none.
func Headers(ctx context.Context) map[string]string {
	c := Inject(ctx)
	if c.TraceParent == "" {
		return nil
	}
	m := map[string]string{HeaderTraceParent: c.TraceParent}
	if c.TraceState != "" {
		m[HeaderTraceState] = c.TraceState
	}
	return m
}

// Extract returns ctx with c's trace context as its remote parent. An
// invalid or empty c leaves ctx as it is.
func Extract(ctx context.Context, c Carrier) context.Context {
	if !enabled.Load() || c.TraceParent == "" {
		return ctx
	}
	return w3c.Extract(ctx, &c)
}

// SpanContext parses c; the zero (invalid) SpanContext when c does not
// hold a valid traceparent.
func SpanContext(c Carrier) trace.SpanContext {
	if c.TraceParent == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(w3c.Extract(context.Background(), &c))
}

// CarrierOf returns the W3C text form of sc; empty for an invalid sc.
func CarrierOf(sc trace.SpanContext) Carrier {
	if !sc.IsValid() {
		return Carrier{}
	}
	return inject(trace.ContextWithSpanContext(context.Background(), sc))
}
