package statsd

import (
	"bytes"
	"slices"
	"strings"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Reasons counted in podblocks_adapter_statsd_sample_errors_total besides the parser's.
const (
	reasonNegativeCounter = "illegal_negative_counter"
	reasonEmptyName       = "empty_metric_name"
)

var errReasons = []error{ErrMalformedLine, ErrInvalidUTF8, ErrMixedTagStyles, ErrMissingType,
	ErrMalformedValue, ErrUnknownType, ErrMalformedSection, ErrInvalidSampleRate, ErrBadAggregateType,
	ErrUnsupported}

// allReasons lists every reason label: the parser's, then the worker's.
var allReasons = func() []string {
	var r []string
	for _, e := range errReasons {
		r = append(r, Reason(e))
	}
	return append(r, reasonNegativeCounter, reasonEmptyName, "line_too_long", "other")
}()

// maxRepeat caps how often one observer sample is observed for a sample rate below 1 (1/rate
// observations), so that "@0.000001" cannot stall a reader.
const maxRepeat = 10_000

// worker is the per-goroutine state of the hot path: a parser, and a cache from a sample's
// identity (type, name, tags as sent) to its series, so a repeated line costs a parse, one map
// lookup without allocation, and an atomic update.
type worker struct {
	e     *Exporter
	p     Parser
	cfg   *MappingConfig
	epoch uint64
	cache map[string]*entry
	key   []byte
	// fast maps a whole line minus its value ("name\x00|type|sections") to its parsed shape, so a
	// repeated single-sample line skips tag parsing and the tag-keyed lookup.
	fast  map[string]fastEntry
	fkey  []byte
	now   int64
	debug bool

	// Counts since the last flush.
	lines, conflicts, drops, unmapped, tagErrs int
	samples                                    [Set + 1]int
	errs                                       []int // by index in allReasons
}

type fastEntry struct {
	ent  *entry
	typ  Type
	rate float64
}

type entry struct {
	s        *series
	sp       *spec
	scale    float64
	drop     bool
	bad      bool // conflict or unusable name: counted and skipped
	unmapped bool
}

func newWorker(e *Exporter) *worker {
	return &worker{
		e:     e,
		p:     Parser{Formats: e.o.formats},
		cache: make(map[string]*entry),
		fast:  make(map[string]fastEntry),
		errs:  make([]int, len(allReasons)),
		debug: e.o.logger.Core().Enabled(zap.DebugLevel),
	}
}

// begin starts a batch: it drops the cache when the mapping or the registry changed.
func (w *worker) begin(now int64) {
	w.now = now
	cfg, epoch := w.e.cfg.Load(), w.e.reg.epoch.Load()
	if cfg != w.cfg || epoch != w.epoch || len(w.cache) > w.e.o.maxCache || len(w.fast) > w.e.o.maxCache {
		clear(w.cache)
		clear(w.fast)
		w.cfg, w.epoch = cfg, epoch
	}
}

// handle processes one packet or chunk of newline-separated lines.
func (w *worker) handle(buf []byte) {
	for len(buf) > 0 {
		var line []byte
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line, buf = buf[:i], buf[i+1:]
		} else {
			line, buf = buf, nil
		}
		w.line(line)
	}
}

func (w *worker) line(line []byte) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) == 0 {
		return
	}
	w.lines++
	if w.fastLine(line) {
		return
	}
	samples, err := w.p.Parse(line)
	w.tagErrs += w.p.TagErrors
	if err != nil {
		i := slices.Index(errReasons, err)
		if i < 0 {
			i = len(w.errs) - 1
		}
		w.errs[i]++
		if w.debug {
			w.e.o.logger.Debug("bad statsd line", zap.ByteString("line", line), zap.Error(err))
		}
	}
	for i := range samples {
		ent := w.apply(&samples[i])
		if ent != nil && err == nil && len(samples) == 1 && w.p.TagErrors == 0 {
			if k, _ := w.fastKey(line); k != nil {
				w.fast[string(k)] = fastEntry{ent: ent, typ: samples[0].Type, rate: samples[0].SampleRate}
			}
		}
	}
}

// fastKey is the line without its value ("name\x00|type|sections") and the value, or nil when
// the line is not a single value followed by '|'.
func (w *worker) fastKey(line []byte) (key, value []byte) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil
	}
	rest := line[colon+1:]
	bar := bytes.IndexByte(rest, '|')
	if bar <= 0 || bytes.IndexByte(rest[:bar], ':') >= 0 {
		return nil, nil
	}
	k := append(w.fkey[:0], line[:colon]...)
	k = append(k, 0)
	k = append(k, rest[bar:]...)
	w.fkey = k
	return k, rest[:bar]
}

// fastLine applies a line whose shape (everything but the value) was seen before. Such a line
// parses exactly as its first occurrence did except for the value, so only the value is parsed.
// It reports false when the line must take the full parse.
func (w *worker) fastLine(line []byte) bool {
	k, value := w.fastKey(line)
	if k == nil {
		return false
	}
	fe, ok := w.fast[string(k)]
	if !ok {
		return false
	}
	s := Sample{Type: fe.typ, SampleRate: fe.rate, Value: 1}
	if fe.typ == Set {
		if !utf8.Valid(value) {
			return false // the full parse refuses it
		}
		s.Member = value
	} else {
		v, err := parseFloat(value)
		if err != nil {
			return false // the full parse counts the error
		}
		s.Value = v
		s.Relative = fe.typ == Gauge && (value[0] == '+' || value[0] == '-')
	}
	if s.Type == Counter && !(s.Value >= 0) {
		w.errs[len(errReasons)]++
		return true
	}
	w.applyEntry(fe.ent, &s)
	return true
}

// apply applies one parsed sample and returns the cache entry it used (nil if none).
func (w *worker) apply(s *Sample) *entry {
	if s.Type == Counter && !(s.Value >= 0) {
		// Checked before the series exists, so a bad sample creates no metric.
		w.errs[len(errReasons)]++
		return nil
	}
	k := append(w.key[:0], byte(s.Type))
	k = append(k, s.Name...)
	for _, t := range s.Tags {
		k = append(k, 0xff)
		k = append(k, t.Key...)
		k = append(k, 0xfe)
		k = append(k, t.Value...)
	}
	w.key = k
	ent := w.cache[string(k)]
	if ent == nil {
		ent = w.resolve(s)
		w.cache[string(k)] = ent
	}
	w.applyEntry(ent, s)
	return ent
}

func (w *worker) applyEntry(ent *entry, s *Sample) {
	switch {
	case ent.drop:
		w.drops++
		return
	case ent.bad:
		w.conflicts++
		return
	}
	if ent.unmapped {
		w.unmapped++
	}
	w.update(ent, s)
}

func (w *worker) update(ent *entry, s *Sample) {
	ser := ent.s
	if ser.ttl > 0 {
		for !ser.enter() {
			// Expired and removed between two samples: recreate it.
			ns, err := w.e.reg.get(ent.sp)
			if err != nil {
				w.conflicts++
				return
			}
			ent.s, ser = ns, ns
		}
		defer ser.exit()
		ser.lastSeen.Store(w.now)
	}
	v := s.Value * ent.scale
	switch s.Type {
	case Counter:
		v /= s.SampleRate
		if !(v >= 0) {
			w.errs[len(errReasons)]++
			return
		}
		ser.counter.Add(v)
	case Gauge:
		if s.Relative {
			ser.gauge.Add(v)
		} else {
			ser.gauge.Set(v)
		}
	case Set:
		ser.set.add(s.Member)
	default:
		if s.Type == Timer {
			v /= 1000
		}
		n := 1
		if s.SampleRate != 1 {
			// 0 for a rate above 1, as in statsd_exporter; capped before the conversion, which
			// would overflow int for a tiny rate.
			n = int(min(1/s.SampleRate, maxRepeat))
		}
		for range n {
			ser.obs.Observe(v)
		}
	}
	w.samples[s.Type]++
}

// resolve maps a sample to its series (the slow path, once per distinct identity).
func (w *worker) resolve(s *Sample) *entry {
	cfg := w.cfg
	name := string(s.Name)
	m := cfg.Map(name, s.Type)
	if m.Drop() {
		return &entry{drop: true}
	}
	ent := &entry{scale: 1, unmapped: m.Mapping == nil}
	if m.Name == "" {
		w.errs[len(errReasons)+1]++
		ent.bad = true
		return ent
	}
	if m.Mapping != nil && m.Mapping.Scale != nil {
		ent.scale = *m.Mapping.Scale
	}
	labels := make([]Label, 0, len(s.Tags)+len(m.Labels))
	for _, t := range s.Tags {
		k := EscapeName(string(t.Key))
		if k == "" || strings.HasPrefix(k, "__") {
			w.tagErrs++
			continue
		}
		labels = append(labels, Label{k, string(t.Value)})
	}
	labels = uniqueLabels(labels)
	honor := m.Mapping != nil && m.Mapping.HonorLabels
	for _, l := range m.Labels {
		i, found := slices.BinarySearchFunc(labels, l.Name, func(a Label, n string) int { return strings.Compare(a.Name, n) })
		switch {
		case !found:
			labels = slices.Insert(labels, i, l)
		case !honor:
			labels[i] = l
		}
	}
	// A label with an empty value is no label, as in Prometheus: x{k=""} is the series x.
	labels = slices.DeleteFunc(labels, func(l Label) bool { return l.Value == "" })
	sp := &spec{name: m.Name, help: w.e.o.helpText, labels: labels, mapping: m.Mapping}
	if cfg != nil {
		sp.defaults = &cfg.Defaults
		sp.ttl = int64(cfg.Defaults.TTL)
	}
	observer := ObserverSummary
	if sp.defaults != nil {
		observer = sp.defaults.ObserverType
	}
	if m.Mapping != nil {
		if m.Mapping.Help != "" {
			sp.help = m.Mapping.Help
		}
		sp.ttl = int64(m.Mapping.TTL)
		observer = m.Mapping.ObserverType
	}
	switch s.Type {
	case Counter:
		sp.kind = kindCounter
	case Gauge:
		sp.kind = kindGauge
	case Set:
		sp.kind = kindSet
	default:
		sp.kind = kindSummary
		reservedLabel := "quantile"
		if observer == ObserverHistogram {
			sp.kind = kindHistogram
			reservedLabel = "le"
		}
		if i := slices.IndexFunc(sp.labels, func(l Label) bool { return l.Name == reservedLabel }); i >= 0 {
			sp.labels = slices.Delete(sp.labels, i, i+1)
			w.tagErrs++
		}
	}
	ser, err := w.e.reg.get(sp)
	if err != nil {
		switch {
		case w.e.conflictLogDue(w.now):
			w.e.o.logger.Warn("statsd metric name conflict: its samples are dropped (logged at most once a second)",
				zap.String("metric", sp.name), zap.Stringer("type", sp.kind), zap.String("statsd_name", name), zap.Error(err))
		case w.debug:
			w.e.o.logger.Debug("statsd metric type conflict", zap.String("metric", sp.name),
				zap.Stringer("type", sp.kind), zap.String("statsd_name", name), zap.Error(err))
		}
		ent.bad = true
		return ent
	}
	if ser.ttl > 0 && ser.lastSeen.Load() == 0 {
		ser.lastSeen.CompareAndSwap(0, w.now)
	}
	ent.s, ent.sp = ser, sp
	return ent
}

// uniqueLabels sorts labels by name; of equal names the one sent last wins.
func uniqueLabels(labels []Label) []Label {
	slices.SortStableFunc(labels, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	out := labels[:0]
	for i, l := range labels {
		if i+1 < len(labels) && labels[i+1].Name == l.Name {
			continue
		}
		out = append(out, l)
	}
	return out
}

// flush adds the batch's counts to the exporter's metrics.
func (w *worker) flush() {
	e := w.e
	m := e.m
	if w.lines > 0 {
		m.lines.Add(float64(w.lines))
		e.total.lines.Add(int64(w.lines))
		w.lines = 0
	}
	for t, n := range w.samples {
		if n > 0 {
			e.sampleCounters[t].Add(float64(n))
			e.total.samples.Add(int64(n))
			w.samples[t] = 0
		}
	}
	for i, n := range w.errs {
		if n > 0 {
			e.errCounters[i].Add(float64(n))
			e.total.errors.Add(int64(n))
			w.errs[i] = 0
		}
	}
	if w.tagErrs > 0 {
		m.tagErrors.Add(float64(w.tagErrs))
		w.tagErrs = 0
	}
	if w.conflicts > 0 {
		m.conflicts.Add(float64(w.conflicts))
		e.total.conflicts.Add(int64(w.conflicts))
		w.conflicts = 0
	}
	if w.drops > 0 {
		m.drops.Add(float64(w.drops))
		w.drops = 0
	}
	if w.unmapped > 0 {
		m.unmapped.Add(float64(w.unmapped))
		w.unmapped = 0
	}
}
