package sidecar

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// tornLines returns n lines of varying length, L-0000-xxx...-E, and the offset of each in a file
// holding them.
func tornLines(n int) (ls []string, offs []int64) {
	off := int64(0)
	for i := range n {
		l := fmt.Sprintf("L-%04d-%s-E", i, strings.Repeat("x", 20+i%61))
		ls, offs = append(ls, l), append(offs, off)
		off += int64(len(l)) + 1
	}
	return ls, offs
}

// tornFile writes content to path with its bytes from z0 up to z1 NUL, as a read sees space that a
// writer filling it in order is writing (its new bytes after NUL bytes it has not replaced yet), and
// returns a func writing content's bytes there, as the writer then does.
func tornFile(t *testing.T, path string, content []byte, z0, z1 int64) (write func()) {
	t.Helper()
	seen := append([]byte(nil), content...)
	clear(seen[z0:z1])
	if err := os.WriteFile(path, seen, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if _, err := f.WriteAt(content[z0:z1], z0); err != nil {
			t.Error(err)
		}
	}
}

// TestTornReadOfReservedSpaceIsReadAgain: a writer that fills reserved space in order (ftruncate up
// then pwrite, or mmap) can be caught in the middle of a write: the read holds NUL bytes it was
// replacing and, after them, bytes it wrote next (the pages of a read are copied one at a time), or,
// at the end of a full read, NUL bytes followed in the file by the bytes it wrote next. The Tailer
// skipped such NUL bytes as a crashed writer's run and shipped the line's tail as a line ("xx-E"),
// or skipped the line holding them as binary, or ran an over-long line it was skipping on into the
// line after it: lines were lost or broken. Now it reads NUL bytes again before it skips them or
// the line holding them: they changed, so it reads their line again, and every line is shipped
// whole, once, at its offset. The file changes right after the Tailer's read (readDone) as it would
// under such a writer.
func TestTornReadOfReservedSpaceIsReadAgain(t *testing.T) {
	const chunk, maxLine = 4096, 256
	ls, offs := tornLines(150)
	first := func(from int64) int { // the first line starting at or after from
		for k, o := range offs {
			if o >= from {
				return k
			}
		}
		t.Fatalf("no line after offset %d", from)
		return 0
	}
	type view struct {
		z0, z1 int64 // NUL in the file's first view
		read   int   // the read after which the file holds its bytes
	}
	k := first(2 * fpMax) // the bytes the fingerprint covers are checked otherwise (see startIs)
	cases := map[string]view{
		"no NUL bytes":                        {},
		"at a line's start":                   {offs[k], offs[k] + 10, 1},
		"inside a line":                       {offs[k] + 5, offs[k] + 15, 1},
		"across lines":                        {offs[k] + 5, offs[k+2] + 5, 1},
		"from a line's start to a read's end": {offs[first(chunk)-1], chunk, 1},
		"from inside a line to a read's end":  {offs[first(chunk)-1] + 5, chunk, 1},
	}
	for name, c := range cases {
		for _, sinkKind := range []string{"raw", "json", "line by line"} {
			t.Run(name+"/"+sinkKind, func(t *testing.T) {
				testTornRead(t, ls, c.z0, c.z1, c.read, -1, chunk, maxLine, sinkKind)
			})
		}
	}
	// The end of an over-long line being skipped, and the line after it: the newline ending it is NUL.
	// The line spans the first read's end, over the limit in it, and the second read sees the NUL.
	longAt := first(chunk - 350)
	long := slices.Clone(ls)
	long[longAt] = "L-long-" + strings.Repeat("y", 393)
	end := int64(0)
	for _, l := range long[:longAt+1] {
		end += int64(len(l)) + 1
	}
	for _, sinkKind := range []string{"raw", "json", "line by line"} {
		t.Run("over-long line's end/"+sinkKind, func(t *testing.T) {
			testTornRead(t, long, end-20, end+10, 2, longAt, chunk, maxLine, sinkKind)
		})
	}
}

// testTornRead has a Tailer read ls, whose bytes from z0 up to z1 are NUL until right after its
// read number read, and checks that it ships every line of ls but the one at index long (over the
// limit) whole, once, at its offset.
func testTornRead(t *testing.T, ls []string, z0, z1 int64, read, long, chunk, maxLine int, sinkKind string) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	content := []byte(strings.Join(ls, "\n") + "\n")
	write := tornFile(t, app, content, z0, z1)
	core, logs := observer.New(zapcore.InfoLevel)
	tl, rec := recordingTailer(t, e, sinkKind, maxLine, chunk, zap.New(core))
	rs, step := steppedTailer(t, tl)
	defer stopStepped(tl, rs)
	reads := 0
	rs.readDone = func() {
		if reads++; reads == read {
			write()
		}
	}
	step()
	step()
	var want []shipped
	for i, s := range linesAt(app, 0, ls...) {
		if i != long {
			want = append(want, s)
		}
	}
	if diff := cmp.Diff(want, rec.got); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
	tooLong := 0.0
	if long >= 0 {
		tooLong = 1
	}
	for reason, n := range map[string]float64{"nul": 0, "binary": 0, "too_long": tooLong} {
		if got := counterValue(tl.m.skipped.WithLabelValues(reason)); got != n {
			t.Errorf("skipped{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	if got := nulSkips(logs); len(got) != 0 {
		t.Errorf("logged NUL runs %v, want none", got)
	}
	if z0 == z1 && rs.rereads != 0 {
		t.Errorf("read %d bytes again in a file without NUL bytes, want 0", rs.rereads)
	}
}

// TestTornReadDoesNotSpin: NUL bytes that change between every read and its check (a writer
// rewriting the same space over and over) stop each read at their line, which is read again on the
// next poll: once the lines before them are shipped, readAll reads the file once a poll, reports no
// progress (Run then waits for the next poll or event instead of reading again at once), moves no
// offset and ships nothing more. Once the bytes stay, the lines are shipped once.
func TestTornReadDoesNotSpin(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	ls, offs := tornLines(60)
	k := slices.IndexFunc(offs, func(o int64) bool { return o >= 2*fpMax }) // after the fingerprinted bytes
	content := []byte(strings.Join(ls, "\n") + "\n")
	// The file holds line k with its first 10 bytes NUL, then, after every read, with the 10 bytes
	// NUL that the read saw written, and so on: each read sees NUL bytes that have changed since.
	tornFile(t, app, content, offs[k], offs[k]+10)
	tl, rec := recordingTailer(t, e, "raw", 256, 4096, zap.NewNop())
	rs, step := steppedTailer(t, tl)
	defer stopStepped(tl, rs)
	reads, view := 0, 0
	rs.readDone = func() {
		reads, view = reads+1, 1-view
		f, err := os.OpenFile(app, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		b := slices.Clone(content[offs[k] : offs[k]+20])
		clear(b[view*10:][:10])
		if _, err := f.WriteAt(b, offs[k]); err != nil {
			t.Error(err)
		}
	}
	want := linesAt(app, 0, ls...)
	for i := range 4 {
		reads = 0
		progress, err := tl.readAll(context.Background(), rs)
		if err != nil {
			t.Fatal(err)
		}
		tf := rs.order[0]
		wantReads := 1
		if i == 0 {
			wantReads = 2 // the lines before line k, then line k
		}
		if progress != (i == 0) || reads != wantReads || tf.off != offs[k] || len(tf.partial) != 0 {
			t.Fatalf("poll %d: progress %v after %d reads, offset %d, %d bytes held; want progress %v after %d reads, offset %d, nothing held",
				i, progress, reads, tf.off, len(tf.partial), i == 0, wantReads, offs[k])
		}
		if diff := cmp.Diff(want[:k], rec.got); diff != "" {
			t.Fatalf("poll %d: shipped (-want +got):\n%s", i, diff)
		}
	}
	if max := int64(5 * len(ls[k])); rs.rereads > max {
		t.Errorf("read %d bytes again in 5 reads, want at most %d (line k, once a read)", rs.rereads, max)
	}
	rs.readDone = nil
	tornFile(t, app, content, 0, 0)
	step()
	if diff := cmp.Diff(want, rec.got); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

// TestConcurrentFillOfReservedSpace: a writer fills space it reserved with ftruncate in order, a
// few lines a pwrite, while the Tailer reads it; every line is shipped whole and once. Reads caught
// in the middle of a write (see TestTornReadOfReservedSpaceIsReadAgain) shipped broken tails and
// lost lines. The writer keeps at most a read ahead of the Tailer, so that reads meet its writes;
// whether one is caught in the middle of a write still depends on timing: this test finds such a
// Tailer in some runs, not all (TestTornReadOfReservedSpaceIsReadAgain does in every run), and
// never fails a correct one.
func TestConcurrentFillOfReservedSpace(t *testing.T) {
	const n, perWrite = 50000, 8
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	f, err := os.OpenFile(app, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ls, offs := tornLines(n)
	size := offs[n-1] + int64(len(ls[n-1])) + 1
	truncateUp(t, f, 0, size)
	tl, rec := recordingTailer(t, e, "raw", 256, 4096, zap.NewNop())
	rs, step := steppedTailer(t, tl)
	defer stopStepped(tl, rs)
	step()
	tf := rs.order[0]
	var readTo atomic.Int64 // where the Tailer's reads are
	done := make(chan error, 1)
	go func() {
		var b []byte
		for i := 0; i < n; i += perWrite {
			for offs[i] > readTo.Load()+4096 {
				runtime.Gosched()
			}
			b = b[:0]
			for _, l := range ls[i:min(n, i+perWrite)] {
				b = append(append(b, l...), '\n')
			}
			if _, err := f.WriteAt(b, offs[i]); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	ctx := context.Background()
	read := func() {
		n, err := tl.readOnce(ctx, rs, tf)
		if err != nil {
			t.Fatal(err)
		}
		readTo.Store(tf.off + int64(len(tf.partial)))
		if n == 0 {
			runtime.Gosched() // caught up: let the writer write (with one P, or a busy machine)
		}
	}
	for writing := true; writing; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		default:
			read()
		}
	}
	for prev := int64(-1); tf.off != prev; {
		prev = tf.off
		read()
	}
	if tf.off != size {
		t.Errorf("read up to offset %d, want %d", tf.off, size)
	}
	want := linesAt(app, 0, ls...)
	if diff := cmp.Diff(want, rec.got); diff != "" {
		broken := 0
		for _, s := range rec.got {
			if !strings.HasPrefix(s.Line, "L-") || !strings.HasSuffix(s.Line, "-E") {
				broken++
			}
		}
		t.Errorf("shipped %d lines of %d, %d of them broken; (-want +got), the first 3000 bytes:\n%.3000s", len(rec.got), n, broken, diff)
	}
	for _, reason := range []string{"nul", "binary", "too_long"} {
		if got := counterValue(tl.m.skipped.WithLabelValues(reason)); got != 0 {
			t.Errorf("skipped{reason=%q} = %v, want 0", reason, got)
		}
	}
}

// TestTornReadInFinalReadOfDeletedFile: the final read of a deleted file at stop (finishFile)
// reads it to the size it had; a read caught in the middle of a write (see
// TestTornReadOfReservedSpaceIsReadAgain) returns nothing, and finishFile took that for the file's
// end: the lines from there on were logged as lost, and a restart cannot reopen the file. Now it
// reads such bytes again until they settle or its ctx ends.
func TestTornReadInFinalReadOfDeletedFile(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	ls, offs := tornLines(60)
	k := slices.IndexFunc(offs, func(o int64) bool { return o >= 2*fpMax }) // after the fingerprinted bytes
	tl, rec, rs, _ := shippedThenTorn(t, e, app, ls, offs, k)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tl.finishFile(ctx, rs, rs.order[0]); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(linesAt(app, 0, ls...), rec.got); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

// TestTornReadInTheFingerprintedBytes: a read caught in the middle of a write (see
// TestTornReadOfReservedSpaceIsReadAgain) within a file's first fpMax bytes, which the Tailer
// checks against the file after each read for a truncation, was taken for one: the file was read
// again from 0, its lines shipped twice, and a truncation logged and counted. Now the bytes the read
// saw NUL and the file holds since are a write after the read, and the line holding them is read
// again.
func TestTornReadInTheFingerprintedBytes(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	ls, offs := tornLines(10)
	const k = 3 // within the first fpMax bytes
	if offs[k]+10 > fpMax {
		t.Fatalf("line %d at %d is not within the first %d bytes", k, offs[k], fpMax)
	}
	tl, rec, _, step := shippedThenTorn(t, e, app, ls, offs, k)
	step()
	step()
	if diff := cmp.Diff(linesAt(app, 0, ls...), rec.got); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
	if got := counterValue(tl.m.rotations.WithLabelValues("truncate")); got != 0 {
		t.Errorf("rotations{truncate} = %v, want 0", got)
	}
}

// shippedThenTorn has a stepped Tailer (raw lines, 4 KiB reads) ship the lines of ls before line k
// from app, then makes app hold all of ls with line k's first 10 bytes NUL, as a writer filling
// reserved space leaves them, until right after the Tailer's next read, when it writes them.
func shippedThenTorn(t *testing.T, e *tailEnv, app string, ls []string, offs []int64, k int) (*Tailer, *recordingSink, *tailRun, func()) {
	t.Helper()
	content := []byte(strings.Join(ls, "\n") + "\n")
	if err := os.WriteFile(app, content[:offs[k]], 0o644); err != nil {
		t.Fatal(err)
	}
	tl, rec := recordingTailer(t, e, "raw", 256, 4096, zap.NewNop())
	rs, step := steppedTailer(t, tl)
	t.Cleanup(func() { stopStepped(tl, rs) })
	step()
	write := tornFile(t, app, content, offs[k], offs[k]+10)
	armed := true
	rs.readDone = func() {
		if armed {
			armed = false
			write()
		}
	}
	return tl, rec, rs, step
}

// TestTruncatedAndRewrittenDuringATornRead: a file truncated and written again, with the same first
// bytes and shorter than the read, right after a read that saw NUL bytes is a truncation, not a
// write into reserved space after the read: the Tailer reads the file again from 0.
func TestTruncatedAndRewrittenDuringATornRead(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	ls, offs := tornLines(10)
	const k = 3
	tl, rec, rs, step := shippedThenTorn(t, e, app, ls, offs, k)
	rewritten := append(slices.Clone(ls[:k]), "NEW")
	rs.readDone = func() {
		rs.readDone = nil
		if err := os.WriteFile(app, []byte(strings.Join(rewritten, "\n")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
	step()
	step()
	if got := counterValue(tl.m.rotations.WithLabelValues("truncate")); got != 1 {
		t.Errorf("rotations{truncate} = %v, want 1", got)
	}
	want := linesAt(app, 0, rewritten...)
	if n := len(rec.got); n < len(want) || !cmp.Equal(want, rec.got[n-len(want):]) {
		t.Errorf("shipped %v, want it to end with the rewritten file's lines %v", rec.got, want)
	}
}
