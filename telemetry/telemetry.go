// Package telemetry is hookgate's OpenTelemetry tracing: the tracer
// provider and its OTLP exporter (HTTP or gRPC), started by main from the
// telemetry config section and the standard OTEL_* variables; W3C trace
// context helpers for the CloudEvent, the job payload and outgoing
// requests; and the slog handler that puts trace_id and span_id on log
// lines made inside a span.
//
// Tracing is off unless an OTLP endpoint is configured. Off, Start hands
// back the caller's context and a no-op span without allocating, and
// instrumented code skips building attributes (Span.IsRecording), so an
// untraced gateway pays one atomic load per span site
// (docs/performance.md, "Tracing").
//
// Span and attribute names are listed in docs/operations.md ("Tracing").
// Attribute values never hold a secret: URLs are the redacted ones of
// history, and no header, parameter or body is copied onto a span.
package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/hookgate/hookgate"
	"github.com/hookgate/hookgate/config"
)

// Protocols of telemetry.protocol.
const (
	ProtocolHTTP     = "http/protobuf"
	ProtocolHTTPJSON = "http/json"
	ProtocolGRPC     = "grpc"
)

// DefaultServiceName is service.name when neither telemetry.service_name
// nor OTEL_SERVICE_NAME is set.
const DefaultServiceName = "hookgate"

// InstrumentationName names hookgate's tracer (the instrumentation scope
// of every span it makes).
const InstrumentationName = "github.com/hookgate/hookgate"

// enabled is set by Setup when tracing is on: Start looks at it before
// anything else.
var enabled atomic.Bool

// Enabled reports whether tracing is on in this process.
func Enabled() bool { return enabled.Load() }

// Settings are the telemetry settings in force, the config's keys
// completed from the OTEL_* variables.
type Settings struct {
	On bool
	// Endpoint is the configured URL, or "" when the exporter reads
	// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT itself.
	Endpoint string
	// EndpointFrom says where the endpoint came from (telemetry.endpoint
	// or the variable's name), for the start-up log line.
	EndpointFrom string
	Protocol     string
	// Ratio is the sampling ratio when one is set (HasRatio).
	Ratio       float64
	HasRatio    bool
	ServiceName string
	// Why says why tracing is off, for the start-up log line.
	Why string
}

// Resolve completes cfg from the environment (getenv is os.Getenv in
// main): a key set in the config wins over its OTEL_* variable.
// OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none turn tracing off
// whatever the config says.
func Resolve(cfg config.Telemetry, getenv func(string) string) (Settings, error) {
	s := Settings{Endpoint: cfg.Endpoint, ServiceName: cfg.ServiceName}
	switch {
	case strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true"):
		s.Why = "OTEL_SDK_DISABLED=true"
		return s, nil
	case strings.EqualFold(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")), "none"):
		s.Why = "OTEL_TRACES_EXPORTER=none"
		return s, nil
	}
	switch {
	case cfg.Endpoint != "":
		s.EndpointFrom = "telemetry.endpoint"
	case getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "":
		s.EndpointFrom = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	case getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "":
		s.EndpointFrom = "OTEL_EXPORTER_OTLP_ENDPOINT"
	default:
		s.Why = "no OTLP endpoint (telemetry.endpoint, OTEL_EXPORTER_OTLP_ENDPOINT)"
		return s, nil
	}
	s.On = true
	s.Protocol = cfg.Protocol
	for _, v := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if s.Protocol == "" {
			s.Protocol = strings.TrimSpace(getenv(v))
		}
	}
	switch s.Protocol {
	case "", "http", ProtocolHTTP:
		s.Protocol = ProtocolHTTP
	case ProtocolHTTPJSON, ProtocolGRPC:
	default:
		return s, fmt.Errorf("telemetry: unknown OTLP protocol %q (want http/protobuf, http/json or grpc)", s.Protocol)
	}
	if cfg.SampleRatio != nil {
		s.Ratio, s.HasRatio = *cfg.SampleRatio, true
	}
	if s.ServiceName == "" {
		s.ServiceName = strings.TrimSpace(getenv("OTEL_SERVICE_NAME"))
	}
	if s.ServiceName == "" {
		s.ServiceName = DefaultServiceName
	}
	return s, nil
}

// Setup starts tracing as s says: an OTLP exporter behind a batching span
// processor (bounded queue: spans beyond it are dropped and counted by the
// SDK, never waited for), installed as the process's tracer provider.
// instance is the service.instance.id (hostname and pid, say). The
// returned shutdown flushes what is queued and stops the exporter; it is
// a no-op when tracing is off. Exporter errors (a collector down) go to
// log, secrets redacted by redact.
func Setup(ctx context.Context, s Settings, instance string, log *slog.Logger, redact func(string) string) (shutdown func(context.Context) error, err error) {
	nop := func(context.Context) error { return nil }
	if !s.On {
		return nop, nil
	}
	var exp sdktrace.SpanExporter
	switch s.Protocol {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(s.Endpoint))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		var opts []otlptracehttp.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(HTTPTracesURL(s.Endpoint)))
		}
		if s.Protocol == ProtocolHTTPJSON {
			opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nop, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithTelemetrySDK(),
		resource.WithAttributes(
			attribute.String("service.name", s.ServiceName),
			attribute.String("service.version", hookgate.Version),
			attribute.String("service.instance.id", instance),
		),
	)
	if err != nil && res == nil {
		return nop, fmt.Errorf("telemetry: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(exp), sdktrace.WithResource(res)}
	if s.HasRatio {
		// Only roots decide: an event's later spans (another instance's
		// routing, a retry hours later) follow the sampled flag that the
		// CloudEvent and the job carry.
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.Ratio))))
	} // else OTEL_TRACES_SAMPLER(_ARG), else parentbased_always_on
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetErrorHandler(errorLogger(log, redact))
	otel.SetTracerProvider(tp)
	tracer.Store(&tracerBox{tp.Tracer(InstrumentationName, trace.WithInstrumentationVersion(hookgate.Version))})
	enabled.Store(true)
	return func(ctx context.Context) error {
		enabled.Store(false)
		return tp.Shutdown(ctx)
	}, nil
}

// HTTPTracesURL is the URL an OTLP/HTTP exporter posts to for endpoint:
// the endpoint itself when it has a path, else endpoint + /v1/traces (as
// OTEL_EXPORTER_OTLP_ENDPOINT is read).
func HTTPTracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}

// errorLogger logs the SDK's errors (an export that failed), at most one
// line every 10 s with the number left out, so that a collector that is
// down does not flood the log.
func errorLogger(log *slog.Logger, redact func(string) string) otel.ErrorHandlerFunc {
	var last atomic.Int64
	var skipped atomic.Int64
	return func(err error) {
		now := time.Now().UnixNano()
		prev := last.Load()
		if now-prev < int64(10*time.Second) || !last.CompareAndSwap(prev, now) {
			skipped.Add(1)
			return
		}
		msg := err.Error()
		if redact != nil {
			msg = redact(msg)
		}
		log.Warn("tracing: export failed", "err", msg, "errors_not_logged", skipped.Swap(0))
	}
}

// noSpan is the span Start returns when tracing is off.
var noSpan = trace.SpanFromContext(context.Background())

type tracerBox struct{ trace.Tracer }

var tracer atomic.Pointer[tracerBox]

// Start starts a span named name under the span in ctx when tracing is
// on. Off, it returns ctx and a no-op span at once.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, noSpan
	}
	return tracer.Load().Start(ctx, name, opts...)
}

// Fail marks span failed with code (an error code: invalid_token,
// QUERY_LIMIT_EXCEEDED, http_500), recorded as hookgate.error_code and the
// span's status. err's text is not recorded: it may quote an answer.
func Fail(span trace.Span, code string) {
	if !span.IsRecording() || code == "" {
		return
	}
	span.SetAttributes(attribute.String(AttrErrorCode, code))
	span.SetStatus(codes.Error, code)
}

// TraceID is the trace id of the span in ctx as 32 hex digits, when that
// span is sampled (its trace is exported); "" otherwise. History rows
// carry it.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsSampled() {
		return ""
	}
	return sc.TraceID().String()
}
