package statsd

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// Type is the statsd type of a sample (the letters after the '|').
type Type uint8

// The statsd sample types.
const (
	Counter      Type = iota + 1 // "c"
	Gauge                        // "g"; "+N" and "-N" are deltas
	Timer                        // "ms"; observed in seconds (value / 1000)
	Histogram                    // "h"
	Distribution                 // "d" (DogStatsD)
	Set                          // "s"; counts distinct members
)

// String returns the statsd spelling of t ("c", "g", "ms", "h", "d", "s").
func (t Type) String() string {
	switch t {
	case Counter:
		return "c"
	case Gauge:
		return "g"
	case Timer:
		return "ms"
	case Histogram:
		return "h"
	case Distribution:
		return "d"
	case Set:
		return "s"
	}
	return "?"
}

// matchType is the mapping config's match_metric_type class of t: counter, gauge or observer.
// Sets are exposed as gauges and match as gauges.
func (t Type) matchType() MetricType {
	switch t {
	case Counter:
		return MetricTypeCounter
	case Gauge, Set:
		return MetricTypeGauge
	}
	return MetricTypeObserver
}

// TagFormat is a bit set of the tag syntaxes the parser understands.
type TagFormat uint8

// Tag formats. AllTagFormats is the default, as in statsd_exporter.
const (
	DogStatsDTags TagFormat = 1 << iota // name:1|c|#k:v,k2:v2
	InfluxDBTags                        // name,k=v,k2=v2:1|c
	LibratoTags                         // name#k=v,k2=v2:1|c
	SignalFXTags                        // name[k=v,k2=v2]:1|c

	AllTagFormats = DogStatsDTags | InfluxDBTags | LibratoTags | SignalFXTags
)

// Tag is one key/value tag. The slices alias the parsed line (or the parser's buffers) and are valid
// until the next call to Parse.
type Tag struct {
	Key, Value []byte
}

// Sample is one parsed statsd sample. Its slices are valid until the next call to Parse.
type Sample struct {
	Name       []byte  // the metric name with any name-embedded tags removed
	Type       Type    //
	Value      float64 // the value as sent (timers in milliseconds; counters not yet scaled by the rate)
	Relative   bool    // a gauge delta ("+N"/"-N")
	SampleRate float64 // > 0; 1 when the line had none (or an unreadable one)
	Member     []byte  // for sets: the raw member
	Tags       []Tag   // the line's tags, in the order sent (keys not yet escaped)
}

// Errors returned by Parser.Parse, one per reason; Reason(err) gives the metric label.
// MinSampleRate is the smallest sample rate (@rate) accepted: a counter sample is divided by its
// rate, and 1/MinSampleRate still fits an int64. A smaller one is ErrInvalidSampleRate.
const MinSampleRate = 1e-18

var (
	ErrMalformedLine     = errors.New("statsd: malformed line")
	ErrInvalidUTF8       = errors.New("statsd: line is not valid UTF-8")
	ErrMixedTagStyles    = errors.New("statsd: both name-embedded and DogStatsD tags")
	ErrMissingType       = errors.New("statsd: no '|type' after the value")
	ErrMalformedValue    = errors.New("statsd: malformed value")
	ErrUnknownType       = errors.New("statsd: unknown sample type")
	ErrMalformedSection  = errors.New("statsd: malformed '|' section")
	ErrInvalidSampleRate = errors.New("statsd: invalid sample rate")
	ErrBadAggregateType  = errors.New("statsd: several values for a type that takes one")
	ErrUnsupported       = errors.New("statsd: DogStatsD events and service checks are not metrics")
)

// Reason is the short, constant label value for a parse error (for metrics), or "other".
func Reason(err error) string {
	switch err {
	case ErrMalformedLine:
		return "malformed_line"
	case ErrInvalidUTF8:
		return "invalid_utf8"
	case ErrMixedTagStyles:
		return "mixed_tagging_styles"
	case ErrMissingType:
		return "not_enough_parts_after_colon"
	case ErrMalformedValue:
		return "malformed_value"
	case ErrUnknownType:
		return "illegal_event"
	case ErrMalformedSection:
		return "malformed_component"
	case ErrInvalidSampleRate:
		return "invalid_sample_factor"
	case ErrBadAggregateType:
		return "invalid_extended_aggregate_type"
	case ErrUnsupported:
		return "unsupported"
	}
	return "other"
}

// Parser parses statsd lines without allocating once its buffers have grown. The zero value
// parses no tags; set Formats. A Parser is not safe for concurrent use: use one per goroutine.
type Parser struct {
	Formats TagFormat

	// TagErrors counts malformed tags in the last Parse (such tags are skipped, the sample kept).
	TagErrors int

	samples  []Sample
	nameTags []Tag
	tags     []Tag  // backing store of every sample's Tags
	name     []byte // buffer for a SignalFX name with its tag block cut out
	rateErr  bool   // an unreadable sample rate was replaced by 1
}

// Parse parses one line (without its newline) into samples. A line may carry several samples
// ("a:1|c:2|g", or DogStatsD's "a:1:2:3|ms"). It returns the samples it could parse and the
// error of the last sample it could not (a sample with an error is skipped, the others are kept;
// an unreadable sample rate is reported as ErrInvalidSampleRate with the sample kept at rate 1).
// The returned slice and everything it points into are valid until the next call.
func (p *Parser) Parse(line []byte) ([]Sample, error) {
	p.rateErr = false
	samples, err := p.parse(line)
	if err == nil && p.rateErr {
		err = ErrInvalidSampleRate
	}
	return samples, err
}

func (p *Parser) parse(line []byte) ([]Sample, error) {
	p.samples = p.samples[:0]
	p.nameTags = p.nameTags[:0]
	p.tags = p.tags[:0]
	p.TagErrors = 0
	if len(line) == 0 {
		return nil, nil
	}
	if !utf8.Valid(line) {
		return nil, ErrInvalidUTF8
	}
	if line[0] == '_' && (bytes.HasPrefix(line, []byte("_e{")) || bytes.HasPrefix(line, []byte("_sc|"))) {
		return nil, ErrUnsupported
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, ErrMalformedLine
	}
	name := p.nameAndTags(line[:colon])
	if len(name) == 0 {
		return nil, ErrMalformedLine
	}
	rest := line[colon+1:]
	dogTags := bytes.Contains(rest, []byte("|#"))
	if dogTags && len(p.nameTags) > 0 {
		return nil, ErrMixedTagStyles
	}

	bar := bytes.IndexByte(rest, '|')
	if bar < 0 {
		return nil, ErrMissingType
	}
	values := rest[:bar]
	if bytes.IndexByte(values, ':') >= 0 {
		// DogStatsD extended aggregation: "1:2:3|ms|...". (In the classic multi-metric form
		// "1|c:2|g" the first ':' comes after the first '|'.)
		typ, _, _ := bytes.Cut(rest[bar+1:], []byte("|"))
		switch string(typ) {
		case "ms", "h", "d":
		default:
			return nil, ErrBadAggregateType
		}
		suffix := rest[bar+1:]
		var lastErr error
		for len(values) > 0 {
			var v []byte
			v, values, _ = bytes.Cut(values, []byte(":"))
			if err := p.sample(name, v, suffix); err != nil {
				lastErr = err
			}
		}
		return p.samples, lastErr
	}
	if dogTags {
		// DogStatsD: one sample per line; a ':' after the value belongs to a tag.
		err := p.sample(name, values, rest[bar+1:])
		return p.samples, err
	}
	var lastErr error
	for len(rest) > 0 {
		var s []byte
		s, rest, _ = bytes.Cut(rest, []byte(":"))
		v, suffix, ok := bytes.Cut(s, []byte("|"))
		if !ok {
			lastErr = ErrMissingType
			continue
		}
		if err := p.sample(name, v, suffix); err != nil {
			lastErr = err
		}
	}
	return p.samples, lastErr
}

// sample parses "TYPE[|@rate][|#tags][|c:container][|Tts]" for the value v and appends a sample
// whose tags are the name's tags followed by the sample's own.
func (p *Parser) sample(name, v, suffix []byte) error {
	start := len(p.tags)
	p.tags = append(p.tags, p.nameTags...)
	typ, sections, hasSections := bytes.Cut(suffix, []byte("|"))
	s := Sample{Name: name, SampleRate: 1}
	switch string(typ) {
	case "c":
		s.Type = Counter
	case "g":
		s.Type = Gauge
	case "ms":
		s.Type = Timer
	case "h":
		s.Type = Histogram
	case "d":
		s.Type = Distribution
	case "s":
		s.Type = Set
	default:
		p.tags = p.tags[:start]
		if len(typ) == 0 {
			return ErrMissingType
		}
		return ErrUnknownType
	}
	err := p.value(&s, v)
	for n := 1; err == nil && hasSections; n++ {
		var sec []byte
		sec, sections, hasSections = bytes.Cut(sections, []byte("|"))
		err = p.section(&s, sec, n)
	}
	if err != nil {
		p.tags = p.tags[:start]
		return err
	}
	s.Tags = p.tags[start:len(p.tags):len(p.tags)]
	p.samples = append(p.samples, s)
	return nil
}

func (p *Parser) value(s *Sample, v []byte) error {
	if len(v) == 0 {
		return ErrMalformedValue
	}
	if s.Type == Set {
		s.Member = v
		s.Value = 1
		return nil
	}
	f, err := parseFloat(v)
	if err != nil {
		return err
	}
	s.Value = f
	s.Relative = s.Type == Gauge && (v[0] == '+' || v[0] == '-')
	return nil
}

// section parses the n-th '|' section after the type.
func (p *Parser) section(s *Sample, sec []byte, n int) error {
	if len(sec) == 0 || n > 4 {
		return ErrMalformedSection
	}
	switch sec[0] {
	case '@':
		// As in statsd_exporter: an unreadable rate is counted but the sample kept at rate 1; a
		// rate above 1 divides counters and observes timers int(1/rate) = 0 times. Unlike it, a
		// negative or non-finite rate, or one below MinSampleRate, rejects the sample.
		r, err := parseFloat(sec[1:])
		switch {
		case err != nil:
			p.rateErr = true
			r = 1
		case r == 0:
			r = 1
		case !(r >= MinSampleRate && r <= math.MaxFloat64):
			return ErrInvalidSampleRate
		}
		s.SampleRate = r
	case '#':
		if p.Formats&DogStatsDTags != 0 {
			p.tags = p.parseTags(p.tags, sec[1:], ':', true)
		}
	case 'c':
		if len(sec) < 3 || sec[1] != ':' {
			return ErrMalformedSection
		}
		p.tags = append(p.tags, Tag{Key: containerID, Value: sec[2:]})
	case 'T':
		// DogStatsD timestamp: Prometheus is pull-based, so it is ignored.
	default:
		return ErrMalformedSection
	}
	return nil
}

var containerID = []byte("container_id")

// nameAndTags strips InfluxDB, Librato and SignalFX tags from the name part of a line into
// p.nameTags.
func (p *Parser) nameAndTags(name []byte) []byte {
	if p.Formats&SignalFXTags != 0 {
		open := bytes.IndexByte(name, '[')
		closing := bytes.IndexByte(name, ']')
		switch {
		case open >= 0 && closing > open:
			p.nameTags = p.parseTags(p.nameTags, name[open+1:closing], '=', false)
			if closing == len(name)-1 {
				return name[:open]
			}
			p.name = append(append(p.name[:0], name[:open]...), name[closing+1:]...)
			return p.name
		case open >= 0 || closing >= 0:
			p.TagErrors++
			return name
		}
	}
	for i, c := range name {
		if (c == '#' && p.Formats&LibratoTags != 0) || (c == ',' && p.Formats&InfluxDBTags != 0) {
			p.nameTags = p.parseTags(p.nameTags, name[i+1:], '=', false)
			return name[:i]
		}
	}
	return name
}

// parseTags appends the comma-separated tags of list, each "key<sep>value", to dst.
// Malformed tags (empty, no separator, empty key or value) are counted in TagErrors and skipped.
func (p *Parser) parseTags(dst []Tag, list []byte, sep byte, dog bool) []Tag {
	if len(list) == 0 {
		p.TagErrors++
		return dst
	}
	for len(list) > 0 {
		var tag []byte
		tag, list, _ = bytes.Cut(list, []byte(","))
		if dog && len(tag) > 0 && tag[0] == '#' {
			tag = tag[1:]
		}
		k, v, ok := bytes.Cut(tag, []byte{sep})
		if !ok || len(k) == 0 || len(v) == 0 {
			p.TagErrors++
			continue
		}
		dst = append(dst, Tag{Key: k, Value: v})
	}
	return dst
}

// parseFloat parses a statsd number. Plain decimals of at most 15 digits, the common case, take an
// exact fast path (an integer below 2^53 divided by an exact power of ten rounds correctly).
func parseFloat(b []byte) (float64, error) {
	if len(b) == 0 {
		return 0, ErrMalformedValue
	}
	i, neg := 0, false
	switch b[0] {
	case '+':
		i = 1
	case '-':
		i, neg = 1, true
	}
	var n int64
	digits, frac, dot := 0, 0, false
	for j := i; j < len(b); j++ {
		c := b[j]
		switch {
		case c >= '0' && c <= '9':
			n = n*10 + int64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			digits = 99 // not a plain decimal: take the slow path
		}
		if digits > 15 {
			break
		}
	}
	if digits > 0 && digits <= 15 {
		f := float64(n) / pow10[frac]
		if neg {
			f = -f
		}
		return f, nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return 0, ErrMalformedValue
	}
	return f, nil
}

var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}
