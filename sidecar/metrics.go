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

// newResultCounter makes podblocks_sidecar_<what>_total, by result. The Help text names every
// result and what it means, and each result's series exists at 0 from the start, so that an alert
// on its rate has a series to compute it from.
func newResultCounter(r prometheus.Registerer, what string, results ...result) *prometheus.CounterVec {
	help := make([]string, len(results))
	for i, res := range results {
		help[i] = res.name + " (" + res.meaning + ")"
	}
	c := register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podblocks_sidecar_" + what + "_total",
		Help: "Completed " + what + ", by result: " + strings.Join(help, ", ") + ".",
	}, []string{"result"}))
	for _, res := range results {
		c.WithLabelValues(res.name)
	}
	return c
}

// newActionMetrics makes the counters of an action that is retried: its result counter
// (newResultCounter) and podblocks_sidecar_<what>_retries_total. An action that is never retried
// takes newResultCounter alone: a counter that nothing counts is not registered.
func newActionMetrics(r prometheus.Registerer, what string, results ...result) *actionMetrics {
	return &actionMetrics{
		runs: newResultCounter(r, what, results...),
		tries: register(r, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podblocks_sidecar_" + what + "_retries_total", Help: "Retries of " + what + " hooks or actions.",
		})),
	}
}

// newRestartsCounter makes podblocks_sidecar_supervisor_restarts_total, by child (the names of a
// Supervisor's children), each child's series at 0 from the start.
func newRestartsCounter(r prometheus.Registerer, children []string) *prometheus.CounterVec {
	c := register(r, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podblocks_sidecar_supervisor_restarts_total",
		Help: "Children started again after they exited, by child (Child.Name, default its Path).",
	}, []string{"child"}))
	for _, name := range children {
		c.WithLabelValues(name)
	}
	return c
}
