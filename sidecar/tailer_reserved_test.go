package sidecar

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// reserveFunc reserves n bytes of f after its first off bytes, as a writer does ahead of the lines
// it then writes into them.
type reserveFunc func(t *testing.T, f *os.File, off, n int64)

// writeAtFunc writes b into f at off, as a writer filling reserved space does.
type writeAtFunc func(t *testing.T, f *os.File, off int64, b []byte)

func truncateUp(t *testing.T, f *os.File, off, n int64) {
	t.Helper()
	if err := f.Truncate(off + n); err != nil {
		t.Fatal(err)
	}
}

func pwrite(t *testing.T, f *os.File, off int64, b []byte) {
	t.Helper()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// newLinesEnv writes lines a-0000..a-0009 to app.log in a new tailEnv and returns the lines, a
// descriptor of the file for writing into it and its size.
func newLinesEnv(t *testing.T) (e *tailEnv, f *os.File, a []string, size int64) {
	t.Helper()
	e = newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	a = numbered("a", 0, 10)
	appendFile(t, app, a...)
	f, err := os.OpenFile(app, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return e, f, a, fi.Size()
}

// steppedAround starts a Tailer on e driven by steppedTailer, and runs change before its first
// read when before is set, else after it, followed by one more step.
func (e *tailEnv) steppedAround(t *testing.T, before bool, change func()) (*Tailer, *tailRun, func()) {
	t.Helper()
	if before {
		change()
	}
	tl := e.tailer(t)
	rs, step := steppedTailer(t, tl)
	step()
	if !before {
		change()
		step()
	}
	return tl, rs, step
}

// TestLinesWrittenIntoReservedSpace: a writer that reserves space ahead of its lines (ftruncate
// up, as log4j2's MemoryMappedFileAppender does with 32 MiB regions) and then writes them into it
// has every line shipped once, in order. The Tailer left NUL bytes at a file's end unread only when
// they were within one read (256 KiB): a read full of them, with more after it, was delivered as a
// line over the limit, and the lines written into those bytes later were lost.
func TestLinesWrittenIntoReservedSpace(t *testing.T) {
	testLinesWrittenIntoReservedSpace(t, truncateUp, pwrite)
}

// testLinesWrittenIntoReservedSpace writes lines a-0000..a-0009 to app.log, reserves 8 MiB after
// them with reserve, before or after the Tailer's first read, and writes ~500 KiB of lines into
// the reserved space with write, in pieces that split lines, one longer than a read, stepping the
// Tailer after each.
func testLinesWrittenIntoReservedSpace(t *testing.T, reserve reserveFunc, write writeAtFunc) {
	var text strings.Builder
	var b []string
	for i := range 6000 {
		l := fmt.Sprintf("b-%06d %s", i, strings.Repeat("x", i%150))
		b = append(b, l)
		text.WriteString(l + "\n")
	}
	pieces := []int{100_003, 300_007, 1, 50_000} // then the rest
	for _, reserveFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("reserved before the first read %v", reserveFirst), func(t *testing.T) {
			e, f, a, start := newLinesEnv(t)
			const reserved = 8 << 20
			tl, rs, step := e.steppedAround(t, reserveFirst, func() { reserve(t, f, start, reserved) })
			rest, off := text.String(), start
			for i := 0; len(rest) > 0; i++ {
				n := len(rest)
				if i < len(pieces) {
					n = pieces[i]
				}
				write(t, f, off, []byte(rest[:n]))
				rest, off = rest[n:], off+int64(n)
				step()
			}
			// Polls of the file at its end do not read the reserved space after the lines again.
			zeroReads := rs.zeroReads
			for range 5 {
				step()
			}
			if rs.zeroReads != zeroReads {
				t.Errorf("polls at the end read %d bytes after the lines, want 0", rs.zeroReads-zeroReads)
			}
			for _, tf := range rs.files {
				if read := tf.off + int64(len(tf.partial)); read != off {
					t.Errorf("read up to offset %d, want %d (the end of the lines)", read, off)
				}
			}
			stopStepped(tl, rs)
			if diff := cmp.Diff(append(a, b...), lines(readShipped(t, e.out))); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
			for _, reason := range []string{"too_long", "binary"} {
				if n := counterValue(tl.m.skipped.WithLabelValues(reason)); n != 0 {
					t.Errorf("%v lines skipped as %s, want 0", n, reason)
				}
			}
		})
	}
}

// TestNULContentAfterAReadIsRead: NUL bytes at a file's end that span more than one read are left
// unread while nothing but NUL bytes follows them, but once the file holds other bytes after them
// they are content: they are read (and, starting a line, skipped: see skipNULs), and so are the
// lines after them, also when those are written into the file's existing bytes out of order, or
// appended after the file shrank.
func TestNULContentAfterAReadIsRead(t *testing.T) {
	const hole = 4 << 20
	for _, c := range []struct {
		name string
		// extendFirst: the hole and the lines after it are there before the Tailer's first read.
		extendFirst bool
		// inside: the lines are written 3 MiB into the hole instead of appended after it.
		inside bool
		// shrink: the file is cut to 1 MiB of the hole before the lines are appended.
		shrink bool
	}{
		{name: "lines appended after the hole"},
		{name: "lines after the hole before the first read", extendFirst: true},
		{name: "lines written inside the hole", inside: true},
		{name: "lines appended after the file shrank", shrink: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, f, a, start := newLinesEnv(t)
			writeLines := func() {
				at := start + hole
				switch {
				case c.inside:
					at = start + 3<<20
				case c.shrink:
					at = start + 1<<20
					if err := f.Truncate(at); err != nil {
						t.Fatal(err)
					}
				}
				pwrite(t, f, at, []byte("c-0000\nc-0001\n"))
			}
			truncateUp(t, f, start, hole)
			tl, rs, step := e.steppedAround(t, c.extendFirst, writeLines)
			if c.inside {
				// As when zeroRecheck has passed: the reserved bytes are checked again.
				for _, tf := range rs.files {
					tf.zerosAt = tf.zerosAt.Add(-zeroRecheck)
				}
			}
			for range 3 {
				step()
			}
			stopStepped(tl, rs)
			// The NUL bytes before c-0000 are skipped, not read as the start of the line.
			if diff := cmp.Diff(append(a, "c-0000", "c-0001"), lines(readShipped(t, e.out))); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
		})
	}
}
