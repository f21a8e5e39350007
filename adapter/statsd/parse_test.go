package statsd

import (
	"math"
	"strconv"

	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// parsed is a Sample with strings, for comparison.
type parsed struct {
	Name     string
	Type     string
	Value    float64
	Relative bool
	Rate     float64
	Member   string
	Tags     [][2]string
}

func toParsed(ss []Sample) []parsed {
	var out []parsed
	for _, s := range ss {
		p := parsed{Name: string(s.Name), Type: s.Type.String(), Value: s.Value, Relative: s.Relative,
			Rate: s.SampleRate, Member: string(s.Member)}
		for _, t := range s.Tags {
			p.Tags = append(p.Tags, [2]string{string(t.Key), string(t.Value)})
		}
		out = append(out, p)
	}
	return out
}

var parseCases = []struct {
	name    string
	line    string
	want    []parsed
	err     error
	tagErrs int
}{
	{"counter", "foo.bar:1|c", []parsed{{Name: "foo.bar", Type: "c", Value: 1, Rate: 1}}, nil, 0},
	{"counter float", "foo:2.5|c", []parsed{{Name: "foo", Type: "c", Value: 2.5, Rate: 1}}, nil, 0},
	{"counter sampled", "foo:1|c|@0.1", []parsed{{Name: "foo", Type: "c", Value: 1, Rate: 0.1}}, nil, 0},
	{"gauge", "g:-0.5|g", []parsed{{Name: "g", Type: "g", Value: -0.5, Relative: true, Rate: 1}}, nil, 0},
	{"gauge delta plus", "g:+3|g", []parsed{{Name: "g", Type: "g", Value: 3, Relative: true, Rate: 1}}, nil, 0},
	{"gauge absolute", "g:42|g", []parsed{{Name: "g", Type: "g", Value: 42, Rate: 1}}, nil, 0},
	{"timer", "t:320|ms|@0.5", []parsed{{Name: "t", Type: "ms", Value: 320, Rate: 0.5}}, nil, 0},
	{"histogram", "h:0.25|h", []parsed{{Name: "h", Type: "h", Value: 0.25, Rate: 1}}, nil, 0},
	{"distribution", "d:7|d", []parsed{{Name: "d", Type: "d", Value: 7, Rate: 1}}, nil, 0},
	{"set", "users:alice|s", []parsed{{Name: "users", Type: "s", Value: 1, Rate: 1, Member: "alice"}}, nil, 0},
	{"exponent", "e:1e3|g", []parsed{{Name: "e", Type: "g", Value: 1000, Rate: 1}}, nil, 0},
	{"multi metric", "m:1|c:2|g", []parsed{
		{Name: "m", Type: "c", Value: 1, Rate: 1}, {Name: "m", Type: "g", Value: 2, Rate: 1}}, nil, 0},
	{"extended aggregation", "x:1:2:3|ms|#a:b", []parsed{
		{Name: "x", Type: "ms", Value: 1, Rate: 1, Tags: [][2]string{{"a", "b"}}},
		{Name: "x", Type: "ms", Value: 2, Rate: 1, Tags: [][2]string{{"a", "b"}}},
		{Name: "x", Type: "ms", Value: 3, Rate: 1, Tags: [][2]string{{"a", "b"}}}}, nil, 0},
	{"dogstatsd tags", "req:1|c|#code:200,route:/a:b", []parsed{{Name: "req", Type: "c", Value: 1, Rate: 1,
		Tags: [][2]string{{"code", "200"}, {"route", "/a:b"}}}}, nil, 0},
	{"dogstatsd rate and tags", "req:1|c|@0.5|#code:200", []parsed{{Name: "req", Type: "c", Value: 1, Rate: 0.5,
		Tags: [][2]string{{"code", "200"}}}}, nil, 0},
	{"dogstatsd container and timestamp", "req:1|c|#a:b|c:abc123|T1656581400", []parsed{{Name: "req", Type: "c",
		Value: 1, Rate: 1, Tags: [][2]string{{"a", "b"}, {"container_id", "abc123"}}}}, nil, 0},
	{"dogstatsd bad tag skipped", "req:1|c|#a,b:c", []parsed{{Name: "req", Type: "c", Value: 1, Rate: 1,
		Tags: [][2]string{{"b", "c"}}}}, nil, 1},
	{"influxdb tags", "req,code=200,route=x:1|c", []parsed{{Name: "req", Type: "c", Value: 1, Rate: 1,
		Tags: [][2]string{{"code", "200"}, {"route", "x"}}}}, nil, 0},
	{"librato tags", "req#code=200:1|c", []parsed{{Name: "req", Type: "c", Value: 1, Rate: 1,
		Tags: [][2]string{{"code", "200"}}}}, nil, 0},
	{"signalfx tags", "req.[code=200,x=y]count:1|c", []parsed{{Name: "req.count", Type: "c", Value: 1, Rate: 1,
		Tags: [][2]string{{"code", "200"}, {"x", "y"}}}}, nil, 0},
	{"signalfx tags at end", "req[code=200]:1|c", []parsed{{Name: "req", Type: "c", Value: 1, Rate: 1,
		Tags: [][2]string{{"code", "200"}}}}, nil, 0},
	{"signalfx unbalanced", "req[code=200:1|c", []parsed{{Name: "req[code=200", Type: "c", Value: 1, Rate: 1}}, nil, 1},
	{"mixed styles", "req,a=b:1|c|#c:d", nil, ErrMixedTagStyles, 0},
	{"no colon", "foo", nil, ErrMalformedLine, 0},
	{"empty name", ":1|c", nil, ErrMalformedLine, 0},
	{"no type", "foo:1", nil, ErrMissingType, 0},
	{"bad value", "foo:abc|c", nil, ErrMalformedValue, 0},
	{"empty value", "foo:|c", nil, ErrMalformedValue, 0},
	{"unknown type", "foo:1|x", nil, ErrUnknownType, 0},
	{"bad rate kept at 1", "foo:1|c|@x", []parsed{{Name: "foo", Type: "c", Value: 1, Rate: 1}}, ErrInvalidSampleRate, 0},
	{"rate above one", "foo:1|c|@2", []parsed{{Name: "foo", Type: "c", Value: 1, Rate: 2}}, nil, 0},
	{"negative rate", "foo:1|c|@-0.5", nil, ErrInvalidSampleRate, 0},
	{"infinite rate", "foo:1|c|@Inf", nil, ErrInvalidSampleRate, 0},
	{"empty section", "foo:1|c|", nil, ErrMalformedSection, 0},
	{"unknown section", "foo:1|c|zzz", nil, ErrMalformedSection, 0},
	{"too many sections", "foo:1|c|@1|@1|@1|@1|@1", nil, ErrMalformedSection, 0},
	{"aggregation of counters", "foo:1:2|c", nil, ErrBadAggregateType, 0},
	{"invalid utf8", "foo\xff:1|c", nil, ErrInvalidUTF8, 0},
	{"event", "_e{5,4}:title|text", nil, ErrUnsupported, 0},
	{"service check", "_sc|name|0", nil, ErrUnsupported, 0},
	{"one of two bad", "m:1|c:x|g", []parsed{{Name: "m", Type: "c", Value: 1, Rate: 1}}, ErrMalformedValue, 0},
}

func TestParse(t *testing.T) {
	p := Parser{Formats: AllTagFormats}
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Parse([]byte(tc.line))
			if err != tc.err {
				t.Errorf("Parse(%q) error = %v, want %v", tc.line, err, tc.err)
			}
			if diff := cmp.Diff(tc.want, toParsed(got)); diff != "" {
				t.Errorf("Parse(%q) (-want +got):\n%s", tc.line, diff)
			}
			if p.TagErrors != tc.tagErrs {
				t.Errorf("Parse(%q) TagErrors = %d, want %d", tc.line, p.TagErrors, tc.tagErrs)
			}
		})
	}
}

func TestParseTagFormatsOff(t *testing.T) {
	p := Parser{} // no tag formats: tags stay in the name, DogStatsD sections are ignored
	got, err := p.Parse([]byte("req,code=200:1|c|#a:b"))
	if err != nil {
		t.Fatal(err)
	}
	want := []parsed{{Name: "req,code=200", Type: "c", Value: 1, Rate: 1}}
	if diff := cmp.Diff(want, toParsed(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseAllocs(t *testing.T) {
	p := Parser{Formats: AllTagFormats}
	line := []byte("req.[a=b]count:1.5|c|@0.5")
	dog := []byte("req:1|ms|#code:200,route:x")
	p.Parse(line)
	p.Parse(dog)
	if n := testing.AllocsPerRun(100, func() { p.Parse(line); p.Parse(dog) }); n != 0 {
		t.Errorf("Parse allocates %v times per run, want 0", n)
	}
}

func TestParseFloat(t *testing.T) {
	for _, s := range []string{"0", "1", "-1", "+1", "1.5", "0.001", ".5", "1.", "123456789012345",
		"1234567890123456789", "1e5", "-0", "3.14159", "99.999999999"} {
		got, err := parseFloat([]byte(s))
		if err != nil {
			t.Errorf("parseFloat(%q): %v", s, err)
			continue
		}
		want := mustParseFloat(t, s)
		if got != want {
			t.Errorf("parseFloat(%q) = %v, want %v", s, got, want)
		}
	}
	for _, s := range []string{"", "-", "+", ".", "1.2.3", "abc", "1,5"} {
		if _, err := parseFloat([]byte(s)); err == nil {
			t.Errorf("parseFloat(%q) succeeded, want error", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p := Parser{Formats: AllTagFormats}
		samples, err := p.Parse([]byte(line))
		if err != nil && Reason(err) == "other" {
			t.Errorf("Parse(%q) returned an error without a reason: %v", line, err)
		}
		for _, s := range samples {
			if len(s.Name) == 0 {
				t.Errorf("Parse(%q) gave a sample with an empty name", line)
			}
			if s.Type < Counter || s.Type > Set {
				t.Errorf("Parse(%q) gave type %d", line, s.Type)
			}
			if !(s.SampleRate > 0 && s.SampleRate <= math.MaxFloat64) {
				t.Errorf("Parse(%q) gave sample rate %v", line, s.SampleRate)
			}
			for _, tag := range s.Tags {
				if len(tag.Key) == 0 || len(tag.Value) == 0 {
					t.Errorf("Parse(%q) gave an empty tag key or value", line)
				}
			}
		}
	})
}

// FuzzTags fuzzes the tag parsers alone: a name part with embedded tags and a DogStatsD section.
func FuzzTags(f *testing.F) {
	f.Add("req,a=b,c=d", "a:b,#c:d")
	f.Add("req#a=b", "")
	f.Add("r.[a=b]x", ",,:")
	f.Add("[", "#")
	f.Fuzz(func(t *testing.T, name, dog string) {
		p := Parser{Formats: AllTagFormats}
		n := p.nameAndTags([]byte(name))
		if len(n) > len(name) {
			t.Errorf("nameAndTags(%q) = %q, longer than its input", name, n)
		}
		tags := p.parseTags(nil, []byte(dog), ':', true)
		for _, tg := range append(p.nameTags, tags...) {
			if len(tg.Key) == 0 || len(tg.Value) == 0 {
				t.Errorf("empty tag key or value from %q / %q", name, dog)
			}
		}
	})
}

func mustParseFloat(t *testing.T, s string) float64 {
	t.Helper()
	var f float64
	if _, err := fmtSscan(s, &f); err != nil {
		t.Fatalf("reference parse of %q: %v", s, err)
	}
	return f
}

func fmtSscan(s string, f *float64) (int, error) {
	v, err := strconv.ParseFloat(s, 64)
	*f = v
	return 1, err
}
