package ambassador

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Cluster's per-endpoint series, labelled endpoint=<addr> (and cluster=<name> when
// registered).
type metrics struct {
	requests  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	active    *prometheus.GaugeVec
	ejections *prometheus.CounterVec
	available *prometheus.GaugeVec
	retries   prometheus.Counter
	panic     prometheus.Gauge
}

// endpointMetrics are one endpoint's children, resolved once so the hot path does no label lookups.
type endpointMetrics struct {
	requests  prometheus.Counter
	errors    prometheus.Counter
	latency   prometheus.Observer
	active    prometheus.Gauge
	ejections prometheus.Counter
	available prometheus.Gauge
}

func newMetrics(name string, reg prometheus.Registerer) (*metrics, error) {
	l := []string{"endpoint"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podblocks_ambassador_requests_total",
			Help: "Requests (HTTP) or connections (TCP) sent to an endpoint."}, l),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podblocks_ambassador_errors_total",
			Help: "Failed requests or connections to an endpoint (connect errors, resets, timeouts, 5xx)."}, l),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "podblocks_ambassador_request_duration_seconds",
			Help: "Time to an endpoint's response headers (HTTP) or connection (TCP).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, l),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "podblocks_ambassador_active_requests",
			Help: "Requests or connections in flight to an endpoint."}, l),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "podblocks_ambassador_ejections_total",
			Help: "Times an endpoint was ejected by outlier detection or failed its health check."}, l),
		available: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "podblocks_ambassador_endpoint_available",
			Help: "1 when the endpoint is healthy and not ejected, else 0. In panic mode (podblocks_ambassador_cluster_panic 1) endpoints at 0 take traffic too."}, l),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "podblocks_ambassador_retries_total",
			Help: "HTTP requests retried (on another endpoint when one can take them)."}),
		panic: prometheus.NewGauge(prometheus.GaugeOpts{Name: "podblocks_ambassador_cluster_panic",
			Help: "1 while the cluster is in panic mode: too few endpoints are available, so it balances over all of them, ejected and unhealthy ones too."}),
	}
	if reg == nil {
		return m, nil
	}
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"cluster": name}, reg)
	for _, c := range []prometheus.Collector{m.requests, m.errors, m.latency, m.active, m.ejections, m.available, m.retries, m.panic} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, &ConfigError{Field: "name", Reason: "cluster " + name + " is already registered"}
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) forEndpoint(addr string) endpointMetrics {
	return endpointMetrics{
		requests:  m.requests.WithLabelValues(addr),
		errors:    m.errors.WithLabelValues(addr),
		latency:   m.latency.WithLabelValues(addr),
		active:    m.active.WithLabelValues(addr),
		ejections: m.ejections.WithLabelValues(addr),
		available: m.available.WithLabelValues(addr),
	}
}

func (m *metrics) drop(addr string) {
	m.requests.DeleteLabelValues(addr)
	m.errors.DeleteLabelValues(addr)
	m.latency.DeleteLabelValues(addr)
	m.active.DeleteLabelValues(addr)
	m.ejections.DeleteLabelValues(addr)
	m.available.DeleteLabelValues(addr)
}
