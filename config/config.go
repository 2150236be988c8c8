// Package config is hookgate's configuration: one typed tree, loaded once
// from YAML with HOOKGATE_* environment overrides, and validated as a whole.
package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration file (SPEC.md, "Config file").
type Config struct {
	Server  Server  `yaml:"server"`
	DataDir string  `yaml:"data_dir"`
	Secrets Secrets `yaml:"secrets"`
	Bus     Bus     `yaml:"bus"`
	History History `yaml:"history"`
	Retry   Retry   `yaml:"retry"`
	Admin   Admin   `yaml:"admin"`
	Log     Log     `yaml:"log"`
	// Telemetry is OpenTelemetry tracing; off unless an OTLP endpoint is
	// set here or in OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT.
	Telemetry Telemetry `yaml:"telemetry"`
	Sources   []Source  `yaml:"sources"`
	Portals   []Portal  `yaml:"portals"`
	Routes    []Route   `yaml:"routes"`
	// Sync and Reconcile are two-way sync (sync.go, docs/sync.md).
	Sync      Sync        `yaml:"sync"`
	Reconcile []Reconcile `yaml:"reconcile"`
}

// Server is the inbound HTTP server.
type Server struct {
	Listen         string `yaml:"listen"`
	BasePath       string `yaml:"base_path"`
	MaxBodyBytes   int64  `yaml:"max_body_bytes"`
	MaxHeaderBytes int    `yaml:"max_header_bytes"`
	// MaxFormFields bounds the fields of a urlencoded or multipart body:
	// one with more is refused (413) before it is parsed.
	MaxFormFields int `yaml:"max_form_fields"`
	// MaxInflightBytes bounds the bytes of large bodies (over 64 KiB)
	// being parsed, redacted and stored at once; a request over the budget
	// waits for room (up to the publish timeout), then answers 503 with
	// Retry-After. Each such body costs about five times its size while it
	// is worked on (docs/performance.md, "Memory under large bodies").
	MaxInflightBytes int64    `yaml:"max_inflight_bytes"`
	ReadTimeout      Duration `yaml:"read_timeout"`
	WriteTimeout     Duration `yaml:"write_timeout"`
	IdleTimeout      Duration `yaml:"idle_timeout"`
	ShutdownTimeout  Duration `yaml:"shutdown_timeout"`
	// DrainDelay is how long /readyz answers 503 before the listener
	// closes on shutdown, for load balancers to notice (default 0).
	DrainDelay     Duration `yaml:"drain_delay"`
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Secrets selects and configures the secret store.
type Secrets struct {
	Backend string `yaml:"backend"` // file | vault
	File    string `yaml:"file"`
	Vault   Vault  `yaml:"vault"`
}

// Vault is the Vault KV v2 backend.
type Vault struct {
	Address       string   `yaml:"address"`
	Mount         string   `yaml:"mount"`
	Auth          string   `yaml:"auth"` // token | approle
	Token         string   `yaml:"token"`
	AppRole       AppRole  `yaml:"approle"`
	CacheTTL      Duration `yaml:"cache_ttl"`
	RotationGrace Duration `yaml:"rotation_grace"`
	Timeout       Duration `yaml:"timeout"`
}

// AppRole holds AppRole login parameters.
type AppRole struct {
	Mount        string `yaml:"mount"`
	RoleID       string `yaml:"role_id"`
	SecretIDFile string `yaml:"secret_id_file"`
}

// Bus is the event bus.
type Bus struct {
	URL    string `yaml:"url"`
	Listen string `yaml:"listen"`
	Stream string `yaml:"stream"`
	// Sync is the embedded JetStream's fsync policy: "group" (the
	// default: a Publish returns after an fsync that began after its
	// PubAck, one fsync shared by every publish waiting), "interval" (the
	// server's default, fsync every 2 minutes) or "always" (the server
	// fsyncs every message before its acknowledgement). See
	// docs/reliability.md.
	Sync string `yaml:"sync"`
	// DedupWindow is the inbound stream's de-duplication window. 0 (the
	// default) is DefaultDedupWindow, or longer: the longest signature
	// tolerance of any source plus DedupSkew. A set value under the
	// longest tolerance is refused (a replay inside it would be stored
	// twice).
	DedupWindow Duration `yaml:"dedup_window"`
	MaxAge      Duration `yaml:"max_age"`
	Replicas    int      `yaml:"replicas"`
	// TLS is the embedded server's client port certificate; required
	// when bus.listen is not a loopback address.
	TLS BusTLS `yaml:"tls"`
}

// BusTLS is a certificate and key in PEM files.
type BusTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// DefaultDedupWindow is bus.dedup_window when it is not set and no source
// has a longer signature tolerance.
const DefaultDedupWindow = 2 * time.Minute

// DedupSkew is added to the longest signature tolerance for the default
// de-duplication window: a request reaches hookgate some time after it
// was signed (the sender's clock, its queue, the network).
const DedupSkew = time.Minute

// History is where exchanges are recorded.
type History struct {
	ClickHouse    ClickHouse `yaml:"clickhouse"`
	BatchRows     int        `yaml:"batch_rows"`
	FlushInterval Duration   `yaml:"flush_interval"`
	Retention     Duration   `yaml:"retention"`
	MaxBodyBytes  int        `yaml:"max_body_bytes"`
	SpoolMaxBytes int64      `yaml:"spool_max_bytes"`
	FileMaxBytes  int64      `yaml:"file_max_bytes"`
}

// ClickHouse is the history database.
type ClickHouse struct {
	Addr     []string `yaml:"addr"`
	Database string   `yaml:"database"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"` // a secret reference
}

// Retry is the durable job schedule.
type Retry struct {
	Schedule []Duration `yaml:"schedule"`
	Workers  int        `yaml:"workers"`
}

// Admin is the admin API.
type Admin struct {
	Token string `yaml:"token"` // a secret reference; "" = admin API off
	// Console serves the web console at /console/ while the admin API is
	// on (default true).
	Console bool `yaml:"console"`
	// ConsoleSession is how long a console login lasts (default 12h).
	ConsoleSession Duration `yaml:"console_session"`
}

// Log is the process log.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Telemetry is OpenTelemetry tracing exported over OTLP
// (docs/operations.md, "Tracing"). A key left empty takes the standard
// OTEL_* environment variable, then the default.
type Telemetry struct {
	// Endpoint is the OTLP collector's URL, e.g. http://127.0.0.1:4318
	// (HTTP; /v1/traces is added when the URL has no path) or
	// http://127.0.0.1:4317 (gRPC). "" = OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// or OTEL_EXPORTER_OTLP_ENDPOINT; none of them = tracing off.
	Endpoint string `yaml:"endpoint"`
	// Protocol is http/protobuf or grpc. "" =
	// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL,
	// else http/protobuf.
	Protocol string `yaml:"protocol"`
	// SampleRatio is the share of events traced, 0 to 1. nil =
	// OTEL_TRACES_SAMPLER(_ARG), else 1 (every event).
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name resource attribute. "" =
	// OTEL_SERVICE_NAME, else hookgate.
	ServiceName string `yaml:"service_name"`
}

// Source is one inbound webhook source.
type Source struct {
	ID            string            `yaml:"id" json:"id"`
	Provider      string            `yaml:"provider" json:"provider"`
	Secret        string            `yaml:"secret" json:"secret"`
	AuthParameter string            `yaml:"auth_parameter" json:"auth_parameter,omitempty"`
	Event         string            `yaml:"event" json:"event,omitempty"`
	MaxBodyBytes  int64             `yaml:"max_body_bytes" json:"max_body_bytes,omitempty"`
	Rate          *Rate             `yaml:"rate" json:"rate,omitempty"`
	Options       map[string]string `yaml:"options" json:"options,omitempty"`
}

// Rate is a token-bucket rate: PerSecond sustained, Burst at once.
type Rate struct {
	PerSecond float64 `yaml:"per_second" json:"per_second"`
	Burst     int     `yaml:"burst" json:"burst"`
}

// Portal is one Bitrix24 portal reached through an inbound webhook.
type Portal struct {
	ID      string   `yaml:"id"`
	BaseURL string   `yaml:"base_url"`
	UserID  int      `yaml:"user_id"`
	Secret  string   `yaml:"secret"`
	Rate    *Rate    `yaml:"rate"`
	Timeout Duration `yaml:"timeout"`
	Retries int      `yaml:"retries"`
	// BatchWait is the longest a route call waits for others to join its
	// batch request (default 200ms).
	BatchWait Duration `yaml:"batch_wait"`
	// BatchSize is the most commands of one batch request (1..50,
	// default 50; 1 sends every call alone).
	BatchSize int `yaml:"batch_size"`
}

// Route ties an inbound event to an optional call and an optional delivery.
type Route struct {
	Name    string   `yaml:"name"`
	On      On       `yaml:"on"`
	Key     string   `yaml:"key"` // entity key template; default {{ param "data[FIELDS][ID]" }}
	Call    *Call    `yaml:"call"`
	Deliver *Deliver `yaml:"deliver"`
	// Coalesce is "" (every event delivered) or "latest": pending events
	// of one key are served by one call and one delivery of the latest.
	Coalesce string `yaml:"coalesce"`
}

// CoalesceLatest is the value of Route.Coalesce that coalesces.
const CoalesceLatest = "latest"

// On matches events by source and event name; "*" and a trailing "*" prefix
// wildcard are allowed.
type On struct {
	Source string `yaml:"source"`
	Event  string `yaml:"event"`
}

// Call is a Bitrix24 REST call whose params are Go templates over the event.
type Call struct {
	Portal string         `yaml:"portal"`
	Method string         `yaml:"method"`
	Params map[string]any `yaml:"params"`
	// Batch false sends this route's calls alone, never inside a batch
	// request (default true).
	Batch *bool `yaml:"batch"`
	// Idempotent declares that the call may run twice with the same
	// effect: a write is then retried after an ambiguous failure (a
	// timeout once it was sent). See docs/sync.md.
	Idempotent bool `yaml:"idempotent"`
}

// Deliver is a signed HTTP POST to the platform.
type Deliver struct {
	URL     string   `yaml:"url"`
	Secret  string   `yaml:"secret"`
	Timeout Duration `yaml:"timeout"`
}

// Duration is a time.Duration read from strings like "30s" or "72h".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText reads "1m30s" style durations; a bare number is seconds.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q (want a number and a unit: ms, s, m or h, as in 90s, 15m, 36h; a day is 24h)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as time.Duration does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// SourceByID returns the source with id, or nil.
func (c *Config) SourceByID(id string) *Source {
	for i := range c.Sources {
		if c.Sources[i].ID == id {
			return &c.Sources[i]
		}
	}
	return nil
}

// PortalByID returns the portal with id, or nil.
func (c *Config) PortalByID(id string) *Portal {
	for i := range c.Portals {
		if c.Portals[i].ID == id {
			return &c.Portals[i]
		}
	}
	return nil
}
