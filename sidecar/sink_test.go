package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

var jsonTests = []struct {
	name string
	line string
	want string // the decoded line
}{
	{"plain", "hello world, a plain log line of some length", "hello world, a plain log line of some length"},
	{"quotes and backslashes", `say "hi" \ bye "x"`, `say "hi" \ bye "x"`},
	{"controls", "a\tb\rc\x01d\x1fe", "a\tb\rc\x01d\x1fe"},
	{"unicode", "grüße 日本語 \u2028 end", "grüße 日本語 \u2028 end"},
	{"invalid utf8", "bad \xff\xfe byte", "bad \ufffd\ufffd byte"},
	{"html stays", "<a href='x'>&amp;</a>", "<a href='x'>&amp;</a>"},
	{"empty", "", ""},
	{"eight-byte boundaries", `0123456"89abcdef\ghijklmn` + "\x7f", `0123456"89abcdef\ghijklmn` + "\x7f"},
}

func TestAppendJSON(t *testing.T) {
	for _, tt := range jsonTests {
		t.Run(tt.name, func(t *testing.T) {
			out := AppendJSON(nil, Record{File: `/var/log/"x".log`, Line: []byte(tt.line), Offset: 42})
			if !bytes.HasSuffix(out, []byte("}\n")) {
				t.Fatalf("no trailing newline: %q", out)
			}
			var got struct {
				File   string `json:"file"`
				Line   string `json:"line"`
				Offset int64  `json:"offset"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("invalid JSON %q: %v", out, err)
			}
			if got.Line != tt.want || got.File != `/var/log/"x".log` || got.Offset != 42 {
				t.Errorf("decoded %+v, want line %q", got, tt.want)
			}
		})
	}
}

func FuzzAppendJSON(f *testing.F) {
	for _, tt := range jsonTests {
		f.Add(tt.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		out := AppendJSON(nil, Record{File: line, Line: []byte(line)})
		var got struct {
			File string `json:"file"`
			Line string `json:"line"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("invalid JSON for %q: %q: %v", line, out, err)
		}
		if utf8.ValidString(line) && (got.Line != line || got.File != line) {
			t.Errorf("round trip of %q gave %q", line, got.Line)
		}
	})
}

func TestPlainWord(t *testing.T) {
	for b := 0; b < 256; b++ {
		for pos := range 8 {
			w := []byte("abcdefgh")
			w[pos] = byte(b)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(w[i])
			}
			want := b >= 0x20 && b < 0x80 && b != '"' && b != '\\'
			if got := plainWord(x); got != want {
				t.Fatalf("byte %#x at %d: plainWord = %v, want %v", b, pos, got, want)
			}
		}
	}
}

func TestFileSinkMarkAndRollback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	s, err := OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Write(ctx, []Record{{File: "f", Line: []byte("one")}}); err != nil {
		t.Fatal(err)
	}
	mark, err := s.Mark()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []Record{{File: "f", Line: []byte("two")}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A restart: the line written after the mark is discarded.
	s, err = OpenFileSink(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Rollback(mark); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, []Record{{File: "f", Line: []byte("three")}}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	want := "{\"file\":\"f\",\"line\":\"one\",\"offset\":0}\n{\"file\":\"f\",\"line\":\"three\",\"offset\":0}\n"
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("sink file (-want +got):\n%s", diff)
	}
	if err := s.Rollback("999999"); !errors.Is(err, ErrSinkBehind) {
		t.Errorf("Rollback past the end = %v, want ErrSinkBehind", err)
	}
	if err := s.Rollback("x"); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("Rollback(bad) = %v, want ErrBadCheckpoint", err)
	}
}

// TestRawFormat checks both sinks with WithFormat(FormatRaw): each line as it was read and a newline,
// in order, copied before Write returns; the file sink's marks and rollback count raw bytes.
func TestRawFormat(t *testing.T) {
	ctx := context.Background()
	recs := func(lines ...string) []Record {
		var out []Record
		for i, l := range lines {
			out = append(out, Record{File: "/logs/a.log", Line: []byte(l), Offset: int64(i), plain: isPlain([]byte(l))})
		}
		return out
	}
	// Raw output does not escape anything; a joined multiline record keeps its newlines.
	batch := recs(`quote " backslash \ `, "tab\tcontrol\x01", "ünïcødé", "", "panic: x\n\tat main.go:1")
	want := "quote \" backslash \\ \ntab\tcontrol\x01\nünïcødé\n\npanic: x\n\tat main.go:1\n"

	var buf bytes.Buffer
	ws := NewWriterSink(&buf, WithFormat(FormatRaw))
	if err := ws.Write(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for i := range batch {
		copy(batch[i].Line, bytes.Repeat([]byte("X"), len(batch[i].Line))) // the Tailer reuses its buffer
	}
	if err := ws.Flush(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("WriterSink output (-want +got):\n%s", diff)
	}

	path := filepath.Join(t.TempDir(), "out.log")
	fs, err := OpenFileSink(path, WithFormat(FormatRaw))
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Write(ctx, recs("one", "two")); err != nil {
		t.Fatal(err)
	}
	mark, err := fs.Mark()
	if err != nil {
		t.Fatal(err)
	}
	if mark != "8" {
		t.Errorf("mark %q, want 8 (the raw bytes)", mark)
	}
	if err := fs.Write(ctx, recs("lost in the crash")); err != nil {
		t.Fatal(err)
	}
	fs.Close()
	fs, err = OpenFileSink(path, WithFormat(FormatRaw))
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	if err := fs.Rollback(mark); err != nil {
		t.Fatal(err)
	}
	if err := fs.Write(ctx, recs("three")); err != nil {
		t.Fatal(err)
	}
	if err := fs.Write(ctx, nil); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if diff := cmp.Diff("one\ntwo\nthree\n", string(data)); diff != "" {
		t.Errorf("FileSink output (-want +got):\n%s", diff)
	}
}

// appendRawNaive is appendRaw's reference: each line and a newline.
func appendRawNaive(dst []byte, recs []Record) []byte {
	for _, r := range recs {
		dst = append(append(dst, r.Line...), '\n')
	}
	return dst
}

// rawRecords splits buf into records pointing into it, the way the Tailer makes them, dropping every
// line for which drop is true.
func rawRecords(buf []byte, drop func(i int) bool) []Record {
	var recs []Record
	for i, start := 0, 0; ; i++ {
		j := bytes.IndexByte(buf[start:], '\n')
		if j < 0 {
			return recs
		}
		if !drop(i) {
			recs = append(recs, Record{Line: buf[start : start+j]})
		}
		start += j + 1
	}
}

func TestAppendRawJoinsOnlyAdjacentLines(t *testing.T) {
	buf := []byte("one\ntwo\n\nfour\nfive\nsix\n")
	tests := []struct {
		name string
		recs []Record
	}{
		{"adjacent", rawRecords(buf, func(int) bool { return false })},
		{"a line skipped", rawRecords(buf, func(i int) bool { return i == 3 })},
		{"every other", rawRecords(buf, func(i int) bool { return i%2 == 1 })},
		{"other arrays", []Record{{Line: []byte("a")}, {Line: []byte("b")}, {Line: buf[4:7]}}},
		// b follows a one byte apart, but that byte is not a newline.
		{"not a newline between", []Record{{Line: []byte("ab;cd")[:2]}, {Line: []byte("ab;cd")[3:]}}},
		{"same array, not a newline", func() []Record { x := []byte("ab;cd"); return []Record{{Line: x[:2]}, {Line: x[3:]}} }()},
		{"a line twice", []Record{{Line: buf[:3]}, {Line: buf[:3]}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(string(appendRawNaive(nil, tt.recs)), string(appendRaw([]byte("x"), tt.recs)[1:])); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzAppendRaw(f *testing.F) {
	f.Add([]byte("one\ntwo\n\nfour\n"), uint64(0))
	f.Add([]byte("a;b\nc\n"), uint64(5))
	f.Fuzz(func(t *testing.T, buf []byte, drop uint64) {
		recs := rawRecords(buf, func(i int) bool { return drop>>(i%64)&1 == 1 })
		if want, got := appendRawNaive(nil, recs), appendRaw(nil, recs); !bytes.Equal(want, got) {
			t.Fatalf("appendRaw = %q, want %q", got, want)
		}
	})
}

var checkpointTests = []struct {
	name string
	in   string
	ok   bool
}{
	{"valid", `{"version":1,"sink_mark":"10","files":[{"path":"/a","dev":1,"ino":2,"fp":"0123456789abcdef0123456789abcdef","fp_len":10,"offset":5}]}`, true},
	{"empty files", `{"version":1,"files":[]}`, true},
	{"wrong version", `{"version":2,"files":[]}`, false},
	{"negative offset", `{"version":1,"files":[{"offset":-1}]}`, false},
	{"fp length", `{"version":1,"files":[{"fp":"ab","fp_len":3}]}`, false},
	{"fp too long", `{"version":1,"files":[{"fp":"0123456789abcdef0123456789abcdef","fp_len":5000}]}`, false},
	{"not json", `{"version":`, false},
}

func TestParseCheckpoint(t *testing.T) {
	for _, tt := range checkpointTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseCheckpoint([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadCheckpoint) {
				t.Errorf("err = %v, want ErrBadCheckpoint", err)
			}
		})
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	for _, tt := range checkpointTests {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseCheckpoint(data)
		if err != nil {
			return
		}
		// What parses must survive a write and a reload unchanged.
		path := filepath.Join(t.TempDir(), "cp.json")
		if err := writeCheckpoint(path, st); err != nil {
			t.Fatal(err)
		}
		again, found, err := loadCheckpoint(path)
		if err != nil || !found {
			t.Fatalf("reload: %v %v", found, err)
		}
		if diff := cmp.Diff(st, again); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	})
}

func TestWriterSinkErrorIsReportedAndRetried(t *testing.T) {
	w := &flakyWriter{fails: 2}
	s := NewWriterSink(w)
	ctx := context.Background()
	if err := s.Write(ctx, []Record{{File: "f", Line: []byte("one")}}); err != nil {
		t.Fatalf("Write = %v (the write happens in the background)", err)
	}
	if err := s.Flush(); err == nil || !strings.Contains(err.Error(), "write records") {
		t.Fatalf("Flush = %v, want the write error", err)
	}
	if err := s.Write(ctx, []Record{{File: "f", Line: []byte("two")}}); err != nil {
		t.Fatalf("Write = %v", err)
	}
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	want := "{\"file\":\"f\",\"line\":\"one\",\"offset\":0}\n{\"file\":\"f\",\"line\":\"two\",\"offset\":0}\n"
	if diff := cmp.Diff(want, w.buf.String()); diff != "" {
		t.Errorf("written (-want +got):\n%s", diff)
	}
}

// A large batch is written in pieces of at most writePiece bytes (so that a pipe's reader can take
// each while the next is written), and a write that fails midway is resumed where it stopped: no
// byte twice, none lost.
func TestWriterSinkWritesInPiecesAndResumes(t *testing.T) {
	w := &pieceWriter{failAt: 3, partial: 100}
	s := NewWriterSink(w, WithFormat(FormatRaw))
	var recs []Record
	var want bytes.Buffer
	for i := range 2000 {
		l := fmt.Sprintf("line %04d %s", i, strings.Repeat("x", 80))
		recs = append(recs, Record{File: "f", Line: []byte(l), plain: true})
		want.WriteString(l + "\n")
	}
	ctx := context.Background()
	if err := s.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil { // writes the rest again
		t.Fatalf("Flush = %v", err)
	}
	if diff := cmp.Diff(want.String(), w.buf.String()); diff != "" {
		t.Errorf("written (-want +got):\n%s", diff)
	}
	for i, n := range w.sizes {
		if n > writePiece {
			t.Errorf("write %d: %d bytes, want at most %d", i, n, writePiece)
		}
	}
	if len(w.sizes) < want.Len()/writePiece {
		t.Errorf("%d writes for %d bytes", len(w.sizes), want.Len())
	}
}

// pieceWriter records the size of each write; write number failAt takes only partial bytes and fails.
type pieceWriter struct {
	failAt, partial int
	sizes           []int
	buf             bytes.Buffer
}

func (w *pieceWriter) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	if len(w.sizes) == w.failAt {
		w.buf.Write(p[:w.partial])
		return w.partial, errors.New("broken pipe")
	}
	return w.buf.Write(p)
}

// flakyWriter fails its first writes.
type flakyWriter struct {
	fails int
	buf   bytes.Buffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	if w.fails > 0 {
		w.fails--
		return 0, errors.New("disk full")
	}
	return w.buf.Write(p)
}

func FuzzIsPlain(f *testing.F) {
	for _, tt := range jsonTests {
		f.Add([]byte(tt.line))
	}
	f.Fuzz(func(t *testing.T, s []byte) {
		want := true
		for _, b := range s {
			if b < 0x20 || b >= 0x80 || b == '"' || b == '\\' {
				want = false
			}
		}
		if got := isPlain(s); got != want {
			t.Errorf("isPlain(%q) = %v, want %v", s, got, want)
		}
	})
}

// scanTextRef is scanText one byte at a time.
func scanTextRef(s []byte, json bool) (newlines int, flagged bool) {
	for _, b := range s {
		switch {
		case b == '\n':
			newlines++
		case json && (b < 0x20 || b >= 0x80 || b == '"' || b == '\\'), !json && (b == 0 || b >= 0x80):
			flagged = true
		}
	}
	return newlines, flagged
}

// checkScanText compares scanText, scanBlocks, scanBlocksGo and each scanImpls with scanTextRef on s
// in both modes.
func checkScanText(t *testing.T, s []byte) {
	t.Helper()
	for _, json := range []bool{true, false} {
		wantN, wantF := scanTextRef(s, json)
		if n, f := scanText(s, json); n != wantN || f != wantF {
			t.Fatalf("scanText(%q, json %v) = %d, %v, want %d, %v", s, json, n, f, wantN, wantF)
		}
		blocks := s[:len(s)&^63]
		wantN, wantF = scanTextRef(blocks, json)
		if n, f := scanBlocks(s, json); n != wantN || f != wantF {
			t.Fatalf("scanBlocks(%q, json %v) = %d, %v, want %d, %v", s, json, n, f, wantN, wantF)
		}
		if n, f := scanBlocksGo(s, json); n != wantN || f != wantF {
			t.Fatalf("scanBlocksGo(%q, json %v) = %d, %v, want %d, %v", s, json, n, f, wantN, wantF)
		}
		for name, scan := range scanImpls() {
			if n, f := scan(s, json); n != wantN || f != wantF {
				t.Fatalf("%s(%q, json %v) = %d, %v, want %d, %v", name, s, json, n, f, wantN, wantF)
			}
		}
	}
}

// TestScanText puts every byte value at every position of buffers of several lengths (around the
// 16-, 32- and 64-byte steps), among plain bytes and among newlines, and counts newlines past the
// 63 (SSE2) and 127 (AVX2) steps after which the assembly sums its per-byte counters.
func TestScanText(t *testing.T) {
	for _, n := range []int{1, 15, 16, 17, 63, 64, 65, 127, 128, 200} {
		for _, fill := range []byte{'a', '\n', ' '} {
			s := bytes.Repeat([]byte{fill}, n)
			for pos := range n {
				for b := range 256 {
					s[pos] = byte(b)
					checkScanText(t, s)
				}
				s[pos] = fill
			}
		}
	}
	for _, n := range []int{63 * 64, 64 * 64, 65*64 + 7, 127 * 64, 128 * 64, 129*64 + 7, 256 << 10} {
		checkScanText(t, bytes.Repeat([]byte{'\n'}, n))
		checkScanText(t, bytes.Repeat([]byte("a\n"), n/2))
	}
}

func FuzzScanText(f *testing.F) {
	for _, tt := range jsonTests {
		f.Add([]byte(strings.Repeat(tt.line+"\n", 9)))
	}
	f.Fuzz(func(t *testing.T, s []byte) { checkScanText(t, s) })
}

// TestJSONEncoderMatchesAppendJSON encodes batches with the sinks' encoder (file names encoded once,
// offsets counted in decimal) and compares every record with AppendJSON, whose output
// encoding/json decodes back to the line (TestAppendJSON, FuzzAppendJSON).
func TestJSONEncoderMatchesAppendJSON(t *testing.T) {
	var recs []Record
	off := int64(0)
	files := []string{"/var/log/a.log", `/var/log/"b".log`}
	for i := range 3000 {
		line := []byte(fmt.Sprintf("line %d %s", i, jsonTests[i%len(jsonTests)].line))
		switch {
		case i%97 == 0:
			off = int64(i) * 1e15 // jumps: formatted from scratch
		case i%89 == 0:
			off -= 500 // goes back (another file)
		case i%83 == 0:
			off += 999_999 + 1<<20
		default:
			off += int64(len(line)) + 1
		}
		if i == 1500 {
			off = 0
		}
		recs = append(recs, Record{File: files[i/7%2], Line: line, Offset: off, plain: isPlain(line)})
	}
	recs = append(recs, Record{File: "f", Line: []byte("x"), Offset: 9_999_999_999_999_999}, Record{File: "f", Line: []byte("y"), Offset: 1e18 + 5})
	var e encoder
	var out []byte
	for i := 0; i < len(recs); i += 100 {
		out = e.appendBatch(out, recs[i:min(i+100, len(recs))])
	}
	var want []byte
	for _, r := range recs {
		want = AppendJSON(want, r)
	}
	if !bytes.Equal(out, want) {
		gl, wl := bytes.Split(out, []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := range min(len(gl), len(wl)) {
			if !bytes.Equal(gl[i], wl[i]) {
				t.Fatalf("record %d: got %s, want %s", i, gl[i], wl[i])
			}
		}
		t.Fatalf("got %d lines, want %d", len(gl), len(wl))
	}
}

func FuzzJSONEncoder(f *testing.F) {
	f.Add("/var/log/app.log", []byte("one\ntwo \"q\"\n\xff\n"), int64(0), uint16(17))
	f.Fuzz(func(t *testing.T, file string, data []byte, off int64, step uint16) {
		if off < 0 {
			off = -off
		}
		var recs []Record
		for i, line := range bytes.Split(data, []byte("\n")) {
			recs = append(recs, Record{File: file, Line: line, Offset: off, plain: isPlain(line)})
			off += int64(len(line)) + int64(step)*int64(i%3)
		}
		var e encoder
		out := e.appendBatch(nil, recs)
		dec := json.NewDecoder(bytes.NewReader(out))
		for _, r := range recs {
			var got struct {
				File   string `json:"file"`
				Line   string `json:"line"`
				Offset int64  `json:"offset"`
			}
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("invalid JSON %q: %v", out, err)
			}
			if got.Offset != r.Offset || (utf8.ValidString(file) && got.File != file) || (utf8.Valid(r.Line) && got.Line != string(r.Line)) {
				t.Fatalf("record %+v decoded as %+v", r, got)
			}
		}
		var want []byte
		for _, r := range recs {
			want = AppendJSON(want, r)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("encoder %q, AppendJSON %q", out, want)
		}
	})
}

func TestAppendUint(t *testing.T) {
	vals := []int64{0, 1, 9, 10, 99, 100, 101, 999, 1000, 9999, 10000, 10001, 99999999, 1e8, 1e8 + 1, 123456789,
		1e15, 1e16 - 1, 1e16, 1e16 + 1, math.MaxInt64, -1, -100, math.MinInt64}
	for p := int64(1); p < 1e18; p *= 10 {
		vals = append(vals, p-1, p, p+1, 2*p-1, 5*p+3)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		vals = append(vals, r.Int64N(1<<uint(r.IntN(62)+1)))
	}
	for _, v := range vals {
		if got, want := string(appendUint([]byte("x"), v)), "x"+strconv.FormatInt(v, 10); got != want {
			t.Fatalf("appendUint(%d) = %q, want %q", v, got, want)
		}
	}
}

func FuzzAppendUint(f *testing.F) {
	f.Add(int64(0))
	f.Add(int64(12345678901))
	f.Fuzz(func(t *testing.T, v int64) {
		if got, want := string(appendUint(nil, v)), strconv.FormatInt(v, 10); got != want {
			t.Fatalf("appendUint(%d) = %q, want %q", v, got, want)
		}
	})
}

// An unknown Format is a ConfigError naming it, not silently JSON.
func TestWithFormatRejectsUnknownValues(t *testing.T) {
	var buf bytes.Buffer
	ws := NewWriterSink(&buf, WithFormat(Format(7)))
	var ce *ConfigError
	if err := ws.Write(context.Background(), []Record{{File: "a", Line: []byte("x")}}); !errors.As(err, &ce) ||
		ce.Field != "WithFormat" || !strings.Contains(ce.Reason, "7") {
		t.Errorf("WriterSink.Write: %v, want a ConfigError for WithFormat naming 7", err)
	}
	if err := ws.Flush(); err != nil {
		t.Errorf("Flush: %v", err)
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %q", buf.String())
	}
	path := filepath.Join(t.TempDir(), "out")
	if fs, err := OpenFileSink(path, WithFormat(Format(-1))); !errors.As(err, &ce) || !strings.Contains(err.Error(), "unknown Format -1") {
		if fs != nil {
			fs.Close()
		}
		t.Errorf("OpenFileSink: %v, want a ConfigError naming -1", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("OpenFileSink created the file: %v", err)
	}
	for _, f := range []Format{FormatJSON, FormatRaw} {
		fs, err := OpenFileSink(path, WithFormat(f))
		if err != nil {
			t.Fatalf("format %d: %v", f, err)
		}
		fs.Close()
	}
}

// checkBlock encodes data (complete lines) as the Tailer hands it to the sinks of this package, one
// block record, and as one record per line, in both formats: the output must be the same.
func checkBlock(t *testing.T, file string, data []byte, off int64) {
	t.Helper()
	if len(data) == 0 || data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	n, flagged := scanText(data, true)
	var recs []Record
	lineOff := off
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		line = line[:len(line)-1]
		recs = append(recs, Record{File: file, Line: line, Offset: lineOff, plain: isPlain(line)})
		lineOff += int64(len(line)) + 1
	}
	block := []Record{{File: file, Line: data[:len(data)-1], Offset: off, plain: !flagged, lines: n}}
	if got := recordLines(block); got != len(recs) {
		t.Fatalf("block of %q: %d lines, want %d", data, got, len(recs))
	}
	for _, f := range []Format{FormatJSON, FormatRaw} {
		e := newEncoder(f)
		want := e.appendBatch(nil, recs)
		e = newEncoder(f)
		if got := e.appendBatch(nil, block); !bytes.Equal(got, want) {
			t.Fatalf("format %d, block of %q:\ngot  %q\nwant %q", f, data, got, want)
		}
	}
}

func TestBlockEncodesLikeItsLines(t *testing.T) {
	var data []byte
	for i := range 3000 {
		data = fmt.Appendf(data, "line %d %s\n", i, jsonTests[i%len(jsonTests)].line)
	}
	checkBlock(t, "/var/log/app.log", data, 0)
	checkBlock(t, `/var/log/"q".log`, data, 99_999_990)
	checkBlock(t, "f", []byte("\n\n\n"), 7)
	checkBlock(t, "f", []byte("one"), 7)
}

func FuzzBlock(f *testing.F) {
	f.Add("/var/log/app.log", []byte("one\ntwo \"q\"\n\nthree\n"), int64(0))
	f.Fuzz(func(t *testing.T, file string, data []byte, off int64) {
		if off < 0 || off > 1<<50 {
			off = 0
		}
		checkBlock(t, file, data, off)
	})
}

// linesWithinRef is linesWithin line by line.
func linesWithinRef(s []byte, max int) bool {
	for _, line := range bytes.Split(s, []byte("\n")) {
		if len(line) > max {
			return false
		}
	}
	return true
}

func FuzzLinesWithin(f *testing.F) {
	f.Add([]byte("a\nbb\nccc\n"), uint8(2))
	f.Add([]byte("a\nbb\nccc\n"), uint8(3))
	f.Add([]byte("\n\n"), uint8(0))
	f.Fuzz(func(t *testing.T, s []byte, max uint8) {
		if len(s) == 0 || s[len(s)-1] != '\n' {
			s = append(s, '\n')
		}
		if got, want := linesWithin(s, int(max)), linesWithinRef(s, int(max)); got != want {
			t.Fatalf("linesWithin(%q, %d) = %v, want %v", s, max, got, want)
		}
	})
}
