package outbound

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookgate/hookgate/telemetry"
)

// The spans of Bitrix24 HTTP attempts (docs/operations.md, "Tracing"):
// one client span per attempt, "bitrix24 <method>", under the span in the
// call's ctx (a route job's attempt); a retry after a wait links to the
// attempt before. A batch is one span naming its commands.

var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

const (
	batchKey ctxKey = 100 + iota
	batchLinksKey
)

// withBatchLinks returns ctx carrying the spans of the other callers whose
// calls a Batcher's batch request serves: the batch's span (in the first
// caller's trace) links to each of them, so every event's trace leads to
// the request that made its call.
func withBatchLinks(ctx context.Context, callers []context.Context) context.Context {
	if !telemetry.Enabled() {
		return ctx
	}
	var links []trace.Link
	for _, c := range callers {
		if sc := trace.SpanContextFromContext(c); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc,
				Attributes: []attribute.KeyValue{attribute.String(telemetry.AttrLinkReason, "batched call")}})
		}
	}
	if len(links) == 0 {
		return ctx
	}
	return context.WithValue(ctx, batchLinksKey, links)
}

// withBatchCommands returns ctx carrying the commands of a batch call
// ("key=method"), for its span.
func withBatchCommands(ctx context.Context, cmds []string) context.Context {
	if !telemetry.Enabled() {
		return ctx
	}
	return context.WithValue(ctx, batchKey, cmds)
}

// startAttempt starts the span of one HTTP attempt; prev is the attempt
// before it in the same call (invalid for the first).
func (b *Bitrix24) startAttempt(ctx context.Context, method string, attempt int, prev trace.SpanContext) (context.Context, trace.Span) {
	if !telemetry.Enabled() {
		return ctx, trace.SpanFromContext(context.Background())
	}
	opts := clientSpan
	if prev.IsValid() {
		opts = append(opts[:len(opts):len(opts)], trace.WithLinks(trace.Link{
			SpanContext: prev,
			Attributes:  []attribute.KeyValue{attribute.String(telemetry.AttrLinkReason, "previous attempt")},
		}))
	}
	if links, ok := ctx.Value(batchLinksKey).([]trace.Link); ok {
		opts = append(opts[:len(opts):len(opts)], trace.WithLinks(links...))
	}
	ctx, span := telemetry.Start(ctx, telemetry.SpanBitrix24+method, opts...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String(telemetry.AttrPortal, b.portal),
			attribute.String(telemetry.AttrMethod, method),
			attribute.Int(telemetry.AttrAttempt, attempt),
			attribute.String(telemetry.AttrHTTPMethod, "POST"),
			// the URL without the webhook's secret, as history has it
			attribute.String(telemetry.AttrURL, b.base+"[redacted]/"+method+".json"),
		)
		if id := EventID(ctx); id != "" {
			span.SetAttributes(attribute.String(telemetry.AttrEventID, id))
		}
		if cmds, ok := ctx.Value(batchKey).([]string); ok {
			span.SetAttributes(attribute.StringSlice(telemetry.AttrCommands, cmds))
		}
	}
	return ctx, span
}

// endAttempt records the attempt's answer on its span and ends it.
func endAttempt(span trace.Span, a *attemptResult) {
	if span.IsRecording() {
		span.SetAttributes(
			attribute.Int(telemetry.AttrHTTPStatus, int(a.row.Status)),
			attribute.String(telemetry.AttrOutcome, a.row.Outcome),
		)
		if a.row.Error != "" {
			span.SetAttributes(attribute.String(telemetry.AttrErrorCode, a.row.Error))
			span.SetStatus(codes.Error, a.row.Error)
		}
	}
	span.End()
}
