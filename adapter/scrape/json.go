package scrape

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/podblocks/podblocks/internal/jsondoc"
)

// JSONConfig maps values of a JSON document to metrics. In YAML:
//
//	metrics:
//	- name: app_requests_total
//	  type: counter
//	  help: Requests served.
//	  path: '{.stats.requests}'
//	- name: app_queue
//	  type: object                # one sample per selected object
//	  path: '{.queues[*]}'
//	  labels:
//	    queue: '{.name}'          # text with {path} parts (relative to the object for type
//	                              # object, else to the document), as json_exporter writes them
//	  values:
//	    depth: '{.depth}'         # -> app_queue_depth
//	    oldest_seconds: '{.age}'  # -> app_queue_oldest_seconds
//	headers:
//	  Authorization: Bearer ...
type JSONConfig struct {
	Metrics []JSONMetric      `yaml:"metrics"`
	Headers map[string]string `yaml:"headers"`
}

// JSONMetric is one metric (or, with type object, a family of metrics) of a JSONConfig.
type JSONMetric struct {
	Name      string            `yaml:"name"`
	Help      string            `yaml:"help"`
	Type      string            `yaml:"type"` // gauge (default), counter, object
	Path      string            `yaml:"path"`
	Labels    map[string]string `yaml:"labels"`
	Values    map[string]string `yaml:"values"`
	ValueType string            `yaml:"value_type"` // for object: gauge (default) or counter

	path   Path
	labels []compiledLabel
	values []compiledValue
}

// compiledLabel is a label value: literal text with embedded {path} references, as json_exporter
// writes them ('planet-{.location}'); a value starting with '$' is one whole path.
type compiledLabel struct {
	name  string
	parts []labelPart
}

type labelPart struct {
	literal string
	path    Path
	isPath  bool
}

type compiledValue struct {
	suffix string
	path   Path
}

// ConfigError names the config field that is wrong.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return "scrape: config: " + e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ParseJSONConfig parses and validates a JSONConfig from YAML (unknown fields are errors).
func ParseJSONConfig(data []byte) (*JSONConfig, error) {
	var c JSONConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, &ConfigError{"yaml", err}
	}
	if err := c.compile(); err != nil {
		return nil, err
	}
	return &c, nil
}

// LoadJSONConfig reads a JSONConfig file.
func LoadJSONConfig(path string) (*JSONConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scrape: read config: %w", err)
	}
	return ParseJSONConfig(b)
}

// family is what every config entry of one metric name must agree on.
type family struct {
	help, kind, labels string
	entry              int
}

// claim records that entry i writes the metric name with help, kind (gauge or counter) and
// label names: a name of the adapter's own, or one an earlier entry writes with another help,
// kind or label names, is refused, since one of the two would be dropped from every scrape.
func claim(fams map[string]family, i int, field, name, help, kind, labels string) error {
	if name == DefaultUpMetric || strings.HasPrefix(name, ownPrefix) {
		return &ConfigError{field, fmt.Errorf("%q is the adapter's own metric", name)}
	}
	if f, ok := fams[name]; ok && (f.help != help || f.kind != kind || f.labels != labels) {
		return &ConfigError{field, fmt.Errorf("%q is also written by metrics[%d] with another help, type or label names", name, f.entry)}
	}
	fams[name] = family{help, kind, labels, i}
	return nil
}

func (c *JSONConfig) compile() error {
	if len(c.Metrics) == 0 {
		return &ConfigError{"metrics", errors.New("none configured")}
	}
	fams := map[string]family{}
	for i := range c.Metrics {
		m := &c.Metrics[i]
		f := fmt.Sprintf("metrics[%d]", i)
		if !metricNameRE.MatchString(m.Name) {
			return &ConfigError{f + ".name", fmt.Errorf("%q is not a metric name", m.Name)}
		}
		kind := cmp.Or(m.Type, "gauge")
		labelNames := strings.Join(sortedKeys(m.Labels), ",")
		if m.Type == "object" {
			kind = cmp.Or(m.ValueType, "gauge")
		} else if err := claim(fams, i, f+".name", m.Name, m.Help, kind, labelNames); err != nil {
			return err
		}
		if strings.TrimSpace(m.Path) == "" && m.Type != "object" {
			return &ConfigError{f + ".path", errors.New("missing (\"$\" selects the whole document)")}
		}
		p, err := CompilePath(m.Path)
		if err != nil {
			return &ConfigError{f + ".path", err}
		}
		m.path = p
		switch m.Type {
		case "", "gauge", "counter":
			if len(m.Values) > 0 {
				return &ConfigError{f + ".values", errors.New("only for type object")}
			}
		case "object":
			if len(m.Values) == 0 {
				return &ConfigError{f + ".values", errors.New("type object needs values")}
			}
			switch m.ValueType {
			case "", "gauge", "counter":
			default:
				return &ConfigError{f + ".value_type", fmt.Errorf("unknown %q", m.ValueType)}
			}
		default:
			return &ConfigError{f + ".type", fmt.Errorf("unknown %q", m.Type)}
		}
		m.labels = nil
		for _, k := range sortedKeys(m.Labels) {
			v := m.Labels[k]
			if !labelNameRE.MatchString(k) || strings.HasPrefix(k, "__") {
				return &ConfigError{f + ".labels." + k, errors.New("invalid label name")}
			}
			parts, err := compileLabel(v)
			if err != nil {
				return &ConfigError{f + ".labels." + k, err}
			}
			m.labels = append(m.labels, compiledLabel{name: k, parts: parts})
		}
		m.values = nil
		for _, k := range sortedKeys(m.Values) {
			p, err := CompilePath(m.Values[k])
			if err != nil {
				return &ConfigError{f + ".values." + k, err}
			}
			if !metricNameRE.MatchString(m.Name + "_" + k) {
				return &ConfigError{f + ".values." + k, errors.New("invalid metric name suffix")}
			}
			if err := claim(fams, i, f+".values."+k, m.Name+"_"+k, m.Help, kind, labelNames); err != nil {
				return err
			}
			m.values = append(m.values, compiledValue{k, p})
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Extract maps a decoded document to samples. Values that are not numbers are read as numbers
// where they can be (numeric strings; true is 1, false 0); others are skipped.
func (c *JSONConfig) Extract(doc any) []Sample {
	var out []Sample
	for i := range c.Metrics {
		m := &c.Metrics[i]
		for _, v := range m.path.Eval(doc) {
			if m.Type == "object" {
				labels := m.labelValues(v)
				t := prometheus.GaugeValue
				if m.ValueType == "counter" {
					t = prometheus.CounterValue
				}
				for _, cv := range m.values {
					for _, x := range cv.path.Eval(v) {
						if f, ok := number(x); ok {
							out = append(out, Sample{Name: m.Name + "_" + cv.suffix, Help: m.Help, Type: t, Labels: labels, Value: f})
						}
					}
				}
				continue
			}
			if f, ok := number(v); ok {
				labels := m.labelValues(doc)
				t := prometheus.GaugeValue
				if m.Type == "counter" {
					t = prometheus.CounterValue
				}
				out = append(out, Sample{Name: m.Name, Help: m.Help, Type: t, Labels: labels, Value: f})
			}
		}
	}
	return out
}

func compileLabel(v string) ([]labelPart, error) {
	if strings.HasPrefix(v, "$") {
		p, err := CompilePath(v)
		return []labelPart{{path: p, isPath: true}}, err
	}
	var parts []labelPart
	for v != "" {
		open := strings.IndexByte(v, '{')
		if open < 0 {
			parts = append(parts, labelPart{literal: v})
			break
		}
		end := closeBrace(v[open:])
		if end < 0 {
			return nil, fmt.Errorf("%w %q: unbalanced braces", ErrBadPath, v)
		}
		if open > 0 {
			parts = append(parts, labelPart{literal: v[:open]})
		}
		p, err := CompilePath(v[open : open+end+1])
		if err != nil {
			return nil, err
		}
		parts = append(parts, labelPart{path: p, isPath: true})
		v = v[open+end+1:]
	}
	return parts, nil
}

func (m *JSONMetric) labelValues(v any) []Label {
	var out []Label
	for _, l := range m.labels {
		var b strings.Builder
		for _, p := range l.parts {
			if !p.isPath {
				b.WriteString(p.literal)
			} else if r := p.path.Eval(v); len(r) > 0 {
				b.WriteString(scalarString(r[0]))
			}
		}
		out = append(out, Label{l.name, b.String()})
	}
	return out
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil && !math.IsNaN(f)
	}
	return 0, false
}

// JSONProbe fetches a JSON document over HTTP(S) from the target URL and extracts samples with
// its config. Served by an Exporter's ProbeHandler, it follows a redirect only to a URL that
// the Exporter's WithAllowTargets rule allows.
type JSONProbe struct {
	Config *JSONConfig
	// Client fetches documents; nil means a client with a 10s timeout.
	Client *http.Client
	// MaxBytes bounds a document (0 means 10 MiB).
	MaxBytes int64
}

// Probe implements Probe.
func (p *JSONProbe) Probe(ctx context.Context, target string) ([]Sample, error) {
	if p.Config == nil {
		return nil, errors.New("scrape: JSONProbe without config")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape: target %q: %w", redactTarget(target), targetURLError(target, err))
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, fmt.Errorf("scrape: target %q: scheme must be http or https", redactTarget(target))
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range p.Config.Headers {
		req.Header.Set(k, v)
	}
	c := p.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	if allow, ok := ctx.Value(allowKey{}).(func(string) bool); ok {
		c = checkRedirects(c, allow)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape: fetch: %w", fetchError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("scrape: fetch %s: status %s", redactTarget(target), resp.Status)
	}
	limit := p.MaxBytes
	if limit <= 0 {
		limit = 10 << 20
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("scrape: read body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("scrape: document larger than %d bytes", limit)
	}
	doc, err := DecodeJSON(body)
	if err != nil {
		return nil, err
	}
	return p.Config.Extract(doc), nil
}

// allowKey is the context key under which ProbeHandler passes WithAllowTargets' rule to probes.
type allowKey struct{}

// checkRedirects returns a copy of c that refuses a redirect to a URL allow refuses (before
// asking c's own CheckRedirect, or applying net/http's default limit of 10 redirects).
func checkRedirects(c *http.Client, allow func(string) bool) *http.Client {
	cc := *c
	next := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !allow(req.URL.String()) {
			return fmt.Errorf("%w: redirect to %s", ErrForbidden, redactTarget(req.URL.String()))
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cc
}

// DecodeJSON decodes one JSON document with numbers kept exact (json.Number). Anything but white
// space after the document is an error.
func DecodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("scrape: decode json: %w", err)
	}
	if err := jsondoc.End(dec); err != nil {
		return nil, fmt.Errorf("scrape: decode json: %w", err)
	}
	return doc, nil
}
