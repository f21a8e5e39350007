package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"

	"github.com/podblocks/podblocks/internal/await"
)

// shipped is one decoded output line.
type shipped struct {
	File   string `json:"file"`
	Line   string `json:"line"`
	Offset int64  `json:"offset"`
}

// readShipped decodes a JSON-lines sink file; a line that is not valid JSON fails the test. A last
// line without its newline is one the sink is writing while the test polls (a read of a regular file
// may see part of a concurrent write): it is left for the next read. Tests compare every line
// shipped, so a sink that leaves a line unfinished still fails them.
func readShipped(t *testing.T, path string) []shipped {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	data = data[:bytes.LastIndexByte(data, '\n')+1]
	var out []shipped
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s shipped
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("sink line %d %q: %v", len(out)+1, sc.Text(), err)
		}
		out = append(out, s)
	}
	return out
}

func lines(ss []shipped) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Line
	}
	return out
}

// runTailer starts tl and returns a stop function that ends it and checks its result.
func runTailer(t *testing.T, tl *Tailer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	select {
	case <-tl.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("tailer not ready")
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

type tailEnv struct {
	dir, logs, out, state string
	sink                  *FileSink
}

func newTailEnv(t *testing.T) *tailEnv {
	t.Helper()
	dir := t.TempDir()
	e := &tailEnv{dir: dir, logs: filepath.Join(dir, "logs"), out: filepath.Join(dir, "out.jsonl"), state: filepath.Join(dir, "state.json")}
	if err := os.Mkdir(e.logs, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *tailEnv) tailer(t *testing.T, opts ...Option) *Tailer {
	t.Helper()
	sink, err := OpenFileSink(e.out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	e.sink = sink
	opts = append([]Option{WithLogger(zaptest.NewLogger(t)), WithCheckpoint(e.state), WithPollInterval(20 * time.Millisecond), WithCommitInterval(10 * time.Millisecond)}, opts...)
	tl, err := NewTailer([]string{filepath.Join(e.logs, "*.log")}, sink, opts...)
	if err != nil {
		t.Fatal(err)
	}
	lastTailer = tl
	return tl
}

func appendFile(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%04d", prefix, i))
	}
	return out
}

func (e *tailEnv) waitLines(t *testing.T, n int) []shipped {
	t.Helper()
	var got []shipped
	await.True(t, fmt.Sprintf("%d shipped lines", n), 30*time.Second, func() bool {
		got = readShipped(t, e.out)
		return len(got) >= n
	})
	return got
}

func TestNewTailerValidates(t *testing.T) {
	sink := NewWriterSink(&bytes.Buffer{})
	tests := []struct {
		name  string
		globs []string
		sink  Sink
		opts  []Option
		want  string
	}{
		{"no globs", nil, sink, nil, ErrNoGlobs.Error()},
		{"nil sink", []string{"/x/*.log"}, nil, nil, ErrNilSink.Error()},
		{"wildcard dir", []string{"/x/*/a.log"}, sink, nil, "config globs"},
		{"bad pattern", []string{"/x/[.log"}, sink, nil, "config globs"},
		{"chunk too small", []string{"/x/*.log"}, sink, []Option{WithMaxLineBytes(100), WithReadChunkBytes(100)}, "WithReadChunkBytes"},
		{"zero poll", []string{"/x/*.log"}, sink, []Option{WithPollInterval(0)}, "WithPollInterval"},
		{"negative deleted grace", []string{"/x/*.log"}, sink, []Option{WithDeletedGrace(-time.Second)}, "WithDeletedGrace"},
		{"unknown format", []string{"/x/*.log"}, NewWriterSink(&bytes.Buffer{}, WithFormat(7)), nil, "config WithFormat: unknown Format 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTailer(tt.globs, tt.sink, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTailerRenameRotationReadsOldFileToItsEnd(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, numbered("a", 0, 10)...)
	stop := runTailer(t, e.tailer(t))
	e.waitLines(t, 10)

	// The writer keeps its descriptor across the rename and writes a few more lines to the old file.
	old, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(app, app+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, app, numbered("b", 0, 5)...)
	await.True(t, "rename noticed", 10*time.Second, func() bool {
		return counterValue(e.tailerMetricsRotations("rename")) > 0
	})
	for _, l := range numbered("a", 10, 13) {
		fmt.Fprintln(old, l)
	}
	old.Close()
	got := e.waitLines(t, 18)
	stop()

	want := append(numbered("a", 0, 13), numbered("b", 0, 5)...)
	if diff := cmp.Diff(sortedCopy(want), sortedCopy(lines(got))); diff != "" {
		t.Errorf("shipped lines (-want +got):\n%s", diff)
	}
	for _, s := range got {
		if strings.HasPrefix(s.Line, "a-001") && s.File != app+".1" {
			t.Errorf("line %q from %q, want it from the rotated name %q", s.Line, s.File, app+".1")
		}
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
	return c
}

// TestTailerRestartFindsRotationsWhileDown restarts the Tailer after two rotations, long after
// them and right after them. Right after, the rotated app.log.1 is young and small, so its discovery
// waits (it may be a copy still being written): the new app.log used to be read meanwhile, and its
// lines were shipped before app.log.1's.
func TestTailerRestartFindsRotationsWhileDown(t *testing.T) {
	for _, tc := range []struct {
		name  string
		apart time.Duration // between the files' mtimes, the last that long before the restart
	}{
		{"settled", time.Second},
		{"right after", 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTailEnv(t)
			app := filepath.Join(e.logs, "app.log")
			// A rotated file from before the first start is history: it is not shipped.
			appendFile(t, app+".9", "history")
			appendFile(t, app, numbered("l", 0, 5)...)
			stop := runTailer(t, e.tailer(t))
			e.waitLines(t, 5)
			stop()
			e.sink.Close()

			// While the tailer is down: more lines, then two rotations with new files in between.
			appendFile(t, app, numbered("l", 5, 8)...)
			mustRename(t, app, app+".1")
			appendFile(t, app, numbered("l", 8, 12)...)
			mustRename(t, app+".1", app+".2")
			mustRename(t, app, app+".1")
			appendFile(t, app, numbered("l", 12, 15)...)
			// mtimes order the files oldest first even on coarse-grained clocks.
			now := time.Now()
			for i, p := range []string{app + ".2", app + ".1", app} {
				mtime := now.Add(time.Duration(i-3) * tc.apart)
				if err := os.Chtimes(p, mtime, mtime); err != nil {
					t.Fatal(err)
				}
			}

			stop = runTailer(t, e.tailer(t))
			e.waitLines(t, 15)
			time.Sleep(100 * time.Millisecond) // let a duplicate show up, if there were one
			got := readShipped(t, e.out)
			stop()
			if diff := cmp.Diff(numbered("l", 0, 15), lines(got)); diff != "" {
				t.Errorf("shipped lines, in order (-want +got):\n%s", diff)
			}
		})
	}
}

// A sibling that never settles (dated in the future, so always young) holds its active file back
// for siblingHold at most.
func TestTailerSiblingHoldsTheActiveFileForALimitedTime(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, "l0")
	stop := runTailer(t, e.tailer(t))
	defer stop()
	e.waitLines(t, 1)

	appendFile(t, app+".1", "odd")
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(app+".1", future, future); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a scan defers it
	began := time.Now()
	appendFile(t, app, "l1")
	e.waitLines(t, 2)
	if d := time.Since(began); d > siblingHold+5*time.Second {
		t.Errorf("active file's line shipped %v after it was written; want siblingHold (%v) at most, a little more", d, siblingHold)
	}
	if diff := cmp.Diff([]string{"l0", "l1"}, lines(readShipped(t, e.out))); diff != "" {
		t.Errorf("shipped lines (-want +got):\n%s", diff)
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func TestTailerReusedInodeToldApartByFingerprint(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, "new-0", "new-1")
	fi, err := os.Stat(app)
	if err != nil {
		t.Fatal(err)
	}
	id := statID(t, app, fi)
	// The checkpoint says this inode was another file, read up to offset 6.
	other := strings.NewReader("old-0\nold-1\n")
	fp, _ := fingerprint(other, 12)
	err = writeCheckpoint(e.state, checkpointState{Version: 1, Files: []checkpointEntry{{
		Path: app, Dev: id.dev, Ino: id.ino, FP: fp, FPLen: 12, Offset: 6,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runTailer(t, e.tailer(t))
	got := e.waitLines(t, 2)
	stop()
	if diff := cmp.Diff([]string{"new-0", "new-1"}, lines(got)); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

func TestTailerTruncationRestartsAtZero(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, numbered("x", 0, 20)...)
	stop := runTailer(t, e.tailer(t))
	e.waitLines(t, 20)
	if err := os.Truncate(app, 0); err != nil {
		t.Fatal(err)
	}
	await.True(t, "truncation noticed", 10*time.Second, func() bool {
		return counterValue(e.tailerMetricsRotations("truncate")) > 0
	})
	appendFile(t, app, "y-0")
	got := e.waitLines(t, 21)
	stop()
	if diff := cmp.Diff(append(numbered("x", 0, 20), "y-0"), lines(got)); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

// tailerMetricsRotations reads the rotation counter of the most recent tailer built by e.
func (e *tailEnv) tailerMetricsRotations(kind string) prometheus.Counter {
	return lastTailer.m.rotations.WithLabelValues(kind)
}

var lastTailer *Tailer

func TestTailerSkipsBadInputAndGoesOn(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	if err := os.Mkdir(filepath.Join(e.logs, "dir.log"), 0o755); err != nil {
		t.Fatal(err)
	}
	mkfifo(t, filepath.Join(e.logs, "fifo.log"))
	appendFile(t, app, "ok-0", strings.Repeat("z", 300), "ok-1", "bin\x00ary", "bad\xffutf8", "ok-2")
	// An over-long line without a newline yet, finished later.
	f, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, strings.Repeat("w", 250))
	reg := prometheus.NewRegistry()
	tl := e.tailer(t, WithMaxLineBytes(100), WithReadChunkBytes(128), WithRegisterer(reg))
	stop := runTailer(t, tl)
	e.waitLines(t, 3)
	fmt.Fprint(f, strings.Repeat("w", 250)+"\nok-3\n")
	f.Close()
	got := e.waitLines(t, 4)
	stop()
	if diff := cmp.Diff([]string{"ok-0", "ok-1", "ok-2", "ok-3"}, lines(got)); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
	for reason, want := range map[string]float64{"too_long": 2, "binary": 2, "unreadable": 2} {
		if got := counterValue(tl.m.skipped.WithLabelValues(reason)); got != want {
			t.Errorf("skipped{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

func TestTailerMultiline(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, "2026 start one", "  at a()", "  at b()", "2026 start two", "2026 three", "  at c()")
	tl := e.tailer(t, WithMultiline(regexp.MustCompile(`^\d{4} `), 50*time.Millisecond))
	stop := runTailer(t, tl)
	got := e.waitLines(t, 3)
	stop()
	want := []string{"2026 start one\n  at a()\n  at b()", "2026 start two", "2026 three\n  at c()"}
	if diff := cmp.Diff(want, lines(got)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestTailerWithoutWatchPolls(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	stop := runTailer(t, e.tailer(t, WithoutWatch()))
	appendFile(t, app, "polled")
	got := e.waitLines(t, 1)
	stop()
	if diff := cmp.Diff([]string{"polled"}, lines(got)); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

func TestTailerBadCheckpointIsAnError(t *testing.T) {
	e := newTailEnv(t)
	if err := os.WriteFile(e.state, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := e.tailer(t).Run(context.Background())
	if !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("Run = %v, want ErrBadCheckpoint", err)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func TestTailerSeveralGlobsAndDirectories(t *testing.T) {
	e := newTailEnv(t)
	other := filepath.Join(e.dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	sink, err := OpenFileSink(e.out)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	tl, err := NewTailer([]string{filepath.Join(e.logs, "*.log"), filepath.Join(other, "*.txt")}, sink,
		WithCheckpoint(e.state), WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(e.logs, "a.log"), "a")
	appendFile(t, filepath.Join(e.logs, "ignored.txt"), "not matched")
	appendFile(t, filepath.Join(other, "b.txt"), "b")
	stop := runTailer(t, tl)
	appendFile(t, filepath.Join(other, "c.txt"), "c")
	e.waitLines(t, 3)
	time.Sleep(50 * time.Millisecond) // a duplicate, if there were one, would show now
	got := readShipped(t, e.out)
	stop()
	if diff := cmp.Diff([]string{"a", "b", "c"}, sortedCopy(lines(got))); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

// fileState is the Statusz state of path ("" when the Tailer does not track it).
func fileState(tl *Tailer, path string) string { return statuszCell(tl, path, 3) }

// delivered is the Statusz delivered offset of path ("" when the Tailer does not track it).
func delivered(tl *Tailer, path string) string { return statuszCell(tl, path, 2) }

// statuszCell is column col of path's Statusz row ("" when the Tailer does not track it).
func statuszCell(tl *Tailer, path string, col int) string {
	_, _, rows := tl.Statusz()
	for _, r := range rows {
		if r[0] == path {
			return r[col]
		}
	}
	return ""
}

// deletedWhileOpen writes first to a new app.log through a descriptor it keeps open, starts a Tailer
// with opts, waits until first is shipped and deletes app.log. It returns the writer's descriptor.
func (e *tailEnv) deletedWhileOpen(t *testing.T, first string, opts ...Option) (tl *Tailer, app string, w *os.File, stop func()) {
	t.Helper()
	app = filepath.Join(e.logs, "app.log")
	w, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	fmt.Fprintln(w, first)
	tl = e.tailer(t, opts...)
	stop = runTailer(t, tl)
	e.waitLines(t, 1)
	if err := os.Remove(app); err != nil {
		t.Fatal(err)
	}
	return tl, app, w, stop
}

// deletedWithUnreadLines is deletedWhileOpen with "before" and no watch, poll or grace period
// ending during the test, and 20 lines and a last one without a newline written after the
// deletion: only the final read of Run can see them. want is every line.
func (e *tailEnv) deletedWithUnreadLines(t *testing.T) (tl *Tailer, app string, w *os.File, stop func(), want []string) {
	t.Helper()
	tl, app, w, stop = e.deletedWhileOpen(t, "before", WithoutWatch(), WithPollInterval(time.Hour), WithDeletedGrace(time.Hour))
	want = append([]string{"before"}, numbered("after", 0, 20)...)
	for _, l := range want[1:] {
		fmt.Fprintln(w, l)
	}
	fmt.Fprint(w, "last, without a newline")
	return tl, app, w, stop, append(want, "last, without a newline")
}

// A writer that holds its log open goes on appending after the file was deleted (a rotation that
// deletes instead of renaming, or a cleanup racing the writer): only the Tailer's descriptor still
// sees those lines, so it must keep reading the deleted file, not read it to its end once and drop it.
func TestTailerReadsDeletedFileWhileTheWriterAppends(t *testing.T) {
	e := newTailEnv(t)
	tl, app, w, stop := e.deletedWhileOpen(t, "before") // default grace
	// Wait until the Tailer has seen the deletion: from then on the lines below are in no directory.
	await.True(t, "deletion noticed", 10*time.Second, func() bool { return fileState(tl, app) != "active" })
	want := []string{"before"}
	for i := range 50 {
		l := fmt.Sprintf("after-%02d", i)
		fmt.Fprintln(w, l)
		want = append(want, l)
		time.Sleep(10 * time.Millisecond) // the writes span ~25 polls of 20ms
	}
	got := e.waitLines(t, len(want))
	if st := fileState(tl, app); st != "deleted" {
		t.Errorf("state %q, want deleted (within the default grace period)", st)
	}
	stop()
	if diff := cmp.Diff(want, lines(got)); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

// When Run ends while a deleted file may still have unread lines, it reads them first: no restart
// can open the file again. The checkpoint marks the entry so that a restart never resumes it.
func TestTailerShipsDeletedFileWhenStopped(t *testing.T) {
	e := newTailEnv(t)
	// No inotify and no poll during the test: only the final read can see what follows.
	_, app, w, stop, want := e.deletedWithUnreadLines(t)
	stop()
	if diff := cmp.Diff(want, lines(readShipped(t, e.out))); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
	fi, err := w.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := loadCheckpoint(e.state)
	if err != nil {
		t.Fatal(err)
	}
	id := statID(t, app, fi)
	wantCP := []checkpointEntry{{Path: app, Dev: id.dev, Ino: id.ino, Offset: fi.Size(), Unlinked: true, Size: fi.Size()}}
	if diff := cmp.Diff(wantCP, st.Files, cmpopts.IgnoreFields(checkpointEntry{}, "FP", "FPLen")); diff != "" {
		t.Errorf("checkpoint (-want +got):\n%s", diff)
	}
}

// After the grace period without growth, a deleted file's last line is shipped even without a
// newline and its descriptor is closed (its disk space is freed only then).
func TestTailerClosesDeletedFileAfterGrace(t *testing.T) {
	e := newTailEnv(t)
	tl, app, w, stop := e.deletedWhileOpen(t, "a", WithDeletedGrace(300*time.Millisecond))
	fmt.Fprint(w, "b\nc")
	got := e.waitLines(t, 3)
	if diff := cmp.Diff([]string{"a", "b", "c"}, lines(got)); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
	await.True(t, "deleted file dropped", 10*time.Second, func() bool { return fileState(tl, app) == "" })
	if n := openDescriptorsOf(t, app); n != 1 { // the writer's
		t.Errorf("%d descriptors open on %s, want 1 (the writer's)", n, app)
	}
	stop()
}

// openDescriptorsOf counts this process' descriptors on the deleted file path.
func openDescriptorsOf(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, de := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name())); err == nil && l == path+" (deleted)" {
			n++
		}
	}
	return n
}

// A checkpoint entry of a file that was deleted while open is never resumed: its inode may hold a
// new file by now, even one starting with the same bytes, and that file is read from its start.
func TestTailerRestartNeverResumesDeletedFileEntry(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, numbered("n", 0, 6)...)
	data, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(app)
	if err != nil {
		t.Fatal(err)
	}
	id := statID(t, app, fi)
	fp, _ := fingerprint(bytes.NewReader(data), int64(len(data)))
	// What an earlier run left: a deleted file with this inode and these first bytes, read to the
	// middle of its third line.
	st := checkpointState{Version: 1, Files: []checkpointEntry{{Path: app, Dev: id.dev, Ino: id.ino,
		FP: fp, FPLen: int64(len(data)), Offset: 15, Unlinked: true}}}
	if err := writeCheckpoint(e.state, st); err != nil {
		t.Fatal(err)
	}
	stop := runTailer(t, e.tailer(t))
	got := e.waitLines(t, 6)
	stop()
	if diff := cmp.Diff(numbered("n", 0, 6), lines(got)); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

// A raw sink makes the Tailer check chunks only for binary lines instead of for JSON escaping; it
// must skip exactly the lines the JSON path skips (NUL bytes, invalid UTF-8, over the limit) and
// pass every other line as it is, in chunks of plain and of non-plain text alike.
func TestTailerRawSkipsWhatJSONSkips(t *testing.T) {
	// Blocks of several 4 KiB chunks: good lines only (plain and text JSON must escape), then good
	// lines with one kind of bad line among them, so that each check is needed on its own.
	var content, want []string
	for block, bad := range []string{"", "nul \x00", "", "bad utf-8 \xff\xfe", "", strings.Repeat("long ", 30), ""} {
		for i := range 400 {
			var l string
			switch {
			case bad != "" && i%9 == 4:
				content = append(content, fmt.Sprintf("%d %s", i, bad))
				continue
			case i%3 == 0:
				l = fmt.Sprintf("plain %d %d", block, i)
			case i%3 == 1:
				l = fmt.Sprintf(`quoted "%d %d" \ tab\t ünï`, block, i)
			default:
				l = fmt.Sprintf("日本 %d %d", block, i)
			}
			content = append(content, l)
			want = append(want, l)
		}
	}
	ship := func(format Format) []string {
		e := newTailEnv(t)
		appendFile(t, filepath.Join(e.logs, "app.log"), content...)
		sink, err := OpenFileSink(e.out, WithFormat(format))
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		tl, err := NewTailer([]string{filepath.Join(e.logs, "*.log")}, sink, WithMaxLineBytes(100), WithReadChunkBytes(4096),
			WithPollInterval(20*time.Millisecond), WithLogger(zaptest.NewLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		if tl.raw != (format == FormatRaw) {
			t.Fatalf("format %d: raw check %v", format, tl.raw)
		}
		stop := runTailer(t, tl)
		var got []string
		await.True(t, "every line seen", 30*time.Second, func() bool {
			return counterValue(tl.m.skipped.WithLabelValues("binary"))+counterValue(tl.m.skipped.WithLabelValues("too_long"))+
				counterValue(tl.m.lines) == float64(len(content))
		})
		stop()
		data, err := os.ReadFile(e.out)
		if err != nil {
			t.Fatal(err)
		}
		if format == FormatRaw {
			got = strings.SplitAfter(string(data), "\n")
			got = got[:len(got)-1] // after the last newline
			for i := range got {
				got[i] = strings.TrimSuffix(got[i], "\n")
			}
		} else {
			got = lines(readShipped(t, e.out))
		}
		return got
	}
	if diff := cmp.Diff(want, ship(FormatJSON)); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, ship(FormatRaw)); diff != "" {
		t.Errorf("raw (-want +got):\n%s", diff)
	}
}

// TestStartIsComparesTheFingerprintedBytes checks the start-of-file check that runs after every
// read: it compares the bytes the fingerprint covers directly, and a file restored from a checkpoint
// (only the hash known) is checked by its hash until its bytes are in hand. A truncation and rewrite
// of the same length is caught either way.
func TestStartIsComparesTheFingerprintedBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	old := []byte("old-0\nold-1\n")
	if err := os.WriteFile(path, append(old, "more\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs := &tailRun{fpBuf: make([]byte, fpMax)}

	var fresh tfile
	fresh.setFP(old)
	restored := tfile{fp: hashFP(old), fpLen: int64(len(old))}
	for _, c := range []struct {
		name string
		tf   *tfile
	}{{"fingerprinted here", &fresh}, {"restored", &restored}} {
		if !c.tf.startIs(rs, f, 0, nil) {
			t.Errorf("%s: unchanged start not recognised", c.name)
		}
	}
	if !bytes.Equal(restored.head, old) {
		t.Errorf("restored: head = %q after a matching check, want %q", restored.head, old)
	}

	if err := os.WriteFile(path, []byte("new-0\nnew-1\nmore\n"), 0o644); err != nil { // truncates and rewrites
		t.Fatal(err)
	}
	unchecked := tfile{fp: hashFP(old), fpLen: int64(len(old))}
	for _, c := range []struct {
		name string
		tf   *tfile
	}{{"fingerprinted here", &fresh}, {"restored", &restored}, {"restored, not checked before", &unchecked}} {
		if c.tf.startIs(rs, f, 0, nil) {
			t.Errorf("%s: rewritten start not noticed", c.name)
		}
	}
	if unchecked.head != nil {
		t.Errorf("restored, not checked before: head = %q after a mismatch, want nil", unchecked.head)
	}
	if err := os.Truncate(path, 4); err != nil {
		t.Fatal(err)
	}
	if fresh.startIs(rs, f, 0, nil) {
		t.Error("start shorter than the fingerprint not noticed")
	}
}
