// Package metrics is hookgate's Prometheus instrumentation: one registry
// per Metrics value (no globals, nothing on the default registerer), with
// methods shaped like the observer hooks of the other packages, so that
// main wires them without adapters:
//
//	gateway.Deps{Observe: m.Inbound, Metrics: m.Handler()}
//	vault.WithObserver(m.Secret)
//	history.WithObserver(m.HistoryRows), history.WithSpoolGauge(m.SpoolBytes)
//	outbound.WithObserver(m)
//	jobs.Observer{Pending: m.JobsPending, Dead: func(jobs.DeadJob) { m.JobDead() }}
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookgate/hookgate/outbound"
)

const namespace = "hookgate"

// Metrics holds hookgate's metric families and the registry they live in.
type Metrics struct {
	reg *prometheus.Registry

	panicOnce sync.Once
	panics    prometheus.Counter

	inbound       *prometheus.CounterVec
	inboundDur    *prometheus.HistogramVec
	outbound      *prometheus.CounterVec
	outboundDur   *prometheus.HistogramVec
	jobsPending   prometheus.Gauge
	jobsDead      prometheus.Gauge
	historyRows   *prometheus.CounterVec
	spoolBytes    prometheus.Gauge
	breaker       *prometheus.GaugeVec
	secrets       *prometheus.CounterVec
	secretMissing *prometheus.CounterVec
	batchSize     *prometheus.HistogramVec
	coalesced     *prometheus.CounterVec
	routeLag      *prometheus.GaugeVec
}

var _ outbound.Observer = (*Metrics)(nil)

// New returns the metrics on a fresh registry that also carries the Go
// runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "inbound_requests_total",
			Help: "Inbound webhook requests by source, provider and outcome (accepted, duplicate, rejected).",
		}, []string{"source", "provider", "outcome"}),
		inboundDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "inbound_duration_seconds",
			Help:    "Time to answer an inbound webhook request, by source.",
			Buckets: prometheus.DefBuckets,
		}, []string{"source"}),
		outbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "outbound_requests_total",
			Help: "Outbound HTTP attempts by portal, operation (REST method) and outcome (ok, retry, failed).",
		}, []string{"portal", "operation", "outcome"}),
		outboundDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "outbound_duration_seconds",
			Help:    "Duration of outbound HTTP attempts, by portal.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"portal"}),
		jobsPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "jobs_pending",
			Help: "Durable jobs stored and not finished (waiting, running or waiting for a retry).",
		}),
		jobsDead: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "jobs_dead",
			Help: "Dead-lettered jobs (set at start from the dead-letter list, then counted up).",
		}),
		historyRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "history_rows_total",
			Help: "History rows by result (written, spooled, replayed, skipped, rejected, dropped).",
		}, []string{"result"}),
		spoolBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "history_spool_bytes",
			Help: "Size of the history spool on disk (rows waiting for ClickHouse).",
		}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "breaker_state",
			Help: "Circuit breaker state per portal: 0 closed, 1 half-open, 2 open.",
		}, []string{"portal"}),
		secretMissing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "source_secret_missing_total",
			Help: "Webhooks answered 503 because their source's secret is not in the store, by source.",
		}, []string{"source"}),
		secrets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "secret_cache_total",
			Help: "Secret lookups by result (hit, miss, stale, error).",
		}, []string{"result"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "batch_commands",
			Help:    "Commands per Bitrix24 request made for routes, by portal (1 = a call alone, up to 50 in a batch).",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 40, 49, 50},
		}, []string{"portal"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "coalesced_events_total",
			Help: "Events served by another event's call and delivery (coalesce: latest), by route.",
		}, []string{"route"}),
		routeLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "route_lag_seconds",
			Help: "Age of the event of a route's most recently finished job (the oldest of a coalesced one): how far behind the route runs.",
		}, []string{"route"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.inbound, m.inboundDur, m.outbound, m.outboundDur,
		m.jobsPending, m.jobsDead, m.historyRows, m.spoolBytes,
		m.breaker, m.secrets, m.secretMissing,
		m.batchSize, m.coalesced, m.routeLag,
	)
	return m
}

// Registry returns the registry, for collectors added by main.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:      m.reg, // counts its own scrape errors
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// Inbound counts one inbound request; its signature is gateway.Observer.
func (m *Metrics) Inbound(source, provider, outcome string, d time.Duration) {
	m.inbound.WithLabelValues(source, provider, outcome).Inc()
	m.inboundDur.WithLabelValues(source).Observe(d.Seconds())
}

// ObserveAttempt counts one outbound attempt (outbound.Observer).
func (m *Metrics) ObserveAttempt(a outbound.Attempt) {
	m.Outbound(a.Portal, a.Method, a.Outcome, a.Duration)
}

// Outbound counts one outbound attempt; for delivery clients that are not
// outbound.Bitrix24 (operation "deliver", portal = destination id).
func (m *Metrics) Outbound(portal, operation, outcome string, d time.Duration) {
	m.outbound.WithLabelValues(portal, operation, outcome).Inc()
	m.outboundDur.WithLabelValues(portal).Observe(d.Seconds())
}

// ObserveBreaker sets a portal's breaker gauge (outbound.Observer).
func (m *Metrics) ObserveBreaker(portal, _, to string) { m.BreakerState(portal, to) }

// BreakerState sets a portal's breaker gauge from a state name: "closed",
// "half-open" or "open" (gobreaker's names). Call it once per portal at
// start so that closed breakers show as 0 rather than missing.
func (m *Metrics) BreakerState(portal, state string) {
	v := 0.0
	switch state {
	case "half-open":
		v = 1
	case "open":
		v = 2
	}
	m.breaker.WithLabelValues(portal).Set(v)
}

// Secret counts one secret lookup by result (vault.WithObserver).
func (m *Metrics) Secret(result string) { m.secrets.WithLabelValues(result).Inc() }

// SecretMissing counts a webhook to a source whose secret the store does
// not have (answered 503).
func (m *Metrics) SecretMissing(source string) { m.secretMissing.WithLabelValues(source).Inc() }

// HistoryRows counts n history rows with result (history.WithObserver).
func (m *Metrics) HistoryRows(result string, n int) {
	m.historyRows.WithLabelValues(result).Add(float64(n))
}

// SpoolBytes sets the history spool size (history.WithSpoolGauge).
func (m *Metrics) SpoolBytes(n int64) { m.spoolBytes.Set(float64(n)) }

// JobsPending sets the number of pending jobs (jobs.Observer.Pending).
func (m *Metrics) JobsPending(n int) { m.jobsPending.Set(float64(n)) }

// JobDead counts one newly dead-lettered job (jobs.Observer.Dead).
func (m *Metrics) JobDead() { m.jobsDead.Inc() }

// JobReplayed counts one dead job replayed out of the dead letters.
func (m *Metrics) JobReplayed() { m.jobsDead.Dec() }

// SetJobsDead sets the number of dead-lettered jobs, e.g. from the
// dead-letter list at start.
func (m *Metrics) SetJobsDead(n int) { m.jobsDead.Set(float64(n)) }

// BatchSize observes the commands of one request a portal's Batcher sent.
func (m *Metrics) BatchSize(portal string, n int) {
	m.batchSize.WithLabelValues(portal).Observe(float64(n))
}

// Coalesced counts the events a coalesced delivery of route covered
// beyond the one it delivered (routes.Observer.Coalesced).
func (m *Metrics) Coalesced(route string, n int) {
	m.coalesced.WithLabelValues(route).Add(float64(n - 1))
}

// RouteLag sets how far behind a route runs (routes.Observer.Lag).
func (m *Metrics) RouteLag(route string, age time.Duration) {
	m.routeLag.WithLabelValues(route).Set(age.Seconds())
}
