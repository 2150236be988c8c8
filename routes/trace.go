package routes

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/jobs"
	"github.com/hookgate/hookgate/telemetry"
)

var consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}

// startRouting starts the span of an event's routing ("route event"), a
// child of the span that stored the event: the CloudEvent carries its
// traceparent (CloudEvents distributed-tracing extension), so the trace
// goes on whichever instance routes it.
func startRouting(ctx context.Context, ev *hookgate.Event) (context.Context, trace.Span) {
	if !telemetry.Enabled() {
		return ctx, trace.SpanFromContext(context.Background())
	}
	ctx = telemetry.Extract(ctx, telemetry.Carrier{TraceParent: ev.TraceParent, TraceState: ev.TraceState})
	ctx, span := telemetry.Start(ctx, telemetry.SpanRoute, consumerSpan...)
	if span.IsRecording() {
		source, event := sourceOf(ev)
		span.SetAttributes(
			attribute.String(telemetry.AttrEventID, ev.ID),
			attribute.String(telemetry.AttrSource, source),
			attribute.String(telemetry.AttrEvent, event),
			attribute.String(telemetry.AttrMsgSystem, "nats"),
			attribute.String(telemetry.AttrMsgOperation, "process"),
		)
	}
	return ctx, span
}

// endRouting names the matched routes on the span and gives every job the
// routing's trace context: their attempts are its children.
func endRouting(ctx context.Context, span trace.Span, ev *hookgate.Event, js []jobs.Job, err error) {
	if !span.IsRecording() {
		return
	}
	names := make([]string, 0, len(js))
	c := telemetry.Inject(ctx)
	for i := range js {
		js[i].Trace = c
		names = append(names, strings.TrimPrefix(js[i].ID, ev.ID+"/")) // the route's name
	}
	span.SetAttributes(attribute.StringSlice(telemetry.AttrRoutes, names))
	if err != nil {
		telemetry.Fail(span, "jobs_not_made")
	}
}
