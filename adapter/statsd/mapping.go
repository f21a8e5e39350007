package statsd

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MetricType is a mapping's match_metric_type: which statsd types a mapping applies to.
type MetricType string

// The match_metric_type values of statsd_exporter's mapping config.
const (
	MetricTypeCounter  MetricType = "counter"  // c
	MetricTypeGauge    MetricType = "gauge"    // g, s
	MetricTypeObserver MetricType = "observer" // ms, h, d
)

// ObserverType is how timers, histograms and distributions are exposed.
type ObserverType string

// Observer types; "" means summary, as in statsd_exporter.
const (
	ObserverSummary   ObserverType = "summary"
	ObserverHistogram ObserverType = "histogram"
)

// MappingConfig is statsd_exporter's mapping configuration (the --statsd.mapping-config YAML), read
// as-is: unknown fields are errors, as they are there. Build one with ParseMappingConfig or
// LoadMappingConfig; the zero value maps nothing.
type MappingConfig struct {
	Defaults Defaults  `yaml:"defaults"`
	Mappings []Mapping `yaml:"mappings"`

	globs     []*Mapping // in file order
	regexes   []*Mapping // in file order
	hasGlobs  bool
	unordered bool
}

// Defaults are the mapping config's "defaults" section.
type Defaults struct {
	ObserverType        ObserverType     `yaml:"observer_type"`
	MatchType           string           `yaml:"match_type"`
	GlobDisableOrdering bool             `yaml:"glob_disable_ordering"`
	TTL                 Duration         `yaml:"ttl"`
	SummaryOptions      SummaryOptions   `yaml:"summary_options"`
	HistogramOptions    HistogramOptions `yaml:"histogram_options"`
}

// Mapping is one entry of the config's "mappings" list.
type Mapping struct {
	Match            string            `yaml:"match"`
	Name             string            `yaml:"name"`
	Labels           map[string]string `yaml:"labels"`
	HonorLabels      bool              `yaml:"honor_labels"`
	ObserverType     ObserverType      `yaml:"observer_type"`
	MatchType        string            `yaml:"match_type"`
	Help             string            `yaml:"help"`
	Action           string            `yaml:"action"`
	MatchMetricType  MetricType        `yaml:"match_metric_type"`
	TTL              Duration          `yaml:"ttl"`
	SummaryOptions   *SummaryOptions   `yaml:"summary_options"`
	HistogramOptions *HistogramOptions `yaml:"histogram_options"`
	Scale            *float64          `yaml:"scale"`

	index   int
	glob    []string // components; "*" captures one component
	regex   *regexp.Regexp
	name    template
	labels  []labelTemplate // sorted by key
	dropped bool
}

// SummaryOptions configure summaries (statsd_exporter's summary_options).
type SummaryOptions struct {
	Quantiles  []Quantile `yaml:"quantiles"`
	MaxAge     Duration   `yaml:"max_age"`
	AgeBuckets uint32     `yaml:"age_buckets"`
	BufCap     uint32     `yaml:"buf_cap"`
}

// Quantile is one summary objective.
type Quantile struct {
	Quantile float64 `yaml:"quantile"`
	Error    float64 `yaml:"error"`
}

// Duration is a time.Duration in the mapping config: a Go duration string ("30s", "1m"), or a
// bare integer of nanoseconds, as statsd_exporter's YAML decoder reads one (so "ttl: 0" works).
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: duration must be a scalar", n.Line)
	}
	if i, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
		*d = Duration(i)
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// HistogramOptions configure histograms (statsd_exporter's histogram_options).
type HistogramOptions struct {
	Buckets                     []float64 `yaml:"buckets"`
	NativeHistogramBucketFactor float64   `yaml:"native_histogram_bucket_factor"`
	NativeHistogramMaxBuckets   uint32    `yaml:"native_histogram_max_buckets"`
}

// DefaultBuckets are the histogram buckets when the config names none (Prometheus' defaults).
var DefaultBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// DefaultQuantiles are the summary objectives when the config names none (statsd_exporter's).
var DefaultQuantiles = []Quantile{{0.5, 0.05}, {0.9, 0.01}, {0.99, 0.001}}

// ConfigError is a mapping config that cannot be used; Field names the offending field.
type ConfigError struct {
	Mapping int    // index in mappings, or -1 for the file or defaults
	Field   string // e.g. "match", "name", "labels.foo"
	Err     error
}

func (e *ConfigError) Error() string {
	if e.Mapping < 0 {
		return fmt.Sprintf("statsd: mapping config: %s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("statsd: mapping config: mappings[%d].%s: %v", e.Mapping, e.Field, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

var (
	globRE      = regexp.MustCompile(`^(\*|[a-zA-Z_][a-zA-Z0-9_\-]*)(\.\*|\.[a-zA-Z0-9_][a-zA-Z0-9_\-]*)*$`)
	nameRE      = regexp.MustCompile(`^([a-zA-Z_]|\$\{?\d+\}?)([a-zA-Z0-9_]|\$\{?\d+\}?)*$`)
	labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// LoadMappingConfig reads and compiles a mapping config file.
func LoadMappingConfig(path string) (*MappingConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("statsd: read mapping config: %w", err)
	}
	return ParseMappingConfig(data)
}

// ParseMappingConfig parses and compiles statsd_exporter's mapping config YAML.
func ParseMappingConfig(data []byte) (*MappingConfig, error) {
	var c MappingConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && err.Error() != "EOF" {
		return nil, &ConfigError{Mapping: -1, Field: "yaml", Err: err}
	}
	if err := c.compile(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *MappingConfig) compile() error {
	d := &c.Defaults
	switch d.ObserverType {
	case "", ObserverSummary:
		d.ObserverType = ObserverSummary
	case ObserverHistogram:
	default:
		return &ConfigError{-1, "defaults.observer_type", fmt.Errorf("unknown observer type %q", d.ObserverType)}
	}
	switch d.MatchType {
	case "", "glob":
		d.MatchType = "glob"
	case "regex":
	default:
		return &ConfigError{-1, "defaults.match_type", fmt.Errorf("unknown match type %q", d.MatchType)}
	}
	if len(d.HistogramOptions.Buckets) == 0 {
		d.HistogramOptions.Buckets = DefaultBuckets
	}
	if len(d.SummaryOptions.Quantiles) == 0 {
		d.SummaryOptions.Quantiles = DefaultQuantiles
	}
	c.unordered = d.GlobDisableOrdering
	c.globs, c.regexes = nil, nil
	for i := range c.Mappings {
		m := &c.Mappings[i]
		m.index = i
		if err := m.compile(i, d); err != nil {
			return err
		}
		if m.glob != nil {
			c.globs = append(c.globs, m)
		} else {
			c.regexes = append(c.regexes, m)
		}
	}
	c.hasGlobs = len(c.globs) > 0
	return nil
}

func (m *Mapping) compile(i int, d *Defaults) error {
	for k := range m.Labels {
		if !labelNameRE.MatchString(k) || strings.HasPrefix(k, "__") {
			return &ConfigError{i, "labels." + k, fmt.Errorf("invalid label name")}
		}
	}
	if m.Name == "" {
		return &ConfigError{i, "name", fmt.Errorf("no metric name")}
	}
	if !nameRE.MatchString(m.Name) {
		return &ConfigError{i, "name", fmt.Errorf("%q is not a metric name (or a template of one)", m.Name)}
	}
	if m.MatchType == "" {
		m.MatchType = d.MatchType
	}
	switch m.Action {
	case "", "map":
		m.Action = "map"
	case "drop":
		m.dropped = true
	default:
		return &ConfigError{i, "action", fmt.Errorf("unknown action %q", m.Action)}
	}
	switch m.MatchMetricType {
	case "", MetricTypeCounter, MetricTypeGauge, MetricTypeObserver:
	default:
		return &ConfigError{i, "match_metric_type", fmt.Errorf("unknown metric type %q", m.MatchMetricType)}
	}
	switch m.MatchType {
	case "glob":
		if !globRE.MatchString(m.Match) {
			return &ConfigError{i, "match", fmt.Errorf("invalid glob %q", m.Match)}
		}
		m.glob = strings.Split(m.Match, ".")
	case "regex":
		re, err := regexp.Compile(m.Match)
		if err != nil {
			return &ConfigError{i, "match", err}
		}
		m.regex = re
	default:
		return &ConfigError{i, "match_type", fmt.Errorf("unknown match type %q", m.MatchType)}
	}
	m.name = parseTemplate(m.Name)
	m.labels = m.labels[:0]
	for k, v := range m.Labels {
		m.labels = append(m.labels, labelTemplate{key: k, raw: v, t: parseTemplate(v)})
	}
	slices.SortFunc(m.labels, func(a, b labelTemplate) int { return strings.Compare(a.key, b.key) })
	switch m.ObserverType {
	case "":
		m.ObserverType = d.ObserverType
	case ObserverSummary, ObserverHistogram:
	default:
		return &ConfigError{i, "observer_type", fmt.Errorf("unknown observer type %q", m.ObserverType)}
	}
	switch m.ObserverType {
	case ObserverHistogram:
		if m.SummaryOptions != nil {
			return &ConfigError{i, "summary_options", fmt.Errorf("set on a histogram mapping")}
		}
		h := HistogramOptions{}
		if m.HistogramOptions != nil {
			h = *m.HistogramOptions
		}
		if len(h.Buckets) == 0 {
			h.Buckets = d.HistogramOptions.Buckets
		}
		for j, b := range h.Buckets {
			if b != b || j > 0 && !(b > h.Buckets[j-1]) {
				return &ConfigError{i, "histogram_options.buckets", fmt.Errorf("not strictly increasing")}
			}
		}
		m.HistogramOptions = &h
	case ObserverSummary:
		if m.HistogramOptions != nil {
			return &ConfigError{i, "histogram_options", fmt.Errorf("set on a summary mapping")}
		}
		s := SummaryOptions{}
		if m.SummaryOptions != nil {
			s = *m.SummaryOptions
		}
		if len(s.Quantiles) == 0 {
			s.Quantiles = d.SummaryOptions.Quantiles
		}
		if s.MaxAge == 0 {
			s.MaxAge = d.SummaryOptions.MaxAge
		}
		if s.AgeBuckets == 0 {
			s.AgeBuckets = d.SummaryOptions.AgeBuckets
		}
		if s.BufCap == 0 {
			s.BufCap = d.SummaryOptions.BufCap
		}
		for _, q := range s.Quantiles {
			if !(q.Quantile >= 0 && q.Quantile <= 1) || !(q.Error >= 0 && q.Error <= 1) {
				return &ConfigError{i, "summary_options.quantiles", fmt.Errorf("quantile %v/%v out of [0,1]", q.Quantile, q.Error)}
			}
		}
		m.SummaryOptions = &s
	}
	if m.TTL == 0 {
		m.TTL = d.TTL
	}
	if m.TTL < 0 {
		return &ConfigError{i, "ttl", fmt.Errorf("negative")}
	}
	return nil
}

// template is a name or label value with $N / ${N} references to captures ($0 is the whole name).
type template struct {
	parts []templatePart
}

type templatePart struct {
	lit     string
	capture int // -1: literal
}

type labelTemplate struct {
	key, raw string
	t        template
}

// parseTemplate splits s at capture references, spelled as statsd_exporter's glob templates spell
// them: '$', an optional '{', a run of [a-zA-Z0-9_$], an optional '}'. A run that is a number N
// refers to capture N ($0 is the whole name); any other run, or a capture that does not exist,
// expands to "".
func parseTemplate(s string) template {
	var t template
	lit := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			continue
		}
		j := i + 1
		if j < len(s) && s[j] == '{' {
			j++
		}
		k := j
		for k < len(s) && (nameByte(s[k]) || s[k] == '$') {
			k++
		}
		if k == j {
			continue
		}
		n, err := strconv.Atoi(s[j:k])
		if err != nil || n > 1<<16 {
			n = 1 << 30 // never a capture: expands to ""
		}
		if lit < i {
			t.parts = append(t.parts, templatePart{lit: s[lit:i], capture: -1})
		}
		t.parts = append(t.parts, templatePart{capture: n})
		if k < len(s) && s[k] == '}' {
			k++
		}
		lit = k
		i = k - 1
	}
	if lit < len(s) {
		t.parts = append(t.parts, templatePart{lit: s[lit:], capture: -1})
	}
	return t
}

// expand renders t; captures[0] is the whole name.
func (t template) expand(captures []string) string {
	if len(t.parts) == 1 && t.parts[0].capture < 0 {
		return t.parts[0].lit
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch {
		case p.capture < 0:
			b.WriteString(p.lit)
		case p.capture < len(captures):
			b.WriteString(captures[p.capture])
		}
	}
	return b.String()
}

// Match is the outcome of mapping one statsd metric.
type Match struct {
	Mapping *Mapping // nil when no mapping matched
	Name    string   // the Prometheus name (escaped); for unmatched metrics the escaped statsd name
	Labels  []Label  // the mapping's labels, sorted by name
}

// Label is one Prometheus label.
type Label struct {
	Name, Value string
}

// Drop reports whether the matched mapping's action is drop.
func (m Match) Drop() bool { return m.Mapping != nil && m.Mapping.dropped }

// Map maps a statsd metric name of type t as statsd_exporter does: the first glob mapping in file
// order that matches (or, with glob_disable_ordering, the most specific one), else the first
// regex mapping that matches, else no mapping. A nil config maps nothing.
func (c *MappingConfig) Map(name string, t Type) Match {
	if c != nil {
		mt := t.matchType()
		if c.hasGlobs {
			if m, caps := c.matchGlob(name, mt); m != nil {
				return m.result(name, caps)
			}
		}
		for _, m := range c.regexes {
			if m.MatchMetricType != "" && m.MatchMetricType != mt {
				continue
			}
			idx := m.regex.FindStringSubmatchIndex(name)
			if idx == nil {
				continue
			}
			out := Match{Mapping: m, Name: EscapeName(string(m.regex.ExpandString(nil, m.Name, name, idx)))}
			for _, l := range m.labels {
				out.Labels = append(out.Labels, Label{l.key, string(m.regex.ExpandString(nil, l.raw, name, idx))})
			}
			return out
		}
	}
	return Match{Name: EscapeName(name)}
}

func (m *Mapping) result(name string, caps []string) Match {
	out := Match{Mapping: m, Name: EscapeName(m.name.expand(caps))}
	if len(m.labels) > 0 {
		out.Labels = make([]Label, len(m.labels))
		for i, l := range m.labels {
			out.Labels[i] = Label{l.key, l.t.expand(caps)}
		}
	}
	return out
}

// matchGlob returns the winning glob mapping and its captures (captures[0] is name).
func (c *MappingConfig) matchGlob(name string, mt MetricType) (*Mapping, []string) {
	n := strings.Count(name, ".") + 1
	var best *Mapping
	for _, m := range c.globs {
		if len(m.glob) != n || (m.MatchMetricType != "" && m.MatchMetricType != mt) {
			continue
		}
		if !globMatches(m.glob, name) {
			continue
		}
		if !c.unordered {
			best = m
			break
		}
		if best == nil || moreSpecific(m.glob, best.glob) {
			best = m
		}
	}
	if best == nil {
		return nil, nil
	}
	caps := []string{name}
	rest := name
	for _, g := range best.glob {
		comp, more, _ := strings.Cut(rest, ".")
		rest = more
		if g == "*" {
			caps = append(caps, comp)
		}
	}
	return best, caps
}

func globMatches(glob []string, name string) bool {
	rest := name
	for _, g := range glob {
		comp, more, _ := strings.Cut(rest, ".")
		rest = more
		if g != "*" && g != comp {
			return false
		}
	}
	return true
}

// moreSpecific reports whether a beats b: at the first component where they differ, a has a
// literal and b a wildcard.
func moreSpecific(a, b []string) bool {
	for i := range a {
		if (a[i] == "*") != (b[i] == "*") {
			return b[i] == "*"
		}
	}
	return false
}

// EscapeName turns a statsd name into a Prometheus metric or label name: every character outside
// [a-zA-Z0-9_] becomes '_' (a run of '-' after the first collapses into it), and a leading digit
// gets a '_' prefix. It does not allocate when s is already valid.
func EscapeName(s string) string {
	if s == "" {
		return ""
	}
	ok := !(s[0] >= '0' && s[0] <= '9')
	for i := 0; ok && i < len(s); i++ {
		if !nameByte(s[i]) {
			ok = false
		}
	}
	if ok {
		return s
	}
	b := make([]byte, 0, len(s)+1)
	if s[0] >= '0' && s[0] <= '9' {
		b = append(b, '_')
	}
	prevDash := false
	for _, r := range s {
		switch {
		case r < 128 && nameByte(byte(r)):
			b = append(b, byte(r))
			prevDash = false
		case r == '-' && prevDash:
		default:
			b = append(b, '_')
			prevDash = r == '-'
		}
	}
	return string(b)
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}
