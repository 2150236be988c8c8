package metrics

import "github.com/prometheus/client_golang/prometheus"

// Panicked returns the counter of HTTP requests whose handler panicked
// (gateway.Deps.Panicked), registering it on first use.
func (m *Metrics) Panicked() func() {
	m.panicOnce.Do(func() {
		m.panics = prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_panics_total",
			Help: "HTTP requests whose handler panicked; each was answered 500 and the gateway went on.",
		})
		m.reg.MustRegister(m.panics)
	})
	return m.panics.Inc
}
