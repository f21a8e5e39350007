package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
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
