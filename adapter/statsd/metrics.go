package statsd

import "github.com/prometheus/client_golang/prometheus"

// metrics are the adapter's own metrics. Workers count locally and add here once per batch, so
// the hot path touches no shared cache line per line.
type metrics struct {
	packets     *prometheus.CounterVec // transport
	lines       prometheus.Counter
	samples     *prometheus.CounterVec // type
	lineErrors  *prometheus.CounterVec // reason
	tagErrors   prometheus.Counter
	conflicts   prometheus.Counter
	drops       prometheus.Counter
	unmapped    prometheus.Counter
	expired     prometheus.Counter
	tcpConns    prometheus.Counter
	tcpRejected prometheus.Counter
	series      prometheus.GaugeFunc
	families    prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, r *registry) (*metrics, error) {
	m := &metrics{
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_packets_total",
			Help: "Statsd datagrams (udp, unixgram) or lines (tcp) received.",
		}, []string{"transport"}),
		lines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_lines_total",
			Help: "Statsd lines received (empty lines excluded).",
		}),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_samples_total",
			Help: "Statsd samples applied to a metric, by statsd type.",
		}, []string{"type"}),
		lineErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_sample_errors_total",
			Help: "Statsd lines or samples rejected, by reason.",
		}, []string{"reason"}),
		tagErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_tag_errors_total",
			Help: "Malformed or unusable tags skipped.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_conflicts_total",
			Help: "Samples dropped because their metric name is used by another metric type.",
		}),
		drops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_mapping_drops_total",
			Help: "Samples dropped by a mapping with action drop.",
		}),
		unmapped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_unmapped_total",
			Help: "Samples that matched no mapping and kept their escaped statsd name.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_expired_series_total",
			Help: "Series removed because they were not updated within their mapping's ttl.",
		}),
		tcpConns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_tcp_connections_total",
			Help: "TCP connections accepted.",
		}),
		tcpRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_adapter_statsd_tcp_rejected_total",
			Help: "TCP connections closed at once because the connection limit was reached.",
		}),
		series: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "podblocks_adapter_statsd_series",
			Help: "Series currently exposed from statsd samples.",
		}, func() float64 { _, n := r.counts(); return float64(n) }),
		families: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "podblocks_adapter_statsd_families",
			Help: "Metric families currently exposed from statsd samples.",
		}, func() float64 { n, _ := r.counts(); return float64(n) }),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.packets, m.lines, m.samples, m.lineErrors, m.tagErrors,
			m.conflicts, m.drops, m.unmapped, m.expired, m.tcpConns, m.tcpRejected, m.series, m.families} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
