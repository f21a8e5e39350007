package lifecycle

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	drains        prometheus.Counter
	drainDuration prometheus.Histogram
	state         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		drains: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_lifecycle_drains_total",
			Help: "Drains started (by signal, /prestop, /quitquitquit or Drain).",
		}),
		drainDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podblocks_lifecycle_drain_duration_seconds",
			Help:    "Time from the start of a drain until the HTTP servers were shut down.",
			Buckets: []float64{0.1, 0.5, 1, 2, 5, 10, 20, 30, 60},
		}),
		state: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podblocks_lifecycle_state",
			Help: "The process' lifecycle state: 1 starting, 2 ready, 3 draining, 4 stopped.",
		}),
	}
	if err := register(reg, m.drains, m.drainDuration, m.state); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers cs with reg; nil reg registers nothing.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			unregister(reg, cs[:i]...)
			return fmt.Errorf("lifecycle: register metrics: %w", err)
		}
	}
	return nil
}

// unregister undoes register.
func unregister(reg prometheus.Registerer, cs ...prometheus.Collector) {
	for _, c := range cs {
		reg.Unregister(c)
	}
}
