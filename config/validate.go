package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Problem is one thing wrong with a configuration, at a key path such as
// sources[2].provider.
type Problem struct {
	Path    string
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Problems is every problem found, reported at once.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = "  " + p.String()
	}
	return fmt.Sprintf("config: %d problem(s):\n%s", len(ps), strings.Join(lines, "\n"))
}

// Known lists the names a configuration may refer to beyond itself.
type Known struct {
	Providers []string // registered provider names
	// Source, when set, builds a source's provider from its entry (with
	// the registered constructor): its problems, at key paths relative to
	// the entry ("options.tolerance"; "" for the entry as a whole), are
	// reported with the rest under sources[i]; tolerance is how long a
	// signed request stays acceptable (0 = no timestamp), which bounds
	// bus.dedup_window from below.
	Source func(Source) (tolerance time.Duration, problems Problems)
	// Routes, when set, checks what only the routes engine can (template
	// syntax); its problems carry full key paths (routes[1].call.params.x).
	Routes func([]Route) Problems
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// MaxIDLength is the longest source or portal id, in bytes. A source id is
// a token of every subject its events go to and a key of the runtime
// sources bucket; NATS refuses protocol lines over 4 KiB.
const MaxIDLength = 64

// checkID adds a problem when id is not a valid source or portal id. It
// never echoes a long id whole.
func checkID(add func(string, string, ...any), path, id string) bool {
	switch {
	case len(id) > MaxIDLength:
		add(path, "want an id of at most %d characters, got %d", MaxIDLength, len(id))
	case !idPattern.MatchString(id):
		add(path, "want an id of letters, digits, - and _, got %q", id)
	default:
		return true
	}
	return false
}

// Validate checks the whole tree and returns Problems listing everything
// wrong, or nil.
func (c *Config) Validate(known Known) error {
	var ps Problems
	add := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if _, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
		add("server.listen", "want host:port, got %q", c.Server.Listen)
	}
	if c.Server.BasePath != "" && (!strings.HasPrefix(c.Server.BasePath, "/") || strings.HasSuffix(c.Server.BasePath, "/")) {
		add("server.base_path", "must start with / and not end with /")
	}
	if c.Server.MaxBodyBytes <= 0 {
		add("server.max_body_bytes", "must be positive")
	}
	if c.Server.MaxInflightBytes < c.Server.MaxBodyBytes {
		add("server.max_inflight_bytes", "must be at least server.max_body_bytes (%d)", c.Server.MaxBodyBytes)
	}
	if c.Server.MaxFormFields <= 0 {
		add("server.max_form_fields", "must be positive")
	}
	for _, p := range c.Server.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			add("server.trusted_proxies", "%q is neither an IP nor a CIDR", p)
		}
	}
	if c.DataDir == "" {
		add("data_dir", "must be set")
	}
	switch c.Secrets.Backend {
	case "file":
		if c.Secrets.File == "" {
			add("secrets.file", "must be set for the file backend")
		}
	case "vault":
		v := c.Secrets.Vault
		if u, err := url.Parse(v.Address); err != nil || u.Host == "" {
			add("secrets.vault.address", "want a URL, got %q", v.Address)
		}
		if v.Mount == "" {
			add("secrets.vault.mount", "must be set")
		}
		switch v.Auth {
		case "token":
		case "approle":
			if v.AppRole.RoleID == "" {
				add("secrets.vault.approle.role_id", "must be set for approle auth")
			}
			if v.AppRole.SecretIDFile == "" {
				add("secrets.vault.approle.secret_id_file", "must be set for approle auth")
			}
		default:
			add("secrets.vault.auth", "unknown auth %q (want token or approle)", v.Auth)
		}
		if v.CacheTTL <= 0 {
			add("secrets.vault.cache_ttl", "must be positive")
		}
		if v.RotationGrace < 0 {
			add("secrets.vault.rotation_grace", "must not be negative")
		}
	default:
		add("secrets.backend", "unknown backend %q (want file or vault)", c.Secrets.Backend)
	}
	if c.Bus.Stream == "" || !idPattern.MatchString(c.Bus.Stream) {
		add("bus.stream", "want a stream name of letters, digits, - and _")
	}
	if c.Bus.URL == "" {
		if _, _, err := net.SplitHostPort(c.Bus.Listen); err != nil {
			add("bus.listen", "want host:port, got %q", c.Bus.Listen)
		}
	}
	if c.Bus.URL == "" && !loopbackListen(c.Bus.Listen) && (c.Bus.TLS.CertFile == "" || c.Bus.TLS.KeyFile == "") {
		add("bus.listen", "%q is not a loopback address: the embedded bus listens beyond this host only with bus.tls.cert_file and bus.tls.key_file set (its token is always required)", c.Bus.Listen)
	}
	if (c.Bus.TLS.CertFile == "") != (c.Bus.TLS.KeyFile == "") {
		add("bus.tls", "set both cert_file and key_file, or neither")
	}
	if c.Bus.DedupWindow < 0 {
		add("bus.dedup_window", "must not be negative")
	} else if longest, at := c.longestTolerance(known); c.Bus.DedupWindow > 0 && c.Bus.DedupWindow.D() < longest {
		add("bus.dedup_window", "%v is shorter than the signature tolerance %v of %s: a replay inside the tolerance would be stored twice (leave it unset for %v)",
			c.Bus.DedupWindow.D(), longest, at, max(DefaultDedupWindow, longest+DedupSkew))
	}
	if c.Bus.Sync != "interval" && c.Bus.Sync != "always" && c.Bus.Sync != "group" {
		add("bus.sync", "unknown sync policy %q (want group, interval or always)", c.Bus.Sync)
	}
	if c.History.BatchRows <= 0 {
		add("history.batch_rows", "must be positive")
	}
	if c.History.FlushInterval <= 0 {
		add("history.flush_interval", "must be positive")
	}
	if c.History.ClickHouse.Password != "" {
		checkRef(add, "history.clickhouse.password", c.History.ClickHouse.Password)
	}
	if len(c.Retry.Schedule) == 0 {
		add("retry.schedule", "must list at least one delay")
	}
	for i, d := range c.Retry.Schedule {
		if d <= 0 {
			add(fmt.Sprintf("retry.schedule[%d]", i), "must be positive")
		}
	}
	if c.Retry.Workers <= 0 {
		add("retry.workers", "must be positive")
	}
	if c.Admin.Token != "" {
		checkRef(add, "admin.token", c.Admin.Token)
	}
	c.Telemetry.validate(add)
	if d := c.Admin.ConsoleSession.D(); c.Admin.Console && (d < time.Minute || d > 30*24*time.Hour) {
		add("admin.console_session", "must be between 1m and 720h, got %v", d)
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "unknown level %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "text", "json":
	default:
		add("log.format", "unknown format %q (want text or json)", c.Log.Format)
	}
	providers := map[string]bool{}
	for _, p := range known.Providers {
		providers[p] = true
	}
	sources := map[string]bool{}
	for i, s := range c.Sources {
		sps := ValidateSource(fmt.Sprintf("sources[%d]", i), s, providers)
		ps = append(ps, sps...)
		if len(sps) == 0 && known.Source != nil {
			_, sps := known.Source(s)
			ps = append(ps, sps.Under(fmt.Sprintf("sources[%d]", i))...)
		}
		if sources[s.ID] {
			add(fmt.Sprintf("sources[%d].id", i), "duplicate id %q", s.ID)
		}
		sources[s.ID] = true
	}
	portals := map[string]bool{}
	for i, p := range c.Portals {
		path := fmt.Sprintf("portals[%d]", i)
		if checkID(add, path+".id", p.ID) && portals[p.ID] {
			add(path+".id", "duplicate id %q", p.ID)
		}
		portals[p.ID] = true
		if u, err := url.Parse(p.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(path+".base_url", "want an http(s) URL, got %q", p.BaseURL)
		}
		if p.UserID <= 0 {
			add(path+".user_id", "must be a positive user id")
		}
		checkRef(add, path+".secret", p.Secret)
		if p.Rate != nil && (p.Rate.PerSecond <= 0 || p.Rate.Burst <= 0) {
			add(path+".rate", "per_second and burst must be positive")
		}
		if p.BatchWait < 0 || p.BatchWait.D() > 10*time.Second {
			add(path+".batch_wait", "want a duration from 0 (the default, 200ms) to 10s, got %v", p.BatchWait)
		}
		if p.BatchSize < 0 || p.BatchSize > 50 {
			add(path+".batch_size", "want 1 to 50 commands (Bitrix24's batch cap), got %d", p.BatchSize)
		}
	}
	c.validateSync(add, sources, portals) // sync.go
	routes := map[string]bool{}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if !idPattern.MatchString(r.Name) {
			add(path+".name", "want a name of letters, digits, - and _, got %q", r.Name)
		} else if routes[r.Name] {
			add(path+".name", "duplicate name %q", r.Name)
		}
		routes[r.Name] = true
		if r.On.Source == "" {
			add(path+".on.source", "must be set (use \"*\" for every source)")
		} else if !strings.Contains(r.On.Source, "*") && !sources[r.On.Source] {
			add(path+".on.source", "unknown source %q", r.On.Source)
		}
		if r.On.Event == "" {
			add(path+".on.event", "must be set (use \"*\" for every event)")
		}
		if r.Call == nil && r.Deliver == nil {
			add(path, "needs a call, a deliver or both")
		}
		if r.Call != nil {
			if !portals[r.Call.Portal] {
				add(path+".call.portal", "unknown portal %q", r.Call.Portal)
			}
			if r.Call.Method == "" {
				add(path+".call.method", "must be set")
			}
		}
		switch r.Coalesce {
		case "", "none":
		case CoalesceLatest:
			if r.Call == nil || !readMethod.MatchString(r.Call.Method) {
				add(path+".coalesce", "latest needs a read call (a *.get or *.list method): the delivery carries the entity's latest state")
			}
		default:
			add(path+".coalesce", "want latest or none, got %q", r.Coalesce)
		}
		if r.Deliver != nil {
			if u, err := url.Parse(r.Deliver.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(path+".deliver.url", "want an http(s) URL, got %q", r.Deliver.URL)
			}
			checkRef(add, path+".deliver.secret", r.Deliver.Secret)
		}
	}
	if known.Routes != nil {
		ps = append(ps, known.Routes(c.Routes)...)
	}
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// readMethod matches REST methods that only read.
var readMethod = regexp.MustCompile(`(?i)\.(get|list)$`)

// Under returns the problems with prefix put before their paths: a problem
// at options.tolerance under sources[2] is at sources[2].options.tolerance,
// one at "" is at sources[2].
func (ps Problems) Under(prefix string) Problems {
	out := make(Problems, len(ps))
	for i, p := range ps {
		out[i] = p
		switch {
		case p.Path == "":
			out[i].Path = prefix
		case prefix != "":
			out[i].Path = prefix + "." + p.Path
		}
	}
	return out
}

// longestTolerance returns the longest signature tolerance of the sources
// and the path of the source that has it; 0 without known.Source.
func (c *Config) longestTolerance(known Known) (time.Duration, string) {
	if known.Source == nil {
		return 0, ""
	}
	var longest time.Duration
	var at string
	for i, s := range c.Sources {
		if t, ps := known.Source(s); len(ps) == 0 && t > longest {
			longest, at = t, fmt.Sprintf("sources[%d] (%s)", i, s.ID)
		}
	}
	return longest, at
}

// loopbackListen reports whether host:port listens on loopback only.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return true // reported as a bad address
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ValidateSource checks one source entry (from the file or the admin API).
func ValidateSource(path string, s Source, providers map[string]bool) Problems {
	var ps Problems
	add := func(p, format string, args ...any) {
		ps = append(ps, Problem{Path: p, Message: fmt.Sprintf(format, args...)})
	}
	checkID(add, path+".id", s.ID)
	if s.Provider == "" {
		add(path+".provider", "must be set")
	} else if !providers[s.Provider] {
		names := make([]string, 0, len(providers))
		for n := range providers {
			names = append(names, n)
		}
		slices.Sort(names)
		add(path+".provider", "unknown provider %q (want one of %s)", s.Provider, strings.Join(names, ", "))
	}
	checkRef(add, path+".secret", s.Secret)
	if s.MaxBodyBytes < 0 {
		add(path+".max_body_bytes", "must not be negative")
	}
	if s.Rate != nil && (s.Rate.PerSecond <= 0 || s.Rate.Burst <= 0) {
		add(path+".rate", "per_second and burst must be positive")
	}
	return ps
}

func checkRef(add func(string, string, ...any), path, ref string) {
	if ref == "" {
		add(path, "missing secret reference")
		return
	}
	if _, _, err := ParseSecretRef(ref); err != nil {
		add(path, "%v", err)
	}
}

// ParseSecretRef splits a secret reference "path" or "path#field"; the field
// defaults to "token".
func ParseSecretRef(ref string) (path, field string, err error) {
	path, field, _ = strings.Cut(ref, "#")
	if field == "" {
		field = "token"
	}
	if path == "" || strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/") || strings.Contains(path, "//") {
		return "", "", fmt.Errorf("bad secret reference %q (want path or path#field)", ref)
	}
	return path, field, nil
}

// validate checks the telemetry section; empty keys are left to the
// OTEL_* variables and checked when tracing starts.
func (t *Telemetry) validate(add func(string, string, ...any)) {
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("telemetry.endpoint", "want an http:// or https:// URL of an OTLP collector, got %q", t.Endpoint)
		} else if u.User != nil {
			// a password here would be logged and shown by hookgate check
			add("telemetry.endpoint", "must not hold credentials; set OTEL_EXPORTER_OTLP_HEADERS instead")
		}
	}
	switch t.Protocol {
	case "", "http/protobuf", "http/json", "http", "grpc":
	default:
		add("telemetry.protocol", "unknown protocol %q (want http/protobuf, http/json or grpc)", t.Protocol)
	}
	if r := t.SampleRatio; r != nil && (*r < 0 || *r > 1 || *r != *r) {
		add("telemetry.sample_ratio", "must be between 0 and 1, got %v", *r)
	}
}
