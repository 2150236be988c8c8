package config

import (
	"fmt"
	"strings"
	"time"
)

// Sync configures two-way sync with Bitrix24 (docs/sync.md).
type Sync struct {
	// Echo is how hookgate recognises the Bitrix24 events of its own
	// writes: "fingerprint" (the default) or "off".
	Echo string `yaml:"echo"`
	// EchoTTL is how long the fingerprint of a state hookgate wrote is
	// kept (default 10m): an echo arriving later is delivered.
	EchoTTL Duration `yaml:"echo_ttl"`
}

// Echo modes.
const (
	EchoFingerprint = "fingerprint"
	EchoOff         = "off"
)

// DefaultEchoTTL is sync.echo_ttl when unset.
const DefaultEchoTTL = 10 * time.Minute

// Reconcile is one periodic reconciliation: the entities of a type
// changed in a portal since the last run, compared with what the platform
// was sent; each change no event covered becomes an event.
type Reconcile struct {
	Portal string `yaml:"portal"`
	// Entity is deal, contact, lead or company (crm.<entity>.list).
	Entity string   `yaml:"entity"`
	Every  Duration `yaml:"every"`
	// Source is the source id of the events it makes (default
	// "reconcile-<portal>"); routes match it like any other.
	Source string `yaml:"source"`
	// Settle is how old a change must be before a run looks at it
	// (default 1m): its own event has had time to arrive, and the
	// portal's clock may be a little ahead of ours.
	Settle Duration `yaml:"settle"`
}

// ReconcileEntities are the entity types reconcile supports.
var ReconcileEntities = map[string]bool{"deal": true, "contact": true, "lead": true, "company": true}

// Defaults of a reconcile entry.
const (
	DefaultReconcileSettle = time.Minute
	MinReconcileEvery      = time.Second
)

// SourceID returns the source id of the entry's events.
func (r Reconcile) SourceID() string {
	if r.Source != "" {
		return r.Source
	}
	return "reconcile-" + r.Portal
}

// EchoTTLOrDefault returns sync.echo_ttl, or its default.
func (s Sync) EchoTTLOrDefault() time.Duration {
	if s.EchoTTL > 0 {
		return s.EchoTTL.D()
	}
	return DefaultEchoTTL
}

// validateSync checks sync and reconcile; sources and portals are the ids
// of the file's sources and portals. It adds the reconcile sources to
// sources, so that routes may name them.
func (c *Config) validateSync(add func(string, string, ...any), sources, portals map[string]bool) {
	switch c.Sync.Echo {
	case "", EchoFingerprint, EchoOff:
	default:
		add("sync.echo", "want fingerprint or off, got %q", c.Sync.Echo)
	}
	if c.Sync.EchoTTL < 0 {
		add("sync.echo_ttl", "must not be negative")
	}
	seen := map[string]bool{}
	for i, r := range c.Reconcile {
		path := fmt.Sprintf("reconcile[%d]", i)
		if !portals[r.Portal] {
			add(path+".portal", "unknown portal %q", r.Portal)
		}
		if !ReconcileEntities[r.Entity] {
			add(path+".entity", "want deal, contact, lead or company, got %q", r.Entity)
		}
		if r.Every.D() < MinReconcileEvery {
			add(path+".every", "must be at least %v (e.g. 5m)", MinReconcileEvery)
		}
		if r.Settle < 0 {
			add(path+".settle", "must not be negative")
		}
		key := r.Portal + "/" + r.Entity
		if seen[key] {
			add(path, "portal %q and entity %q are reconciled twice", r.Portal, r.Entity)
		}
		seen[key] = true
		// The source may be one of sources (the Bitrix24 source whose
		// events it stands in for, so that its routes match) or a name of
		// its own.
		src := r.SourceID()
		if !idPattern.MatchString(src) {
			add(path+".source", "want an id of letters, digits, - and _, got %q", src)
		} else if event := "ONCRM" + strings.ToUpper(r.Entity) + "UPDATE"; ReconcileEntities[r.Entity] && !c.routed(src, event) {
			add(path, "no route takes its events (source %q, event %s): add one, e.g. on: {source: %q, event: ONCRM%s*}",
				src, event, src, strings.ToUpper(r.Entity))
		}
		sources[src] = true
	}
}

// routed reports whether a route matches events of source and event, by
// the rules of routes.Match: "*", "PREFIX*" or exact; event names compare
// case-insensitively.
func (c *Config) routed(source, event string) bool {
	match := func(pattern, s string, fold bool) bool {
		if fold {
			pattern, s = strings.ToUpper(pattern), strings.ToUpper(s)
		}
		if pattern == "*" {
			return true
		}
		if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
			return strings.HasPrefix(s, prefix)
		}
		return pattern == s
	}
	for _, r := range c.Routes {
		if match(r.On.Source, source, false) && match(r.On.Event, event, true) {
			return true
		}
	}
	return false
}
