package delivery

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/telemetry"
)

var clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// startSpan starts the client span of one delivery attempt ("deliver")
// under the span in ctx (the route job's attempt).
func startSpan(ctx context.Context, rawURL, id string, m Meta) (context.Context, trace.Span) {
	ctx, span := telemetry.Start(ctx, telemetry.SpanDeliver, clientSpan...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String(telemetry.AttrHTTPMethod, "POST"),
			attribute.String(telemetry.AttrURL, redactURL(rawURL)),
			attribute.String(telemetry.AttrRoute, m.Source),
			attribute.String(telemetry.AttrEventID, m.EventID),
			attribute.String("hookgate.webhook_id", id),
			attribute.Int(telemetry.AttrAttempt, m.Attempt),
			attribute.Bool(telemetry.AttrLast, m.Last),
		)
	}
	return ctx, span
}

// endSpan records the attempt's answer, as its history row has it.
func endSpan(span trace.Span, row *hookgate.Exchange) {
	if span.IsRecording() {
		span.SetAttributes(
			attribute.Int(telemetry.AttrHTTPStatus, int(row.Status)),
			attribute.String(telemetry.AttrOutcome, row.Outcome),
		)
		if row.Error != "" {
			span.SetAttributes(attribute.String(telemetry.AttrErrorCode, row.Error))
			span.SetStatus(codes.Error, row.Error)
		}
	}
	span.End()
}
