package logs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/internal/syncbuf"
	"github.com/podblocks/podblocks/lifecycletest"
	"go.uber.org/goleak"
	"go.uber.org/zap/zapcore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var clfLine = `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326`
var combinedLine = clfLine + ` "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`

func mustRegex(t testing.TB, expr string) *Regex {
	t.Helper()
	r, err := NewRegex(expr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFormats(t *testing.T) {
	re := mustRegex(t, `^(?P<time>\S+) \[(?P<level>\w+)\] (?P<msg>.*?)(?: user=(?P<user>\w+))?$`)
	cases := []struct {
		name   string
		format Format
		line   string
		want   []Field
		err    error
	}{
		{"regex", re, "2024-01-02T03:04:05Z [WARN] disk low user=bob", []Field{
			{"time", "2024-01-02T03:04:05Z"}, {"level", "WARN"}, {"msg", "disk low"}, {"user", "bob"}}, nil},
		{"regex optional group absent", re, "t [info] hi", []Field{{"time", "t"}, {"level", "info"}, {"msg", "hi"}}, nil},
		{"regex no match", re, "nothing", nil, ErrNoMatch},
		{"logfmt", Logfmt{}, `level=info msg="hello \"world\"" n=3 flag`, []Field{
			{"level", "info"}, {"msg", `hello "world"`}, {"n", "3"}, {"flag", true}}, nil},
		{"logfmt empty value", Logfmt{}, `a= b=1`, []Field{{"a", ""}, {"b", "1"}}, nil},
		{"logfmt unterminated", Logfmt{}, `msg="oops`, nil, ErrUnterminated},
		{"logfmt empty key", Logfmt{}, `=x`, nil, ErrEmptyKey},
		{"logfmt empty line", Logfmt{}, ``, nil, ErrNoMatch},
		{"json", JSON{}, `{"msg":"hi","n":1.5,"ok":true,"nested":{"a":1}}`, []Field{
			{"msg", "hi"}, {"n", json.Number("1.5")}, {"nested", map[string]any{"a": json.Number("1")}}, {"ok", true}}, nil},
		{"json not object", JSON{}, `[1,2]`, nil, ErrNotObject},
		{"json trailing", JSON{}, `{"a":1} {"b":2}`, nil, ErrNotObject},
		{"clf", CommonLog{}, clfLine, []Field{
			{"remote_addr", "127.0.0.1"}, {"user", "frank"}, {"time", "10/Oct/2000:13:55:36 -0700"},
			{"request", "GET /apache_pb.gif HTTP/1.0"}, {"method", "GET"}, {"path", "/apache_pb.gif"},
			{"protocol", "HTTP/1.0"}, {"status", int64(200)}, {"bytes", int64(2326)}}, nil},
		{"combined", CommonLog{Combined: true}, combinedLine, []Field{
			{"remote_addr", "127.0.0.1"}, {"user", "frank"}, {"time", "10/Oct/2000:13:55:36 -0700"},
			{"request", "GET /apache_pb.gif HTTP/1.0"}, {"method", "GET"}, {"path", "/apache_pb.gif"},
			{"protocol", "HTTP/1.0"}, {"status", int64(200)}, {"bytes", int64(2326)},
			{"referer", "http://www.example.com/start.html"}, {"user_agent", "Mozilla/4.08 [en] (Win98; I ;Nav)"}}, nil},
		{"clf escaped quote and dash size", CommonLog{}, `::1 - - [10/Oct/2000:13:55:36 -0700] "GET /a\"b HTTP/1.1" 304 -`, []Field{
			{"remote_addr", "::1"}, {"time", "10/Oct/2000:13:55:36 -0700"}, {"request", `GET /a"b HTTP/1.1`},
			{"method", "GET"}, {"path", `/a"b`}, {"protocol", "HTTP/1.1"}, {"status", int64(304)}}, nil},
		{"clf garbage", CommonLog{}, `hello world`, nil, ErrNoMatch},
		{"clf bad status", CommonLog{}, `h - - [t] "GET / HTTP/1.1" abc 1`, nil, ErrNoMatch},
		{"combined missing agent", CommonLog{Combined: true}, clfLine, nil, ErrNoMatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.format.Parse([]byte(tc.line))
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse error = %v, want %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRegexErrors(t *testing.T) {
	for _, expr := range []string{"(", "(a)(b)"} {
		if _, err := NewRegex(expr); err == nil {
			t.Errorf("NewRegex(%q) succeeded", expr)
		}
	}
}

var fixed = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func normalize(t *testing.T, f Format, lines []string, opts ...Option) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	n, err := New(f, &buf, append([]Option{WithClock(func() time.Time { return fixed })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		n.Line([]byte(l))
	}
	return decodeLines(t, buf.Bytes())
}

func decodeLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("output line %q is not JSON: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestNormalize(t *testing.T) {
	cases := []struct {
		name   string
		format Format
		opts   []Option
		line   string
		want   map[string]any
	}{
		{"logfmt renames and level", Logfmt{}, []Option{WithRename(map[string]string{"lvl": "level", "u": "user"})},
			`ts=2024-05-06T07:08:09.5Z lvl=WARNING msg="disk low" u=bob`,
			map[string]any{"time": "2024-05-06T07:08:09.5Z", "level": "warn", "msg": "disk low", "user": "bob"}},
		{"json epoch millis and numbers", JSON{}, nil,
			`{"timestamp":1700000000123,"severity":"ERROR","message":"boom","n":3,"f":1.5}`,
			map[string]any{"time": "2023-11-14T22:13:20.123Z", "level": "error", "msg": "boom", "n": 3.0, "f": 1.5}},
		{"json syslog severity", JSON{}, nil, `{"level":4,"msg":"x"}`,
			map[string]any{"time": "2025-01-02T03:04:05Z", "level": "warn", "msg": "x"}},
		{"json reserved key kept", JSON{}, []Option{WithLevelFields("lvl")}, `{"level":"custom","msg":"m"}`,
			map[string]any{"time": "2025-01-02T03:04:05Z", "level": "info", "msg": "m", "orig_level": "custom"}},
		{"clf 5xx is error", CommonLog{}, nil, `10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "POST /x HTTP/1.1" 503 12`,
			map[string]any{"time": "2000-10-10T13:55:36-07:00", "level": "error", "msg": "POST /x HTTP/1.1",
				"remote_addr": "10.0.0.1", "request": "POST /x HTTP/1.1", "method": "POST", "path": "/x",
				"protocol": "HTTP/1.1", "status": 503.0, "bytes": 12.0}},
		{"level map override", Logfmt{}, []Option{WithLevelMap(map[string]zapcore.Level{"NOISY": zapcore.DebugLevel})},
			`level=noisy msg=m`, map[string]any{"time": "2025-01-02T03:04:05Z", "level": "debug", "msg": "m"}},
		{"static field", Logfmt{}, []Option{WithStatic("source", "nginx")}, `msg=m`,
			map[string]any{"time": "2025-01-02T03:04:05Z", "level": "info", "msg": "m", "source": "nginx"}},
		{"unparsed kept", JSON{}, nil, `not json at all`,
			map[string]any{"time": "2025-01-02T03:04:05Z", "level": "info", "msg": "not json at all",
				"parse_error": "logs: line is not a JSON object"}},
		{"invalid utf8 replaced", Logfmt{}, nil, "msg=\xff",
			map[string]any{"time": "2025-01-02T03:04:05Z", "level": "info", "msg": "\uFFFD"}},
		{"duplicate keys keep last", Logfmt{}, nil, "a=1 a=2",
			map[string]any{"time": "2025-01-02T03:04:05Z", "level": "info", "msg": "", "a": "2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := normalize(t, tc.format, []string{tc.line}, tc.opts...)
			if len(got) != 1 {
				t.Fatalf("got %d lines, want 1", len(got))
			}
			if diff := cmp.Diff(tc.want, got[0]); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestMinLevelDrops(t *testing.T) {
	got := normalize(t, Logfmt{}, []string{"level=debug msg=a", "level=error msg=b"}, WithMinLevel(zapcore.InfoLevel))
	if len(got) != 1 || got[0]["msg"] != "b" {
		t.Errorf("got %v, want only the error line", got)
	}
}

func TestRunSources(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	long := "msg=" + strings.Repeat("x", 100)
	var out syncbuf.Buffer
	n, err := New(Logfmt{}, &out, WithReader(strings.NewReader("src=reader\n"+long+"\nsrc=after_long")),
		WithListener(ln), WithPacketConn(pc), WithMaxLineLength(32))
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, n, 30*time.Second)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("src=tcp\n"))
	u, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("src=udp\nsrc=udp2"))
	u.Close()
	deadline := time.Now().Add(30 * time.Second)
	want := map[string]bool{"reader": true, "tcp": true, "udp": true, "udp2": true, "after_long": true}
	for {
		got := map[string]bool{}
		truncated := 0
		for _, m := range decodeLines(t, out.Bytes()) {
			if s, ok := m["src"].(string); ok {
				got[s] = true
			}
			if m["truncated"] == true {
				truncated++
			}
		}
		if cmp.Equal(want, got) && truncated == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sources seen %v (truncated lines %d), want %v and 1 truncated", got, truncated, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := run.Stop(lifecycletest.DefaultStopTimeout); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestRunReaderEOFReturns(t *testing.T) {
	var out syncbuf.Buffer
	n, err := New(JSON{}, &out, WithReader(strings.NewReader(`{"msg":"a"}`+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := decodeLines(t, out.Bytes()); len(got) != 1 || got[0]["msg"] != "a" {
		t.Errorf("output %v", got)
	}
}

// TestRunReaderWriteError: a line from the reader that cannot be written stops Run with the
// write error, counted; empty lines, and lines of white space only, are no records.
func TestRunReaderWriteError(t *testing.T) {
	reg := prometheus.NewRegistry()
	out := errWriter{}
	n, err := New(Logfmt{}, out, WithReader(strings.NewReader("a=1\nb=2\n")), WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(context.Background()); !errors.Is(err, ErrWrite) {
		t.Errorf("Run = %v, want ErrWrite", err)
	}
	if v, _ := adaptertest.Values(reg); v["podblocks_adapter_logs_write_errors_total"] != 1 {
		t.Errorf("metrics %v, want 1 write error (Run stops at the first)", v)
	}

	var buf syncbuf.Buffer
	n, err = New(Logfmt{}, &buf, WithReader(strings.NewReader("a=1\n\n\r\n \t \r\nb=2\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := decodeLines(t, buf.Bytes()); len(got) != 2 || got[0]["a"] != "1" || got[1]["b"] != "2" {
		t.Errorf("output %v, want the two non-blank lines only", got)
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func fuzzFormat(f *testing.F, format Format, seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var buf bytes.Buffer
		n, err := New(format, &buf, WithClock(func() time.Time { return fixed }))
		if err != nil {
			t.Fatal(err)
		}
		n.Line([]byte(line))
		if len(bytes.TrimSpace([]byte(line))) == 0 {
			if buf.Len() != 0 {
				t.Fatalf("a blank line gave output %q, want none", buf.Bytes())
			}
			return
		}
		out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if bytes.Contains(out, []byte("\n")) {
			t.Fatalf("one input line gave several output lines: %q", out)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("output %q is not a JSON object: %v", out, err)
		}
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k]; !ok {
				t.Errorf("output %q has no %q", out, k)
			}
		}
	})
}

func FuzzLogfmt(f *testing.F) {
	fuzzFormat(f, Logfmt{}, `level=info msg="hello \"world\"" n=3 flag`, `a= b=1`, `msg="oops`, "=x")
}

func FuzzJSON(f *testing.F) {
	fuzzFormat(f, JSON{}, `{"msg":"hi","n":1.5,"ok":true,"nested":{"a":1}}`, `{"timestamp":1700000000123}`, `[1]`)
}

func FuzzCommonLog(f *testing.F) {
	fuzzFormat(f, CommonLog{Combined: true}, combinedLine, clfLine, `h - - [t] "GET / HTTP/1.1" 200 -`)
}

func FuzzRegex(f *testing.F) {
	fuzzFormat(f, mustRegex(f, `^(?P<time>\S+) \[(?P<level>\w+)\] (?P<msg>.*)$`), "t [info] hi", "x")
}

// keysOf returns the keys of the JSON object line, in order, duplicates included.
func keysOf(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%q: not a JSON object", line)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		keys = append(keys, tok.(string))
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	}
	return keys
}

// TestStaticNoDuplicateKeys: a static field wins over the line's field of its key, which is kept
// as orig_<key>; no key is written twice; a static field may not take a key of the normalizer's.
func TestStaticNoDuplicateKeys(t *testing.T) {
	var buf bytes.Buffer
	n, err := New(Logfmt{}, &buf, WithClock(func() time.Time { return fixed }), WithStatic("source", "nginx"),
		WithStatic("env", "dev"), WithStatic("env", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"level=info msg=hi source=app truncated=no parse_error=none", `msg="unterminated`} {
		buf.Reset()
		n.Line([]byte(l))
		keys := keysOf(t, bytes.TrimSpace(buf.Bytes()))
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("line %q: key %q written twice in %s", l, k, buf.Bytes())
			}
			seen[k] = true
		}
	}
	buf.Reset()
	n.Line([]byte("level=info msg=hi source=app"))
	got := decodeLines(t, buf.Bytes())[0]
	if got["source"] != "nginx" || got["orig_source"] != "app" || got["env"] != "prod" {
		t.Errorf("record %v, want source=nginx (static), orig_source=app (the line's), env=prod (the last)", got)
	}
	for _, k := range ReservedKeys {
		if _, err := New(Logfmt{}, &buf, WithStatic(k, "x")); err == nil {
			t.Errorf("New with static field %q succeeded", k)
		}
	}
}

// TestStaticKeepsTheLinesOrigFields: when the line has an orig_<key> field of its own, its field
// of a static key is written under orig_orig_<key>: no field is dropped, no key written twice.
func TestStaticKeepsTheLinesOrigFields(t *testing.T) {
	var buf bytes.Buffer
	n, err := New(Logfmt{}, &buf, WithClock(func() time.Time { return fixed }), WithStatic("source", "nginx"),
		WithStatic("orig_env", "s"), WithStatic("env", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string
		want map[string]string
	}{
		{"orig_source=x source=app msg=hi", map[string]string{"source": "nginx", "orig_source": "x", "orig_orig_source": "app"}},
		{"source=app orig_source=x msg=hi", map[string]string{"source": "nginx", "orig_source": "x", "orig_orig_source": "app"}},
		{"source=a orig_source=x source=b orig_orig_source=y", map[string]string{"source": "nginx", "orig_source": "x",
			"orig_orig_source": "y", "orig_orig_orig_source": "b"}},
		{"msg=hi truncated=no orig_truncated=t", map[string]string{"orig_truncated": "t", "orig_orig_truncated": "no"}},
		// orig_env is a static key too: the line's env and orig_env both move past it.
		{"env=dev orig_env=e", map[string]string{"env": "prod", "orig_env": "s", "orig_orig_env": "dev", "orig_orig_orig_env": "e"}},
	} {
		buf.Reset()
		if err := n.Line([]byte(tc.line)); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, k := range keysOf(t, bytes.TrimSpace(buf.Bytes())) {
			if seen[k] {
				t.Errorf("line %q: key %q written twice in %s", tc.line, k, buf.Bytes())
			}
			seen[k] = true
		}
		got := decodeLines(t, buf.Bytes())[0]
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("line %q: %s = %v, want %q (record %v)", tc.line, k, got[k], v, got)
			}
		}
	}
}

// TestJSONNumbersKeepTheirDigits: a JSON number beyond int64, or a float, is written as its
// literal text, not rounded through float64.
func TestJSONNumbersKeepTheirDigits(t *testing.T) {
	var buf bytes.Buffer
	n, err := New(JSON{}, &buf, WithClock(func() time.Time { return fixed }))
	if err != nil {
		t.Fatal(err)
	}
	n.Line([]byte(`{"msg":"x","big":123456789012345678901234567890,"neg":-9223372036854775809,"f":0.1000000000000000055511151231257827,"i":42}`))
	for _, want := range []string{`"big":123456789012345678901234567890`, `"neg":-9223372036854775809`,
		`"f":0.1000000000000000055511151231257827`, `"i":42`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output %s: missing %s", buf.Bytes(), want)
		}
	}
}
