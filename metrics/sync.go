package metrics

import "github.com/prometheus/client_golang/prometheus"

// Sync holds the metric families of two-way sync (docs/sync.md).
type Sync struct {
	suppressed *prometheus.CounterVec
	runs       *prometheus.CounterVec
	events     *prometheus.CounterVec
}

// NewSync registers the two-way sync families on m's registry.
func (m *Metrics) NewSync() *Sync {
	s := &Sync{
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "echo_suppressed_total",
			Help: "Bitrix24 events not delivered because the entity is exactly the state hookgate wrote, by route.",
		}, []string{"route"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reconcile_runs_total",
			Help: "Reconciliation runs by portal, entity and result (ok, failed, skipped: another instance ran it).",
		}, []string{"portal", "entity", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reconcile_events_total",
			Help: "Changes found by reconciliation that no received event covered, published as events, by portal and entity.",
		}, []string{"portal", "entity"}),
	}
	m.reg.MustRegister(s.suppressed, s.runs, s.events)
	return s
}

// EchoSuppressed counts an echo not delivered (routes.Sync.Suppressed).
func (s *Sync) EchoSuppressed(route string) { s.suppressed.WithLabelValues(route).Inc() }

// ReconcileRun counts a reconciliation run and the events it published.
func (s *Sync) ReconcileRun(portal, entity, result string, events int) {
	s.runs.WithLabelValues(portal, entity, result).Inc()
	if events > 0 {
		s.events.WithLabelValues(portal, entity).Add(float64(events))
	}
}
