// Package adaptertest has helpers for testing adapters and code that feeds them: flattening
// Prometheus metrics into comparable maps, a statsd client for real sockets, and conformance
// suites for the adapter package's interfaces.
package adaptertest

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Values flattens gathered metric families into a map from sample name with its labels, as the
// text exposition spells it (`name{a="1",b="2"}`, labels sorted), to value. Histograms give
// name_bucket{le=...}, name_sum and name_count; summaries give name{quantile=...}, name_sum and
// name_count.
func Values(g prometheus.Gatherer) (map[string]float64, error) {
	mfs, err := g.Gather()
	out := flatten(mfs)
	return out, err
}

// Scrape fetches a Prometheus text exposition from url and flattens it like Values.
func Scrape(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("adaptertest: scrape %s: %s: %s", url, resp.Status, b)
	}
	return ParseText(resp.Body)
}

// ParseText parses a Prometheus text exposition and flattens it like Values.
func ParseText(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("adaptertest: parse exposition: %w", err)
	}
	mfs := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		mfs = append(mfs, f)
	}
	return flatten(mfs), nil
}

func flatten(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			labels := m.GetLabel()
			switch {
			case m.Counter != nil:
				out[Key(name, labels)] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[Key(name, labels)] = m.Gauge.GetValue()
			case m.Untyped != nil:
				out[Key(name, labels)] = m.Untyped.GetValue()
			case m.Histogram != nil:
				h := m.Histogram
				out[Key(name+"_sum", labels)] = h.GetSampleSum()
				out[Key(name+"_count", labels)] = float64(h.GetSampleCount())
				for _, b := range h.GetBucket() {
					out[Key(name+"_bucket", labels, "le", formatFloat(b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
				out[Key(name+"_bucket", labels, "le", "+Inf")] = float64(h.GetSampleCount())
			case m.Summary != nil:
				s := m.Summary
				out[Key(name+"_sum", labels)] = s.GetSampleSum()
				out[Key(name+"_count", labels)] = float64(s.GetSampleCount())
				for _, q := range s.GetQuantile() {
					out[Key(name, labels, "quantile", formatFloat(q.GetQuantile()))] = q.GetValue()
				}
			}
		}
	}
	return out
}

func formatFloat(f float64) string {
	if math.IsInf(f, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Key spells a sample name with labels as Values does; extra is name, value pairs to add.
func Key(name string, labels []*dto.LabelPair, extra ...string) string {
	var pairs [][2]string
	for _, l := range labels {
		pairs = append(pairs, [2]string{l.GetName(), l.GetValue()})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		pairs = append(pairs, [2]string{extra[i], extra[i+1]})
	}
	if len(pairs) == 0 {
		return name
	}
	slices.SortFunc(pairs, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", p[0], p[1])
	}
	b.WriteByte('}')
	return b.String()
}

// Sum adds up every value whose key starts with prefix (a metric name, or a name and "{" to
// skip longer names).
func Sum(values map[string]float64, prefix string) float64 {
	var s float64
	for k, v := range values {
		if strings.HasPrefix(k, prefix) {
			s += v
		}
	}
	return s
}

// Eventually polls cond every 10ms until it returns true or timeout passes, then fails t with
// msg. Use generous timeouts: machines are shared.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StatsD is a statsd client over a real socket ("udp", "tcp" or "unixgram").
type StatsD struct {
	network string
	conn    net.Conn
}

// DialStatsD connects to a statsd listener.
func DialStatsD(network, addr string) (*StatsD, error) {
	c, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	return &StatsD{network: network, conn: c}, nil
}

// Send sends lines: as one datagram for udp and unixgram, newline-terminated for tcp.
func (s *StatsD) Send(lines ...string) error {
	payload := strings.Join(lines, "\n")
	if s.network == "tcp" {
		payload += "\n"
	}
	s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := io.WriteString(s.conn, payload)
	return err
}

// Close closes the connection.
func (s *StatsD) Close() error { return s.conn.Close() }
