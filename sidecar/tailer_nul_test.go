package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
)

// recordingSink keeps the lines it is given with their offsets. It takes no blocks: the Tailer hands
// it line by line, on the path of sinks from outside the package.
type recordingSink struct {
	got []shipped
}

func (s *recordingSink) Write(_ context.Context, recs []Record) error {
	for _, r := range recs {
		if r.lines <= 1 { // one line or joined record
			s.got = append(s.got, shipped{File: r.File, Line: string(r.Line), Offset: r.Offset})
			continue
		}
		off := r.Offset
		for l := range bytes.SplitSeq(r.Line, []byte("\n")) {
			s.got = append(s.got, shipped{File: r.File, Line: string(l), Offset: off})
			off += int64(len(l)) + 1
		}
	}
	return nil
}

// blockRecordingSink is a recordingSink that takes blocks of lines as the sinks of this package do,
// in their raw or their JSON format (see blockSink).
type blockRecordingSink struct {
	recordingSink
	raw bool
}

func (s *blockRecordingSink) rawOutput() bool { return s.raw }

// recordingTailer returns a Tailer of e's files *.log with the line limit maxLine, reads of chunk
// bytes and log, and the lines it ships: to a sink taking blocks of lines in the raw or JSON format
// (kind "raw", "json"), or line by line (any other kind).
func recordingTailer(t *testing.T, e *tailEnv, kind string, maxLine, chunk int, log *zap.Logger) (*Tailer, *recordingSink) {
	t.Helper()
	rec := &recordingSink{}
	var sink Sink = rec
	if kind == "raw" || kind == "json" {
		b := &blockRecordingSink{raw: kind == "raw"}
		rec, sink = &b.recordingSink, b
	}
	tl, err := NewTailer([]string{filepath.Join(e.logs, "*.log")}, sink, WithMaxLineBytes(maxLine),
		WithReadChunkBytes(chunk), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	return tl, rec
}

// linesAt returns the lines ls as a file holds them from off on, each with its offset.
func linesAt(file string, off int64, ls ...string) []shipped {
	var out []shipped
	for _, l := range ls {
		out = append(out, shipped{File: file, Line: l, Offset: off})
		off += int64(len(l)) + 1
	}
	return out
}

// nulSkips returns the log entries of the NUL runs skipped.
func nulSkips(logs *observer.ObservedLogs) []map[string]any {
	var out []map[string]any
	for _, e := range logs.FilterMessage("skip NUL bytes before a line").All() {
		out = append(out, e.ContextMap())
	}
	return out
}

// TestNULRunBeforeNewLinesIsSkipped: a writer that reserved space ahead of its lines (fallocate,
// ftruncate up, log4j2's memory-mapped appender) and crashed leaves the space it never wrote NUL;
// restarted, it appends after it. The NUL bytes then start the first line appended: the Tailer read
// them as part of it and skipped it as binary (a run shorter than the line limit), as over the limit
// (a longer one), or, for a run longer than a read, skipped the run as an over-long line up to the
// first newline after it. Either way the first line after the run was lost. Now the NUL bytes are
// skipped and every line after them is shipped once, at its offset, on the Tailer's block path (raw
// and JSON) and line by line, whether the Tailer reads the run before the lines are appended (it is
// then left unread: reserved space) or with them.
func TestNULRunBeforeNewLinesIsSkipped(t *testing.T) {
	limits := []struct {
		name        string
		line, chunk int
	}{
		{"default limits", 64 << 10, 256 << 10},
		{"small limits", 256, 4096},
	}
	for _, lim := range limits {
		for _, run := range []struct {
			name string
			n    int
		}{
			{"shorter than a line", 50},
			{"longer than a line", lim.line + 100},
			{"longer than two reads", 2*lim.chunk + 1234},
		} {
			for _, sink := range []string{"raw", "json", "line by line"} {
				for _, how := range []string{"ftruncate", "written"} {
					for _, readFirst := range []bool{false, true} {
						name := fmt.Sprintf("%s/%s/%s/%s/read before the lines %v", lim.name, run.name, sink, how, readFirst)
						t.Run(name, func(t *testing.T) {
							testNULRunBeforeNewLines(t, lim.line, lim.chunk, run.n, sink, how, readFirst)
						})
					}
				}
			}
		}
	}
}

func testNULRunBeforeNewLines(t *testing.T, maxLine, chunk, nuls int, sinkKind, how string, readFirst bool) {
	e, f, a, size := newLinesEnv(t)
	app := f.Name()
	core, logs := observer.New(zapcore.InfoLevel)
	tl, rec := recordingTailer(t, e, sinkKind, maxLine, chunk, zap.New(core))
	if tl.block != (sinkKind != "line by line") || tl.raw != (sinkKind == "raw") {
		t.Fatalf("sink %s: block %v, raw %v", sinkKind, tl.block, tl.raw)
	}
	switch how {
	case "ftruncate":
		truncateUp(t, f, size, int64(nuls))
	default:
		pwrite(t, f, size, make([]byte, nuls))
	}
	rs, step := steppedTailer(t, tl)
	defer stopStepped(tl, rs)
	if readFirst {
		step()
		// NUL bytes up to the file's end: reserved space, left unread.
		for _, tf := range rs.files {
			if read := tf.off + int64(len(tf.partial)); read != size {
				t.Fatalf("read up to offset %d of NUL bytes at the end, want %d (the end of the lines)", read, size)
			}
		}
	}
	b := []string{"b-0000 first line after the restart", "b-0001", "b-0002"}
	appendFile(t, app, b...)
	step()
	step()
	want := append(linesAt(app, 0, a...), linesAt(app, size+int64(nuls), b...)...)
	if diff := cmp.Diff(want, rec.got); diff != "" {
		t.Fatalf("shipped (-want +got):\n%s", diff)
	}
	// The lines after them: each once.
	c := numbered("c", 0, 3)
	appendFile(t, app, c...)
	step()
	want = append(want, linesAt(app, size+int64(nuls)+int64(len(strings.Join(b, "\n"))+1), c...)...)
	if diff := cmp.Diff(want, rec.got); diff != "" {
		t.Errorf("shipped after more lines (-want +got):\n%s", diff)
	}
	for reason, n := range map[string]float64{"nul": 1, "binary": 0, "too_long": 0} {
		if got := counterValue(tl.m.skipped.WithLabelValues(reason)); got != n {
			t.Errorf("skipped{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	wantLog := []map[string]any{{"file": app, "offset": size, "bytes": int64(nuls)}}
	if diff := cmp.Diff(wantLog, nulSkips(logs)); diff != "" {
		t.Errorf("logged NUL runs (-want +got):\n%s", diff)
	}
}

// TestNULRunCheckpointAndRestart: the checkpoint moves past the NUL bytes the Tailer skipped, also
// in the middle of a run longer than a read, and a restart from it ships every line after the run
// once, and no line before it again, through a FileSink in both formats.
func TestNULRunCheckpointAndRestart(t *testing.T) {
	const chunk = 256 << 10
	for _, format := range []Format{FormatJSON, FormatRaw} {
		t.Run(fmt.Sprint("format ", format), func(t *testing.T) {
			e, f, a, size := newLinesEnv(t)
			app := f.Name()
			const nuls = 2*chunk + 1234
			truncateUp(t, f, size, nuls)
			b := numbered("b", 0, 5)
			appendFile(t, app, b...)
			tailer := func() *Tailer {
				sink, err := OpenFileSink(e.out, WithFormat(format))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { sink.Close() })
				tl, err := NewTailer([]string{filepath.Join(e.logs, "*.log")}, sink, WithCheckpoint(e.state),
					WithPollInterval(20*time.Millisecond), WithCommitInterval(10*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				return tl
			}
			// One read: the lines a and the start of the run, then a commit, as at a crash.
			tl := tailer()
			rs, _ := steppedTailer(t, tl)
			tf := rs.order[0]
			if _, err := tl.readOnce(context.Background(), rs, tf); err != nil {
				t.Fatal(err)
			}
			stopStepped(tl, rs)
			st, _, err := loadCheckpoint(e.state)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Files) != 1 || st.Files[0].Offset != chunk {
				t.Fatalf("checkpoint %+v, want the offset %d (the end of the first read, inside the run)", st.Files, chunk)
			}
			c := numbered("c", 0, 5)
			want := append(append(append([]string{}, a...), b...), c...)
			shipped := func() []string {
				if format == FormatJSON {
					return lines(readShipped(t, e.out))
				}
				data, err := os.ReadFile(e.out)
				if err != nil {
					t.Fatal(err)
				}
				return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			}
			for i, more := range [][]string{nil, c} {
				appendFile(t, app, more...)
				stop := runTailer(t, tailer())
				n := len(a) + len(b) + len(more)
				var got []string
				await.True(t, fmt.Sprintf("%d lines shipped", n), 30*time.Second, func() bool {
					got = shipped()
					return len(got) >= n
				})
				stop()
				if diff := cmp.Diff(want[:n], shipped()); diff != "" {
					t.Fatalf("after restart %d: shipped (-want +got):\n%s", i+1, diff)
				}
			}
			if format == FormatJSON {
				off := size + nuls
				got := readShipped(t, e.out)[len(a):]
				if diff := cmp.Diff(append(linesAt(app, off, b...), linesAt(app, off+int64(7*len(b)), c...)...), got); diff != "" {
					t.Errorf("offsets (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestNULRunEndsMultilineRecord: with WithMultiline, a run of NUL bytes before a line ends the record
// being joined, as a line matching the start pattern does, and the line after it starts a record:
// what a writer appends after a crash is not a continuation of its record from before the crash. The
// line after the run was lost (read with the run as a binary line or one over the limit).
func TestNULRunEndsMultilineRecord(t *testing.T) {
	for _, nuls := range []int{1000, 600 << 10} {
		for _, readFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/read before the run %v", nuls, readFirst), func(t *testing.T) {
				e := newTailEnv(t)
				app := filepath.Join(e.logs, "app.log")
				appendFile(t, app, "ERROR a", "  at x")
				tl := e.tailer(t, WithMultiline(regexp.MustCompile(`^\S`), time.Nanosecond))
				rs, step := steppedTailer(t, tl)
				if readFirst {
					step()
				}
				f, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.Write(append(make([]byte, nuls), "  at y\nINFO b\n  at z\n"...)); err != nil {
					t.Fatal(err)
				}
				f.Close()
				step()
				for _, tf := range rs.files {
					tf.lastData = time.Now().Add(-time.Second)
				}
				tl.idle(context.Background(), rs) // ships the last record
				stopStepped(tl, rs)
				got := readShipped(t, e.out)
				want := []shipped{
					{File: app, Line: "ERROR a\n  at x", Offset: 0},
					{File: app, Line: "  at y", Offset: 15 + int64(nuls)},
					{File: app, Line: "INFO b\n  at z", Offset: 22 + int64(nuls)},
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("shipped (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestNULBytesInsideLinesStillSkipped: only NUL bytes at a line's start are skipped. A line with NUL
// bytes after other bytes is binary and skipped, also when the NUL bytes run on for more than a read
// (skipped as over the limit), and an empty line after NUL bytes is shipped empty; NUL bytes at the
// file's end stay unread.
func TestNULBytesInsideLinesStillSkipped(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	content := "a\n" + "\x00\x00\x00b\n" + "c\x00d\n" + "e\x00\x00\x00\n" + "\x00\x00\n" +
		"f" + strings.Repeat("\x00", 10000) + "g\n" + "h\n" + "\x00\x00\x00"
	if err := os.WriteFile(app, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tl := e.tailer(t, WithMaxLineBytes(256), WithReadChunkBytes(4096))
	rs, step := steppedTailer(t, tl)
	step()
	stopStepped(tl, rs)
	want := []shipped{
		{File: app, Line: "a", Offset: 0},
		{File: app, Line: "b", Offset: 5},
		{File: app, Line: "", Offset: 18},
		{File: app, Line: "h", Offset: int64(strings.Index(content, "h\n"))},
	}
	if diff := cmp.Diff(want, readShipped(t, e.out)); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
	for reason, n := range map[string]float64{"nul": 2, "binary": 2, "too_long": 1} {
		if got := counterValue(tl.m.skipped.WithLabelValues(reason)); got != n {
			t.Errorf("skipped{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	for _, tf := range rs.files {
		if read, end := tf.off+int64(len(tf.partial)), int64(len(content)-3); read != end {
			t.Errorf("read up to offset %d, want %d (before the NUL bytes at the end)", read, end)
		}
	}
}

// TestUnwrittenWithoutSizeLeavesNULBytes: when the file's size cannot be had after a full read that
// ended in NUL bytes, what follows them is not known, so they stay unread like reserved space (the
// Tailer skips NUL bytes it reads at a line's start, which a writer may still fill). They were kept.
func TestUnwrittenWithoutSizeLeavesNULBytes(t *testing.T) {
	e := newTailEnv(t)
	tl := e.tailer(t, WithMaxLineBytes(256), WithReadChunkBytes(4096))
	rs := tl.newRun()
	f, err := os.Create(filepath.Join(e.dir, "closed"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // Stat fails
	clear(rs.buf)
	n := copy(rs.buf, "a-0000\n")
	tf := &tfile{f: f, pendOff: -1}
	if got := unwritten(rs, tf, 0, len(rs.buf)); got != n {
		t.Errorf("unwritten = %d, want %d (the bytes before the NUL bytes)", got, n)
	}
}

// TestNULRunEndingAtReadEndIsLogged: a run of NUL bytes before a line that ends exactly at a read's
// end (the next read starts with the line after it) is counted and logged once, with its offset and
// length, like any other run, also when it spans reads. Nothing ended such a run: it was neither
// counted nor logged.
func TestNULRunEndingAtReadEndIsLogged(t *testing.T) {
	const chunk = 4096
	for _, reads := range []int{1, 2} {
		t.Run(fmt.Sprint("reads ", reads), func(t *testing.T) {
			e := newTailEnv(t)
			app := filepath.Join(e.logs, "app.log")
			a, b := numbered("a", 0, 10), numbered("b", 0, 2)
			head := strings.Join(a, "\n") + "\n"
			content := head + strings.Repeat("\x00", reads*chunk-len(head)) + strings.Join(b, "\n") + "\n"
			if err := os.WriteFile(app, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zapcore.InfoLevel)
			tl := e.tailer(t, WithMaxLineBytes(256), WithReadChunkBytes(chunk), WithLogger(zap.New(core)))
			rs, step := steppedTailer(t, tl)
			step()
			stopStepped(tl, rs)
			want := append(linesAt(app, 0, a...), linesAt(app, int64(reads*chunk), b...)...)
			if diff := cmp.Diff(want, readShipped(t, e.out)); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
			if n := counterValue(tl.m.skipped.WithLabelValues("nul")); n != 1 {
				t.Errorf("skipped{reason=nul} = %v, want 1", n)
			}
			wantLog := []map[string]any{{"file": app, "offset": int64(len(head)), "bytes": int64(reads*chunk - len(head))}}
			if diff := cmp.Diff(wantLog, nulSkips(logs)); diff != "" {
				t.Errorf("logged NUL runs (-want +got):\n%s", diff)
			}
			if tf := rs.order[0]; tf.nulTo != 0 {
				t.Errorf("run still open up to offset %d after it ended", tf.nulTo)
			}
		})
	}
}
