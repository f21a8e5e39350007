package scrape

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Sample is one value a probe read from a target.
type Sample struct {
	Name   string
	Help   string
	Type   prometheus.ValueType // prometheus.GaugeValue or prometheus.CounterValue
	Labels []Label
	Value  float64
}

// Label is one label of a sample.
type Label struct {
	Name, Value string
}

// Probe reads samples from one target (a URL, an address). Implementations must honour ctx and be
// safe for concurrent use.
type Probe interface {
	Probe(ctx context.Context, target string) ([]Sample, error)
}

// Errors.
var (
	ErrNoTarget  = errors.New("scrape: no target")
	ErrForbidden = errors.New("scrape: target not allowed")
)

// Exporter exposes a Probe's samples as Prometheus metrics: Handler probes the default target on
// every scrape, ProbeHandler probes ?target= (multi-target, like json_exporter and
// blackbox_exporter). Each scrape also reports probe_success (1 when the probe returned no
// error; named with WithUpMetric) and podblocks_adapter_scrape_duration_seconds.
// Samples that cannot be exposed are dropped (see Clean) and counted in
// podblocks_adapter_scrape_dropped_samples_total{reason}.
// It holds no goroutines and needs no Run.
type Exporter struct {
	probe   Probe
	o       options
	probes  *prometheus.CounterVec
	dropped *prometheus.CounterVec
}

// Option configures an Exporter.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	logger     *zap.Logger
	registerer prometheus.Registerer
	target     string
	timeout    time.Duration
	allow      func(string) bool
	up         string
}

// WithLogger sets the logger (default zap.NewNop()); failed probes are logged at debug. A
// target's password (or a user name without password) is shown as "xxxxx" there, in errors and
// in answers.
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithRegisterer registers podblocks_adapter_scrape_probes_total{result} and
// podblocks_adapter_scrape_dropped_samples_total{reason} with r (nil: not registered). The
// samples themselves are served per scrape by Handler and ProbeHandler. The reasons a sample is
// dropped: "invalid" (a metric or label name that is not valid, a label name repeated or
// starting with "__"), "conflict" (a name already used in the scrape with another type or other
// label names), "duplicate" (a series already in the scrape: the first wins) and "reserved"
// (the name of the up metric or of the adapter's own metrics).
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.registerer = r })
}

// WithTarget sets the target Handler probes ("" means Handler answers 404 with a reason).
func WithTarget(t string) Option { return optionFunc(func(o *options) { o.target = t }) }

// WithTimeout bounds one probe (default 10s). When the scrape has an
// X-Prometheus-Scrape-Timeout-Seconds header, the probe gets that timeout less a margin of
// ScrapeTimeoutOffset (but at least half of it) if that is shorter, so that its answer, even a
// failed one, reaches Prometheus before Prometheus gives up, as with blackbox_exporter's
// --timeout-offset: with the defaults (a 10s scrape timeout) a probe gets 9.5s. A header that
// is not a number of at least 1ms is ignored.
func WithTimeout(d time.Duration) Option { return optionFunc(func(o *options) { o.timeout = d }) }

// WithAllowTargets restricts ProbeHandler's ?target= to targets for which allow returns true
// (default: all). Use it when the probe endpoint is reachable by untrusted clients (SSRF). Under
// ProbeHandler, a JSONProbe also asks allow about every redirect it would follow (its URL), and
// fails the probe on the first one allow refuses, so that an allowed target cannot redirect the
// probe elsewhere; its Client's own CheckRedirect, if any, is asked too. Handler's target (see
// WithTarget) is the operator's and is not checked, nor are its redirects.
func WithAllowTargets(allow func(target string) bool) Option {
	return optionFunc(func(o *options) { o.allow = allow })
}

// DefaultUpMetric is the default name of the per-scrape success gauge.
const DefaultUpMetric = "probe_success"

// ownPrefix is the prefix of the adapter's own metrics (podblocks_adapter_scrape_duration_seconds).
const ownPrefix = "podblocks_adapter_scrape_"

// WithUpMetric names the per-scrape success gauge (default DefaultUpMetric). A probe's sample of
// that name, or of the adapter's own metrics, is dropped.
func WithUpMetric(name string) Option { return optionFunc(func(o *options) { o.up = name }) }

// New returns an Exporter for probe.
func New(probe Probe, opts ...Option) (*Exporter, error) {
	if probe == nil {
		return nil, errors.New("scrape: nil probe")
	}
	o := options{logger: zap.NewNop(), timeout: 10 * time.Second, allow: func(string) bool { return true }, up: DefaultUpMetric}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.timeout <= 0 {
		return nil, errors.New("scrape: timeout must be positive")
	}
	if !metricNameRE.MatchString(o.up) {
		return nil, fmt.Errorf("scrape: up metric name %q is invalid", o.up)
	}
	e := &Exporter{probe: probe, o: o, probes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podblocks_adapter_scrape_probes_total",
		Help: "Probes run, by result (success, failure).",
	}, []string{"result"}), dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podblocks_adapter_scrape_dropped_samples_total",
		Help: "Samples of probes left out of the scrape, by reason (invalid, conflict, duplicate, reserved).",
	}, []string{"reason"})}
	if o.registerer != nil {
		for _, c := range []prometheus.Collector{e.probes, e.dropped} {
			if err := o.registerer.Register(c); err != nil {
				return nil, fmt.Errorf("scrape: register metrics: %w", err)
			}
		}
	}
	return e, nil
}

// Handler serves the default target's metrics.
func (e *Exporter) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.o.target == "" {
			http.Error(w, ErrNoTarget.Error(), http.StatusNotFound)
			return
		}
		e.serve(w, r, e.o.target)
	})
}

// ProbeHandler serves /probe?target=T: the metrics of T.
func (e *Exporter) ProbeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := r.URL.Query().Get("target")
		switch {
		case t == "":
			http.Error(w, "scrape: missing ?target= parameter", http.StatusBadRequest)
			return
		case !e.o.allow(t):
			http.Error(w, ErrForbidden.Error()+": "+redactTarget(t), http.StatusForbidden)
			return
		}
		e.serve(w, r.WithContext(context.WithValue(r.Context(), allowKey{}, e.o.allow)), t)
	})
}

func (e *Exporter) serve(w http.ResponseWriter, r *http.Request, target string) {
	timeout := scrapeTimeout(e.o.timeout, r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"))
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{e: e, ctx: ctx, target: target})
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(w, r)
}

// ScrapeTimeoutOffset is what a probe's timeout leaves of the scrape's
// X-Prometheus-Scrape-Timeout-Seconds for the answer to reach Prometheus (blackbox_exporter's
// default --timeout-offset).
const ScrapeTimeoutOffset = 500 * time.Millisecond

// scrapeTimeout is the timeout of a probe with configured timeout, for a scrape whose
// X-Prometheus-Scrape-Timeout-Seconds header is h (may be "").
func scrapeTimeout(configured time.Duration, h string) time.Duration {
	s, err := strconv.ParseFloat(strings.TrimSpace(h), 64)
	switch {
	case err != nil || !(s >= 0.001): // also NaN, and what would leave a deadline already passed
		return configured
	case s >= (configured + ScrapeTimeoutOffset).Seconds(): // also 1e300 and +Inf, before converting
		return configured
	}
	d := time.Duration(s * float64(time.Second))
	return min(configured, max(d-ScrapeTimeoutOffset, d/2))
}

// Samples runs the probe against target and returns its samples cleaned up as Clean does,
// counting what is dropped.
func (e *Exporter) Samples(ctx context.Context, target string) ([]Sample, error) {
	s, err := e.probe.Probe(ctx, target)
	if err != nil {
		e.probes.WithLabelValues("failure").Inc()
	} else {
		e.probes.WithLabelValues("success").Inc()
	}
	return clean(s, e.drop), err
}

// drop counts and logs (at debug) a sample left out of a scrape.
func (e *Exporter) drop(reason string, s Sample) {
	e.dropped.WithLabelValues(reason).Inc()
	if ce := e.o.logger.Check(zap.DebugLevel, "sample dropped"); ce != nil {
		ce.Write(zap.String("reason", reason), zap.String("name", s.Name), zap.Int("labels", len(s.Labels)))
	}
}

// Clean drops samples that could not be exposed: invalid metric or label names, a label name
// repeated or starting with "__", a name already used with another type or label names, and
// repeated series (the first wins). Help and label values that are not valid UTF-8 are repaired
// (each invalid byte becomes U+FFFD) rather than dropped.
func Clean(samples []Sample) []Sample { return clean(samples, func(string, Sample) {}) }

// clean is Clean, telling drop about each sample it leaves out and why.
func clean(samples []Sample, drop func(reason string, s Sample)) []Sample {
	type fam struct {
		t      prometheus.ValueType
		labels string
	}
	fams := map[string]fam{}
	seen := map[string]bool{}
	out := samples[:0:0]
	for _, s := range samples {
		if !metricNameRE.MatchString(s.Name) {
			drop("invalid", s)
			continue
		}
		ok := true
		names := make([]string, len(s.Labels))
		for i, l := range s.Labels {
			if !labelNameRE.MatchString(l.Name) || strings.HasPrefix(l.Name, "__") {
				ok = false
			}
			names[i] = l.Name
		}
		if !ok || len(slices.Compact(slices.Sorted(slices.Values(names)))) != len(names) {
			drop("invalid", s)
			continue
		}
		slices.Sort(names)
		ln := strings.Join(names, ",")
		if f, exists := fams[s.Name]; exists && (f.t != s.Type || f.labels != ln) {
			drop("conflict", s)
			continue
		}
		fams[s.Name] = fam{s.Type, ln}
		s = validText(s)
		key := s.Name + "\xff" + seriesKey(s.Labels)
		if seen[key] {
			drop("duplicate", s)
			continue
		}
		seen[key] = true
		out = append(out, s)
	}
	return out
}

// validText returns s with its help and label values made valid UTF-8 (the exposition formats
// need it), copying the labels rather than writing to the probe's slice.
func validText(s Sample) Sample {
	s.Help = strings.ToValidUTF8(s.Help, "\uFFFD")
	cloned := false
	for i, l := range s.Labels {
		if !utf8.ValidString(l.Value) {
			if !cloned {
				s.Labels, cloned = slices.Clone(s.Labels), true
			}
			s.Labels[i].Value = strings.ToValidUTF8(l.Value, "\uFFFD")
		}
	}
	return s
}

func seriesKey(ls []Label) string {
	c := slices.Clone(ls)
	slices.SortFunc(c, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	for _, l := range c {
		b.WriteString(l.Name + "\xfe" + l.Value + "\xff")
	}
	return b.String()
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

type collector struct {
	e      *Exporter
	ctx    context.Context
	target string
}

func (c *collector) Describe(chan<- *prometheus.Desc) {} // unchecked: the samples vary by target

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	samples, err := c.e.Samples(c.ctx, c.target)
	up := 1.0
	if err != nil {
		up = 0
		c.e.o.logger.Debug("probe failed", zap.String("target", redactTarget(c.target)), zap.Error(err))
	}
	for _, s := range samples {
		if s.Name == c.e.o.up || strings.HasPrefix(s.Name, ownPrefix) {
			c.e.drop("reserved", s) // would replace the adapter's own (refused in a JSONConfig already)
			continue
		}
		names := make([]string, len(s.Labels))
		values := make([]string, len(s.Labels))
		for i, l := range s.Labels {
			names[i], values[i] = l.Name, l.Value
		}
		help := s.Help
		if help == "" {
			help = "Scraped by the podblocks scrape adapter."
		}
		m, err := prometheus.NewConstMetric(prometheus.NewDesc(s.Name, help, names, nil), s.Type, s.Value, values...)
		if err != nil { // Clean lets through only what can be exposed
			c.e.drop("invalid", s)
			continue
		}
		ch <- m
	}
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(c.e.o.up, "Whether the last probe of the target succeeded.", nil, nil),
		prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("podblocks_adapter_scrape_duration_seconds",
		"How long the probe took.", nil, nil), prometheus.GaugeValue, time.Since(start).Seconds())
}
