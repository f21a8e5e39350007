package election

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	isLeader       prometheus.Gauge
	token          prometheus.Gauge
	terms          prometheus.Counter
	stepdowns      *prometheus.CounterVec
	campaignErrors prometheus.Counter
	leaderChanges  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podblocks_election_is_leader",
			Help: "1 while this candidate holds a term, else 0.",
		}),
		token: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podblocks_election_token",
			Help: "Fencing token of the current leader as this candidate sees it (0: no leader).",
		}),
		terms: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_election_terms_total",
			Help: "Terms this candidate has won.",
		}),
		stepdowns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_election_stepdowns_total",
			Help: "Terms this candidate ended, by reason (shutdown, resign, lost, renewal_timeout, returned).",
		}, []string{"reason"}),
		campaignErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_election_campaign_errors_total",
			Help: "Campaign and observe calls that failed and were retried.",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_election_leader_changes_total",
			Help: "Changes of the observed leader, including to and from no leader.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.isLeader, m.token, m.terms, m.stepdowns, m.campaignErrors, m.leaderChanges} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
