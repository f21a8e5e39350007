package sidecar

import (
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// register registers c with r (nil: not registered). When an identical collector is already
// registered (two Tailers on one registry), the existing one is returned so both count together.
func register[C prometheus.Collector](r prometheus.Registerer, c C) C {
	if r == nil {
		return c
	}
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

type tailerMetrics struct {
	lines     prometheus.Counter
	bytes     prometheus.Counter
	skipped   *prometheus.CounterVec
	rotations *prometheus.CounterVec
	commits   prometheus.Counter
	ckptErrs  prometheus.Counter
	sinkErrs  prometheus.Counter
	files     prometheus.Gauge
}

func newTailerMetrics(r prometheus.Registerer) *tailerMetrics {
	return &tailerMetrics{
		lines: register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_sidecar_tailer_lines_total", Help: "Lines (records) delivered to the sink.",
		})),
		bytes: register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_sidecar_tailer_read_bytes_total", Help: "Bytes read from tailed files.",
		})),
		skipped: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_sidecar_tailer_skipped_total",
			Help: "Lines, files, or runs of NUL bytes at a line's start skipped, by reason (too_long, binary, unreadable, nul).",
		}, []string{"reason"})),
		rotations: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_sidecar_tailer_rotations_total",
			Help: "Rotations seen, by kind (rename, truncate, replaced, copy).",
		}, []string{"kind"})),
		commits: register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_sidecar_tailer_checkpoint_commits_total", Help: "Checkpoint commits.",
		})),
		ckptErrs: register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_sidecar_tailer_checkpoint_errors_total",
			Help: "Checkpoint commits that could not write the checkpoint file (a restart ships again what was delivered since the last commit).",
		})),
		sinkErrs: register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_sidecar_tailer_sink_errors_total", Help: "Sink writes that failed and were retried.",
		})),
		files: register(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podblocks_sidecar_tailer_files", Help: "Files tracked by the tailer.",
		})),
	}
}

type actionMetrics struct {
	runs  *prometheus.CounterVec
	tries prometheus.Counter
}

// result is a value of an action's result label and what it means.
type result struct{ name, meaning string }

// newActionMetrics makes podblocks_sidecar_<what>_total, by result, and its retries counter. The
// Help text names every result and what it means, and each result's series exists at 0 from the
// start, so that an alert on its rate has a series to compute it from.
func newActionMetrics(r prometheus.Registerer, what string, results ...result) *actionMetrics {
	help := make([]string, len(results))
	for i, res := range results {
		help[i] = res.name + " (" + res.meaning + ")"
	}
	m := &actionMetrics{
		runs: register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podblocks_sidecar_" + what + "_total",
			Help: "Completed " + what + ", by result: " + strings.Join(help, ", ") + ".",
		}, []string{"result"})),
		tries: register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_sidecar_" + what + "_retries_total", Help: "Retries of " + what + " hooks or actions.",
		})),
	}
	for _, res := range results {
		m.runs.WithLabelValues(res.name)
	}
	return m
}
