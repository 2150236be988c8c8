package jobs

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookgate/hookgate/telemetry"
)

// startAttempt starts the span of one attempt of j ("job <kind>"), a
// child of the trace context the job carries (its event's routing). An
// attempt after a failed one links to that attempt's span: the wait in
// between may be hours, on another instance.
func startAttempt(ctx context.Context, j *Job, attempt int, last bool, prev telemetry.Carrier) (context.Context, trace.Span) {
	if !telemetry.Enabled() {
		return ctx, trace.SpanFromContext(context.Background())
	}
	ctx = telemetry.Extract(ctx, j.Trace)
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	if sc := telemetry.SpanContext(prev); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{
			SpanContext: sc,
			Attributes:  []attribute.KeyValue{attribute.String(telemetry.AttrLinkReason, "previous attempt")},
		}))
	}
	// A coalesced run completes earlier jobs too: it links to their
	// events' routing, so each of those traces leads here.
	for i := range j.Covers {
		if sc := telemetry.SpanContext(j.Covers[i].Trace); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{
				SpanContext: sc,
				Attributes:  []attribute.KeyValue{attribute.String(telemetry.AttrLinkReason, "coalesced job")},
			}))
		}
	}
	ctx, span := telemetry.Start(ctx, telemetry.SpanJob+j.Kind, opts...)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String(telemetry.AttrJobID, j.ID),
			attribute.String(telemetry.AttrJobKind, j.Kind),
			attribute.String(telemetry.AttrEventID, j.EventID),
			attribute.Int(telemetry.AttrAttempt, attempt),
			attribute.Bool(telemetry.AttrLast, last),
		)
	}
	return ctx, span
}

// endAttempt sets the attempt's outcome: ok, retry, dead or handed_back.
// The span is ended by its caller.
func endAttempt(span trace.Span, outcome string) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String(telemetry.AttrOutcome, outcome))
	if outcome == "retry" || outcome == "dead" {
		span.SetStatus(codes.Error, outcome)
	}
}
