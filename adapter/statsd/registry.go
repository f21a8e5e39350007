package statsd

import (
	"errors"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// ErrTypeConflict is a sample whose Prometheus name is already taken by a metric of another type
// (or by the _sum/_count/_bucket series of a summary or histogram). The sample is counted and
// dropped; /metrics keeps serving everything else.
var ErrTypeConflict = errors.New("statsd: metric name already used by another type")

type kind uint8

const (
	kindCounter kind = iota + 1
	kindGauge
	kindHistogram
	kindSummary
	kindSet // exposed as a gauge
)

func (k kind) String() string {
	switch k {
	case kindCounter:
		return "counter"
	case kindGauge:
		return "gauge"
	case kindHistogram:
		return "histogram"
	case kindSummary:
		return "summary"
	case kindSet:
		return "set"
	}
	return "unknown"
}

// registry holds the metric families built from statsd samples. Families are created on first
// use and keep their type; a later sample of another type under the same name is a conflict.
// It is its own prometheus.Gatherer, so a conflict can never make a scrape fail.
type registry struct {
	mu       sync.RWMutex
	fams     map[string]*family
	reserved map[string]string // exposition names taken by observer families: name -> owner
	// external are exposition names served next to the registry by others (WithReservedNames),
	// which a statsd metric may not take; set before use, then only read.
	external map[string]bool
	nseries  int

	// epoch changes whenever a series is removed, so that workers drop cached pointers.
	epoch atomic.Uint64
}

type family struct {
	name, help string
	kind       kind
	series     map[string]*series
}

// series is one labelled time series. Values live in client_golang metric objects, whose updates
// are lock-free (summaries take a short lock).
type series struct {
	fam     *family
	key     string
	labels  []*dto.LabelPair
	counter prometheus.Counter
	gauge   prometheus.Gauge
	obs     prometheus.Observer
	metric  prometheus.Metric // the same object as one of the above, for Write
	set     *memberSet

	ttl      int64        // nanoseconds; 0: never expires
	lastSeen atomic.Int64 // unix nanoseconds of the last update (only kept when ttl > 0)
	// state guards expiry when ttl > 0: bit 0 is "removed", the rest counts updaters in flight
	// (in steps of 2). An updater enters only while bit 0 is clear; the sweeper removes a series
	// only by swapping 0 for 1, so no update can land on a series after it left the registry.
	state atomic.Int64
}

func newRegistry() *registry {
	return &registry{fams: map[string]*family{}, reserved: map[string]string{}, external: map[string]bool{}}
}

// spec is everything needed to create a series.
type spec struct {
	name, help string
	kind       kind
	labels     []Label // sorted by name, unique
	mapping    *Mapping
	defaults   *Defaults
	ttl        int64
}

func seriesKey(labels []Label) string {
	var b strings.Builder
	for _, l := range labels {
		b.WriteString(l.Name)
		b.WriteByte(0xfe)
		b.WriteString(l.Value)
		b.WriteByte(0xff)
	}
	return b.String()
}

// get returns the series for sp, creating it (and its family) when needed. Within an acquired
// series (ttl > 0) the caller must release it with done.
func (r *registry) get(sp *spec) (*series, error) {
	key := seriesKey(sp.labels)
	r.mu.RLock()
	if f := r.fams[sp.name]; f != nil {
		if f.kind != sp.kind {
			r.mu.RUnlock()
			return nil, ErrTypeConflict
		}
		if s := f.series[key]; s != nil {
			r.mu.RUnlock()
			return s, nil
		}
	}
	r.mu.RUnlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.fams[sp.name]
	if f == nil {
		if _, taken := r.reserved[sp.name]; taken || r.taken(sp.name) {
			return nil, ErrTypeConflict
		}
		suffixes := observerSuffixes(sp.kind)
		for _, sfx := range suffixes {
			if r.fams[sp.name+sfx] != nil || r.taken(sp.name+sfx) {
				return nil, ErrTypeConflict
			}
		}
		for _, sfx := range suffixes {
			r.reserved[sp.name+sfx] = sp.name
		}
		f = &family{name: sp.name, help: sp.help, kind: sp.kind, series: map[string]*series{}}
		r.fams[sp.name] = f
	}
	if f.kind != sp.kind {
		return nil, ErrTypeConflict
	}
	if s := f.series[key]; s != nil {
		return s, nil
	}
	s := newSeries(f, key, sp)
	f.series[key] = s
	r.nseries++
	return s, nil
}

// ownPrefix is the prefix of the adapter's own metrics, which statsd metrics may not take.
const ownPrefix = "podblocks_adapter_statsd_"

// taken reports whether an exposition name belongs to someone else: the adapter's own metrics or
// an external name.
func (r *registry) taken(name string) bool {
	return strings.HasPrefix(name, ownPrefix) || r.external[name]
}

// reserveGathered adds the exposition names of the families g gathers (with a summary's or a
// histogram's _sum, _count and _bucket) to the external names.
func (r *registry) reserveGathered(g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	for _, mf := range mfs {
		name := mf.GetName()
		r.external[name] = true
		var k kind
		switch mf.GetType() {
		case dto.MetricType_SUMMARY:
			k = kindSummary
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			k = kindHistogram
		}
		for _, sfx := range observerSuffixes(k) {
			r.external[name+sfx] = true
		}
	}
	return nil
}

func observerSuffixes(k kind) []string {
	switch k {
	case kindHistogram:
		return []string{"_sum", "_count", "_bucket"}
	case kindSummary:
		return []string{"_sum", "_count"}
	}
	return nil
}

func newSeries(f *family, key string, sp *spec) *series {
	s := &series{fam: f, key: key, ttl: sp.ttl}
	for _, l := range sp.labels {
		s.labels = append(s.labels, &dto.LabelPair{Name: &l.Name, Value: &l.Value})
	}
	switch sp.kind {
	case kindCounter:
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: f.name, Help: f.help})
		s.counter, s.metric = c, c
	case kindGauge:
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: f.name, Help: f.help})
		s.gauge, s.metric = g, g
	case kindSet:
		s.set = &memberSet{seed: maphash.MakeSeed(), m: map[uint64]struct{}{}}
	case kindHistogram:
		o := HistogramOptions{Buckets: DefaultBuckets}
		if sp.mapping != nil && sp.mapping.HistogramOptions != nil {
			o = *sp.mapping.HistogramOptions
		} else if sp.defaults != nil {
			o = sp.defaults.HistogramOptions
		}
		h := prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: f.name, Help: f.help, Buckets: o.Buckets,
			NativeHistogramBucketFactor:    o.NativeHistogramBucketFactor,
			NativeHistogramMaxBucketNumber: o.NativeHistogramMaxBuckets,
		})
		s.obs, s.metric = h, h
	case kindSummary:
		o := SummaryOptions{Quantiles: DefaultQuantiles}
		if sp.mapping != nil && sp.mapping.SummaryOptions != nil {
			o = *sp.mapping.SummaryOptions
		} else if sp.defaults != nil {
			o = sp.defaults.SummaryOptions
		}
		obj := make(map[float64]float64, len(o.Quantiles))
		for _, q := range o.Quantiles {
			obj[q.Quantile] = q.Error
		}
		sm := prometheus.NewSummary(prometheus.SummaryOpts{
			Name: f.name, Help: f.help, Objectives: obj,
			MaxAge: time.Duration(o.MaxAge), AgeBuckets: o.AgeBuckets, BufCap: o.BufCap,
		})
		s.obs, s.metric = sm, sm
	}
	return s
}

// enter marks an update in flight; false means the series was removed (look it up again).
func (s *series) enter() bool {
	for {
		st := s.state.Load()
		if st&1 != 0 {
			return false
		}
		if s.state.CompareAndSwap(st, st+2) {
			return true
		}
	}
}

func (s *series) exit() { s.state.Add(-2) }

// sweep removes series not updated for longer than their TTL.
func (r *registry) sweep(now int64) (removed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, f := range r.fams {
		for key, s := range f.series {
			if s.ttl == 0 || now-s.lastSeen.Load() <= s.ttl {
				continue
			}
			if !s.state.CompareAndSwap(0, 1) {
				continue // an update is in flight: it is alive
			}
			if now-s.lastSeen.Load() <= s.ttl {
				s.state.Store(0)
				continue
			}
			delete(f.series, key)
			r.nseries--
			removed++
		}
		if len(f.series) == 0 {
			delete(r.fams, name)
			for _, sfx := range observerSuffixes(f.kind) {
				delete(r.reserved, name+sfx)
			}
		}
	}
	if removed > 0 {
		r.epoch.Add(1)
	}
	return removed
}

// Gather implements prometheus.Gatherer. It never fails: the registry refuses, when a sample
// arrives, every name or label that would make the exposition invalid.
func (r *registry) Gather() ([]*dto.MetricFamily, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.fams))
	for n := range r.fams {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]*dto.MetricFamily, 0, len(names))
	for _, n := range names {
		f := r.fams[n]
		mf := &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: dtoType(f.kind)}
		keys := make([]string, 0, len(f.series))
		for k := range f.series {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s := f.series[k]
			m := &dto.Metric{}
			if s.set != nil {
				v := float64(s.set.len())
				m.Gauge = &dto.Gauge{Value: &v}
			} else if err := s.metric.Write(m); err != nil {
				continue
			}
			m.Label = s.labels
			mf.Metric = append(mf.Metric, m)
		}
		out = append(out, mf)
	}
	return out, nil
}

func dtoType(k kind) *dto.MetricType {
	t := dto.MetricType_GAUGE
	switch k {
	case kindCounter:
		t = dto.MetricType_COUNTER
	case kindHistogram:
		t = dto.MetricType_HISTOGRAM
	case kindSummary:
		t = dto.MetricType_SUMMARY
	}
	return &t
}

func (r *registry) counts() (families, nseries int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.fams), r.nseries
}

// memberSet counts the distinct members of a statsd set since the series was created, up to
// maxSetMembers (beyond that the count stays and new members are not remembered).
type memberSet struct {
	mu   sync.Mutex
	seed maphash.Seed
	m    map[uint64]struct{}
}

const maxSetMembers = 1 << 16

func (s *memberSet) add(member []byte) {
	h := maphash.Bytes(s.seed, member)
	s.mu.Lock()
	if len(s.m) < maxSetMembers {
		s.m[h] = struct{}{}
	}
	s.mu.Unlock()
}

func (s *memberSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
