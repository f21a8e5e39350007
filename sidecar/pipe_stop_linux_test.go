//go:build linux

package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
)

// pipeHolds is how many bytes the pipe r holds (FIONREAD).
func pipeHolds(t *testing.T, r *os.File) int {
	t.Helper()
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	if err := rc.Control(func(fd uintptr) { n = unread(int(fd)) }); err != nil || n < 0 {
		t.Fatalf("FIONREAD: %v", err)
	}
	return n
}

// awaitFull waits until the pipe r holds at least n bytes and the same number for d: its writer is
// waiting for room.
func awaitFull(t *testing.T, r *os.File, n int, d time.Duration) {
	t.Helper()
	last, since := -1, time.Now()
	await.True(t, "the pipe to stay full", 20*time.Second, func() bool {
		if h := pipeHolds(t, r); h != last {
			last, since = h, time.Now()
		}
		return last >= n && time.Since(since) >= d
	})
}

// stopWhileStalled cancels Run (running in done's goroutine, ended by cancel) and waits at most
// stopBound for it to return. When it does not, the test fails, and the pipe r is read until Run
// returns, so that nothing outlives the test; what that read got is discarded.
func stopWhileStalled(t *testing.T, cancel context.CancelFunc, done <-chan error, r, w *os.File) {
	t.Helper()
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v after its ctx ended, want nil", err)
		}
		t.Logf("Run returned %v after its ctx ended", time.Since(start).Round(time.Millisecond))
		return
	case <-time.After(stopBound):
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, r)
	}()
	<-done
	w.Close()
	<-drained
	t.Fatalf("Run did not return within %v of its ctx ending while nobody read its pipe", stopBound)
}

// stopTailer returns a Tailer following dir/*.log like pipeTailer's (lines of at most 256 bytes,
// reads of 8 KiB, polling every 20ms), with a WriterSink in format f on a new pipe of 64 KiB, and
// opts (given to both), and the pipe's two ends.
func stopTailer(t *testing.T, dir string, f Format, opts ...Option) (tl *Tailer, r, w *os.File) {
	t.Helper()
	r, w = newTestPipe(t, 64<<10)
	opts = append(opts, WithFormat(f), WithMaxLineBytes(256), WithReadChunkBytes(8<<10))
	sink := NewWriterSink(w, opts...)
	tl, err := NewTailer([]string{filepath.Join(dir, "*.log")}, sink,
		append(opts, WithPollInterval(20*time.Millisecond), WithLogger(zaptest.NewLogger(t)))...)
	if err != nil {
		t.Fatal(err)
	}
	return tl, r, w
}

// output is what a WriterSink in a format writes of a file's lines: out(i) is the output of the
// lines from the i-th on, and offsets[i] the file offset of the i-th line (offsets[len(lines)] the
// file's size).
type output struct {
	lines   []string
	offsets []int64
	format  Format
	file    string
}

func newOutput(file string, f Format, lines []string) *output {
	s := &output{lines: lines, offsets: make([]int64, len(lines)+1), format: f, file: file}
	for i, l := range lines {
		s.offsets[i+1] = s.offsets[i] + int64(len(l)) + 1
	}
	return s
}

func (s *output) out(from int) string {
	var b []byte
	for i := from; i < len(s.lines); i++ {
		if s.format == FormatRaw {
			b = append(append(b, s.lines[i]...), '\n')
		} else {
			b = AppendJSON(b, Record{File: s.file, Line: []byte(s.lines[i]), Offset: s.offsets[i]})
		}
	}
	return string(b)
}

// line is the index of the line at file offset off, -1 when no line starts there.
func (s *output) line(off int64) int {
	i, ok := slices.BinarySearch(s.offsets, off)
	if !ok {
		return -1
	}
	return i
}

// A Tailer whose WriterSink writes into a pipe whose reader stopped reading (a stalled log
// collector) still stops when its ctx ends: Run returns within the final read's budget instead of
// waiting for room forever. Its checkpoint is not past the lines the pipe took, and a restart with a
// reader ships every line after it: none lost, and none twice within one Run. Raw lines (written
// synchronously, copied or spliced) and JSON lines (written by the sink's goroutine) alike.
func TestTailerStopsWhilePipeReaderStalls(t *testing.T) {
	for _, c := range []struct {
		name   string
		format Format
		opts   []Option
	}{
		{"raw", FormatRaw, nil},
		{"raw-splice", FormatRaw, []Option{WithSpliceFromFile()}},
		{"json", FormatJSON, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			app := filepath.Join(dir, "app.log")
			lines, content := pipeTestLines(30000, false) // ~2.4 MB, 37 times the pipe
			if err := os.WriteFile(app, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			want := newOutput(app, c.format, lines)
			all := want.out(0)
			cp := filepath.Join(dir, "state.json")
			opts := append([]Option{WithCheckpoint(cp), WithCommitInterval(5 * time.Millisecond)}, c.opts...)

			// First Run: the reader takes 400 KiB, a piece a millisecond (the Tailer commits
			// meanwhile), then stops reading.
			tl, r, w := stopTailer(t, dir, c.format, opts...)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- tl.Run(ctx) }()
			got := make([]byte, 400<<10)
			for i := 0; i < len(got); i += 8 << 10 {
				if _, err := io.ReadFull(r, got[i:i+8<<10]); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond)
			}
			// The pipe fills up and stays as full for 200 ms: the sink waits for room.
			awaitFull(t, r, 16<<10, 200*time.Millisecond)
			stopWhileStalled(t, cancel, done, r, w)

			// What the reader could still get: what the pipe holds.
			rest := make([]byte, pipeHolds(t, r))
			if _, err := io.ReadFull(r, rest); err != nil {
				t.Fatal(err)
			}
			got = append(got, rest...)
			if !strings.HasPrefix(all, string(got)) {
				t.Fatalf("first Run shipped %d bytes that are not the output of the file's first lines (a line lost or twice)", len(got))
			}
			took := want.offsets[bytes.Count(got, []byte("\n"))] // the file offset after the last whole line the pipe took
			st, found, err := loadCheckpoint(cp)
			if err != nil || !found || len(st.Files) != 1 {
				t.Fatalf("checkpoint: %+v, found %t, %v", st, found, err)
			}
			off := st.Files[0].Offset
			if off > took {
				t.Fatalf("checkpoint at offset %d, past the lines the pipe took (up to offset %d): a restart loses the lines between", off, took)
			}
			from := want.line(off)
			if from < 0 {
				t.Fatalf("checkpoint at offset %d, inside a line", off)
			}
			t.Logf("first Run: the pipe took the lines up to offset %d of %d, checkpoint at %d", took, len(content), off)

			// Second Run with a reader: every line after the checkpoint, once.
			tl, r, w = stopTailer(t, dir, c.format, opts...)
			ctx, cancel = context.WithCancel(context.Background())
			go func() { done <- tl.Run(ctx) }()
			rest2 := want.out(from)
			again := make([]byte, len(rest2))
			_, err = io.ReadFull(r, again)
			cancel()
			if rerr := <-done; rerr != nil {
				t.Errorf("second Run = %v", rerr)
			}
			w.Close()
			if err != nil {
				t.Fatalf("second Run shipped %d bytes, want %d: %v", len(again), len(rest2), err)
			}
			if string(again) != rest2 {
				t.Fatalf("second Run did not ship the file's lines from the checkpoint (offset %d) on", off)
			}
			if extra, _ := io.ReadAll(r); len(extra) > 0 {
				t.Errorf("second Run shipped %d bytes more than the lines after the checkpoint", len(extra))
			}
		})
	}
}

// newBlockingPipe returns a pipe of size bytes whose write end is in blocking mode, as a stdout
// handed over by a parent usually is (os.Pipe's ends are non-blocking).
func newBlockingPipe(t *testing.T, size int) (r, w *os.File) {
	t.Helper()
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fds[1]), fSetPipeSz, uintptr(size)); e != 0 {
		t.Fatal(e)
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	r, w = os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// Writes shorter than a page each take a slot of the pipe when they do not fit in the last one's
// rest: a pipe of 16 slots (64 KiB) holding 16 writes of 3000 bytes is full though FIONREAD shows
// 17 KiB free. pipeOut counts those slots: it waits for room instead of making a write that blocks in
// the kernel (a raw call, which nothing interrupts), so a write into a pipe nobody reads gives up
// when its ctx ends.
func TestPipeOutCountsSlotsOfShortWrites(t *testing.T) {
	// A write blocked in a raw call holds up every stop of the world: no collection may start
	// before the pipe is read again, or the test hangs instead of failing.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	t.Run("4KiB pages", func(t *testing.T) { shortWritesGiveUp(t) })
	// Where pages are larger than the count of room assumes, every piece waits in writeWhenRoom.
	defer func(was bool) { smallPages = was }(smallPages)
	smallPages = false
	t.Run("larger pages", func(t *testing.T) { shortWritesGiveUp(t) })
}

// shortWritesGiveUp fills a blocking pipe of 16 slots with writes of 3000 bytes and checks that the
// writer gives up when its ctx ends, having written exactly what the pipe holds.
func shortWritesGiveUp(t *testing.T) {
	for _, paced := range []bool{true, false} {
		r, w := newBlockingPipe(t, 64<<10) // 16 slots
		p := newPipeOut(w, paced)
		if p == nil {
			t.Fatal("no pipeOut for a pipe")
		}
		piece := bytes.Repeat([]byte("x"), 3000)
		ctx, cancel := context.WithCancel(context.Background())
		type result struct {
			n   int
			err error
		}
		done := make(chan result, 1)
		go func() {
			total := 0
			for {
				n, err := p.write(ctx, piece, nil, 0)
				total += n
				if err != nil || ctx.Err() != nil {
					done <- result{total, err}
					return
				}
			}
		}()
		awaitFull(t, r, 1, 100*time.Millisecond)
		cancel()
		var res result
		select {
		case res = <-done:
		case <-time.After(time.Second):
			drained := make(chan struct{})
			go func() { defer close(drained); _, _ = io.Copy(io.Discard, r) }()
			<-done
			w.Close()
			<-drained
			t.Fatalf("paced %t: a write into a full pipe did not give up within 1s of its ctx ending", paced)
		}
		if !errors.Is(res.err, context.Canceled) {
			t.Errorf("paced %t: write error %v, want %v", paced, res.err, context.Canceled)
		}
		if h := pipeHolds(t, r); h != res.n || res.n < 16*len(piece) {
			t.Errorf("paced %t: %d bytes written, the pipe holds %d; want them equal and at least %d", paced, res.n, h, 16*len(piece))
		}
	}
}

// A write whose first piece waited for room in ppoll (writeWhenRoom) took a slot the count of room
// did not know of: the room counted before it is gone. A shorter piece after it must not be written
// on that count, or a raw write(2) into a full blocking pipe blocks in the kernel, where neither
// the write's ctx nor a stop can end it (the count was not lowered by the bytes writeWhenRoom wrote).
func TestPipeOutCountsRoomTakenWhileWaiting(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // see TestPipeOutCountsSlotsOfShortWrites
	r, w := newBlockingPipe(t, 64<<10)               // 16 slots
	// 12 full slots and 3 of 2100 bytes (not merged: 2 do not fit in one page): 1 slot free, and
	// room counts 64 KiB - 55452 bytes held - 2 pages of margin = 1892 bytes free.
	fill := append(bytes.Repeat([]byte("f"), 12<<12), bytes.Repeat([]byte("g"), 2100)...)
	for _, b := range [][]byte{fill, fill[:2100], fill[:2100]} {
		if n, err := w.Write(b); n != len(b) || err != nil {
			t.Fatalf("fill: %d, %v", n, err)
		}
	}
	for _, paced := range []bool{true, false} {
		p := newPipeOut(w, paced)
		if p == nil {
			t.Fatal("no pipeOut for a pipe")
		}
		held := pipeHolds(t, r)
		// A piece of a page waits for the free slot and takes it; the piece of 1000 bytes after it
		// must wait for room too, and give up when ctx ends.
		b := bytes.Repeat([]byte("x"), pipePiece+1000)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		type result struct {
			n   int
			err error
		}
		done := make(chan result, 1)
		go func() {
			n, err := p.write(ctx, b, nil, 0)
			done <- result{n, err}
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(5 * time.Second):
			got := make([]byte, 1<<20)
			_, _ = r.Read(got) // lets the write end (r is non-blocking)
			cancel()
			<-done
			t.Fatalf("paced %t: the write did not give up within 5s of a ctx of 200ms (blocked in the kernel)", paced)
		}
		cancel()
		if !errors.Is(res.err, context.DeadlineExceeded) || res.n != pipePiece {
			t.Errorf("paced %t: write = %d, %v; want %d, %v", paced, res.n, res.err, pipePiece, context.DeadlineExceeded)
		}
		if h := pipeHolds(t, r); h != held+res.n {
			t.Errorf("paced %t: the pipe holds %d bytes, want %d", paced, h, held+res.n)
		}
		// Free one slot again for the next case: read one page of the 12 (a whole slot).
		if _, err := io.ReadFull(r, make([]byte, 4<<10)); err != nil {
			t.Fatal(err)
		}
	}
}

// The final read of a file deleted while open (finishGone) has finalReadTimeout to ship its lines to
// a reader that is slow but reads, since a restart cannot read them. A JSON WriterSink writes each
// batch from its goroutine with the ctx of the Write that started it: the last batch of the final
// read must keep that budget until the Tailer's last Flush, not lose it when the final read returns
// (its lines were cut off in a full pipe and lost). Raw lines, written synchronously, alike.
func TestDeletedFileShippedToSlowPipeReaderAtStop(t *testing.T) {
	for _, f := range []Format{FormatJSON, FormatRaw} {
		dir := t.TempDir()
		app := filepath.Join(dir, "app.log")
		lines, content := pipeTestLines(5000, false) // ~400 KB, 6 times the pipe
		if err := os.WriteFile(app, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		want := newOutput(app, f, lines).out(0)
		tl, r, w := stopTailer(t, dir, f)
		// Nobody reads until the sink waits for room; then the file is deleted, Run told to stop,
		// and the reader takes 4 KiB a millisecond (the Tailer writes faster: the pipe stays full).
		cancel, done := runThenDeleteWhenFull(t, tl, r, app)
		got := make(chan []byte, 1)
		go func() {
			var b []byte
			buf := make([]byte, 4<<10)
			for {
				n, err := r.Read(buf)
				b = append(b, buf[:n]...)
				if err != nil {
					got <- b
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("format %d: Run = %v", f, err)
		}
		w.Close()
		out := string(<-got)
		if !strings.HasPrefix(want, out) {
			t.Fatalf("format %d: shipped %d bytes that are not the output of the file's first lines", f, len(out))
		}
		if len(out) != len(want) {
			t.Errorf("format %d: the reader got %d bytes of the deleted file's %d: its last lines were lost", f, len(out), len(want))
		}
	}
}

// Where every piece waits for a free slot (pages larger than the count of room assumes), a write
// with a reader still delivers every byte in order.
func TestPipeOutLargerPagesDeliversInOrder(t *testing.T) {
	defer func(was bool) { smallPages = was }(smallPages)
	smallPages = false
	r, w := newBlockingPipe(t, 64<<10)
	p := newPipeOut(w, true)
	if p == nil {
		t.Fatal("no pipeOut for a pipe")
	}
	want := make([]byte, 3<<20)
	for i := range want {
		want[i] = byte(i % 251)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, int64(len(want))))
		got <- b
	}()
	for off := 0; off < len(want); off += 10000 { // batches that end inside pages
		b := want[off:min(len(want), off+10000)]
		if n, err := p.write(context.Background(), b, nil, 0); n != len(b) || err != nil {
			t.Fatalf("write at %d: %d of %d bytes, %v", off, n, len(b), err)
		}
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("read %d bytes, not the %d written in order", len(b), len(want))
	}
}

// A file deleted while open whose lines were all read and handed to the sink before Run was told to
// stop, but are not all in the pipe yet (its slow reader lets a write wait for room): those lines get
// the final read's budget too, whether the file is still in its grace period or was dropped after it,
// since a restart cannot read them again. A JSON batch written with Run's ctx was cut off in a full
// pipe when that ctx ended, and the final commit's Flush, which does not wait, left the rest
// unwritten: lost. (Raw lines in the grace period passed already.)
func TestDeletedFileHeldInSinkShippedToSlowPipeReaderAtStop(t *testing.T) {
	for _, c := range []struct {
		name  string
		grace time.Duration
	}{
		{"in grace", time.Hour},
		{"dropped", 0},
	} {
		for _, f := range []Format{FormatJSON, FormatRaw} {
			if f == FormatRaw && c.grace == 0 {
				continue // the Tailer waits in its synchronous write: not idle, it does not drop the file
			}
			t.Run(fmt.Sprintf("%s/format %d", c.name, f), func(t *testing.T) {
				dir := t.TempDir()
				app := filepath.Join(dir, "app.log")
				lines, content := pipeTestLines(2500, false) // ~200 KB, 3 times the pipe: one read
				if err := os.WriteFile(app, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				want := newOutput(app, f, lines).out(0)
				r, w := newTestPipe(t, 64<<10)
				opts := []Option{WithFormat(f), WithMaxLineBytes(256), WithReadChunkBytes(1 << 20)}
				core, logs := observer.New(zapcore.DebugLevel)
				tl, err := NewTailer([]string{filepath.Join(dir, "*.log")}, NewWriterSink(w, opts...),
					append(opts, WithPollInterval(20*time.Millisecond), WithDeletedGrace(c.grace), WithLogger(zap.New(core)))...)
				if err != nil {
					t.Fatal(err)
				}
				// The whole file is one read and one batch; nobody reads until its write waits for
				// room. Then the file is deleted (and, without a grace period, dropped), Run is told
				// to stop, and the reader takes 4 KiB a millisecond.
				cancel, done := runThenDeleteWhenFull(t, tl, r, app)
				if c.grace == 0 {
					await.True(t, "the deleted file to be dropped", 20*time.Second, func() bool {
						return logs.FilterMessage("drop file").Len() > 0
					})
				}
				got := slowReader(r, 4<<10, 1)
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run = %v", err)
				}
				w.Close()
				out := string(<-got)
				if !strings.HasPrefix(want, out) {
					t.Fatalf("shipped %d bytes that are not the output of the file's first lines", len(out))
				}
				if len(out) != len(want) {
					t.Errorf("the reader got %d bytes of the deleted file's %d: its last lines were lost", len(out), len(want))
				}
			})
		}
	}
}

// runThenDeleteWhenFull starts tl.Run, waits until its sink waits for room in the pipe r that nobody
// reads, and deletes the file app. It returns Run's cancel and where Run's result goes.
func runThenDeleteWhenFull(t *testing.T, tl *Tailer, r *os.File, app string) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	awaitFull(t, r, 16<<10, 100*time.Millisecond)
	if err := os.Remove(app); err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	return cancel, done
}
