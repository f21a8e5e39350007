//go:build linux

package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap/zaptest"

	"github.com/podblocks/podblocks/internal/await"
)

// newTestPipe returns a pipe whose capacity is size bytes.
func newTestPipe(t *testing.T, size int) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, 1031, uintptr(size)) // F_SETPIPE_SZ
	}); err != nil || errno != 0 {
		t.Fatalf("F_SETPIPE_SZ: %v %v", err, errno)
	}
	return r, w
}

// createOpen writes data into a new file at path and opens it for reading until the test ends.
func createOpen(t *testing.T, path string, data []byte) *os.File {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// pipeTestLines returns n numbered lines of 7 to 156 bytes and what a raw sink ships of them; with
// odd, every 997th line holds a NUL byte (binary: skipped) and the one after it is over the 256-byte
// limit of pipeTailer (skipped).
func pipeTestLines(n int, odd bool) (content []string, want string) {
	var b strings.Builder
	for i := range n {
		l := fmt.Sprintf("%06d %s", i, strings.Repeat("x", i%150))
		switch {
		case odd && i%997 == 11:
			l += "\x00 binary"
		case odd && i%997 == 12:
			l = strings.Repeat("long ", 60)
		default:
			b.WriteString(l + "\n")
		}
		content = append(content, l)
	}
	return content, b.String()
}

// pipeTailer returns a Tailer following dir/*.log with a raw WriterSink on a pipe of 64 KiB, lines
// of at most 256 bytes and reads of 8 KiB, and opts, and the pipe's two ends.
func pipeTailer(t *testing.T, dir string, opts ...Option) (tl *Tailer, sink *WriterSink, r, w *os.File) {
	t.Helper()
	return rawPipeTailer(t, dir, 64<<10, append(opts, WithMaxLineBytes(256), WithReadChunkBytes(8<<10))...)
}

// rawPipeTailer returns a Tailer following dir/*.log, polling every 20ms, with a raw WriterSink on a
// pipe of size bytes and opts (given to both), and the pipe's two ends.
func rawPipeTailer(t *testing.T, dir string, size int, opts ...Option) (tl *Tailer, sink *WriterSink, r, w *os.File) {
	t.Helper()
	r, w = newTestPipe(t, size)
	sink = NewWriterSink(w, append(opts, WithFormat(FormatRaw))...)
	if sink.pipe == nil {
		t.Fatal("no pipeOut for a pipe")
	}
	opts = append(opts, WithPollInterval(20*time.Millisecond), WithLogger(zaptest.NewLogger(t)))
	tl, err := NewTailer([]string{filepath.Join(dir, "*.log")}, sink, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tl, sink, r, w
}

// slowReader reads r to its end in reads of size bytes, sleeping 1ms every pause reads, and sends
// what it read.
func slowReader(r io.Reader, size, pause int) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		var out []byte
		buf := make([]byte, size)
		for i := 0; ; i++ {
			n, err := r.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				got <- out
				return
			}
			if i%pause == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return got
}

// A raw WriterSink on a pipe writes the Tailer's lines synchronously from its read buffer (or
// WithSpliceFromFile as the file's pages), with a reader that takes them slowly and in small pieces
// (the writer waits for room many times), the same bytes as a file sink would get: binary and
// over-long lines skipped, a line split across reads whole.
func TestTailerSplicesRawLinesIntoPipe(t *testing.T) {
	t.Run("write", func(t *testing.T) { testTailerRawLinesIntoPipe(t, false) })
	t.Run("splice", func(t *testing.T) { testTailerRawLinesIntoPipe(t, true) })
}

func testTailerRawLinesIntoPipe(t *testing.T, splice bool) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.log")
	content, want := pipeTestLines(20000, true)
	appendFile(t, app, content[:10000]...)
	var opts []Option
	if splice {
		opts = append(opts, WithSpliceFromFile())
	}
	tl, sink, r, w := pipeTailer(t, dir, opts...)
	got := slowReader(r, 3000, 50)
	stop := runTailer(t, tl)
	appendFile(t, app, content[10000:]...)
	await.True(t, "every line seen", 30*time.Second, func() bool {
		return counterValue(tl.m.skipped.WithLabelValues("binary"))+counterValue(tl.m.skipped.WithLabelValues("too_long"))+
			counterValue(tl.m.lines) == float64(len(content))
	})
	stop()
	w.Close()
	out := <-got
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("pipe (-want +got):\n%s", diff)
	}
	if sink.pipe.written != uint64(len(want)) {
		t.Errorf("%d bytes written through the pipe path, want %d", sink.pipe.written, len(want))
	}
	// Spliced, most lines go in as the file's pages: all but the rest of a line read after the
	// capture, and the lines after a skipped one up to the next read. By default none does.
	if splice && sink.pipe.spliced < sink.pipe.written/2 {
		t.Errorf("%d of %d bytes spliced from the file, want at least half", sink.pipe.spliced, sink.pipe.written)
	}
	if !splice && sink.pipe.spliced != 0 {
		t.Errorf("%d bytes spliced from the file without WithSpliceFromFile", sink.pipe.spliced)
	}
}

// The pipe holds the file's page-cache pages of the lines shipped (see pipeOut): a truncation
// (copytruncate) and new lines written over the same offsets, while the old lines still wait in
// the pipe, change nothing of what the reader gets. The reader starts once the new lines are in
// the file: the Tailer reads lines appended one at a time in small pieces, and each splice takes a
// slot of the pipe, so the new lines alone can fill its slots before they are all shipped.
func TestSplicedLinesSurviveTruncation(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.log")
	var old, new []string
	for i := range 3000 {
		old = append(old, fmt.Sprintf("old %06d %s", i, strings.Repeat("o", i%50)))
		new = append(new, fmt.Sprintf("new %06d %s", i, strings.Repeat("n", i%50)))
	}
	appendFile(t, app, old...)
	tl, sink, r, w := rawPipeTailer(t, dir, 1<<20, WithSpliceFromFile())
	stop := runTailer(t, tl)
	await.True(t, "old lines shipped", 20*time.Second, func() bool { return counterValue(tl.m.lines) == float64(len(old)) })
	if err := os.Truncate(app, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, app, new...)
	got := slowReader(r, 64<<10, 1<<30)
	await.True(t, "new lines shipped", 20*time.Second, func() bool { return counterValue(tl.m.lines) == float64(len(old)+len(new)) })
	stop()
	w.Close()
	if sink.pipe.spliced == 0 {
		t.Fatal("nothing spliced: the test does not test what it is for")
	}
	want := strings.Join(old, "\n") + "\n" + strings.Join(new, "\n") + "\n"
	if diff := cmp.Diff(want, string(<-got)); diff != "" {
		t.Errorf("pipe (-want +got):\n%s", diff)
	}
}

// Lines spliced from the files of a log rotated by rename every 10 to 60 lines, with lines written
// to the old descriptor after the rename, reach the pipe once each and whole: the staged bytes of
// one file are never taken for another's.
func TestSplicedRotationShipsEveryLineOnce(t *testing.T) {
	dir := t.TempDir()
	const total = 3000
	tl, sink, r, w := rawPipeTailer(t, dir, 64<<10, WithSpliceFromFile())
	got := slowReader(r, 3000, 20)
	stop := runTailer(t, tl)
	seed := uint64(time.Now().UnixNano())
	t.Logf("writer seed %d", seed)
	if _, err := rotatingWriter(dir, total, 0, rand.New(rand.NewPCG(seed, 1)), nil); err != nil {
		t.Fatal(err)
	}
	await.True(t, "every line shipped", 30*time.Second, func() bool { return counterValue(tl.m.lines) >= total })
	stop()
	w.Close()
	counts := make([]int, total)
	for _, l := range strings.Split(strings.TrimSuffix(string(<-got), "\n"), "\n") {
		num, rest, ok := strings.Cut(strings.TrimPrefix(l, "n="), " ")
		n, err := strconv.Atoi(num)
		if !strings.HasPrefix(l, "n=") || !ok || len(num) != 6 || err != nil || n >= total ||
			rest != "late" && strings.Trim(rest, "x") != "" {
			t.Fatalf("line %q is not one the writer wrote", l)
		}
		counts[n]++
	}
	for n, c := range counts {
		if c != 1 {
			t.Errorf("line %d shipped %d times", n, c)
		}
	}
	if sink.pipe.spliced == 0 {
		t.Error("nothing spliced from the files: the splice path was not tested")
	}
}

// Each splice takes a slot of the pipe for each page it touches, however few bytes it moves, and
// pipeOut counts them: short spliced ranges into a pipe whose reader is away fill its slots long
// before FIONREAD shows it full, and a raw write into a pipe without a free slot blocks in the
// kernel (or fails on a non-blocking pipe, like this one) instead of waiting for the reader.
func TestPipeOutCountsSlotsOfSplices(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.log")
	var lines []string
	for i := range 200 {
		lines = append(lines, fmt.Sprintf("line %03d", i))
	}
	appendFile(t, app, lines...)
	f, err := os.Open(app)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w := newTestPipe(t, 64<<10) // 16 slots
	p := newPipeOut(w, true)
	defer p.dropStage()
	res := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // away while the slots fill
		res <- <-slowReader(r, 4096, 1<<30)
	}()
	var off int64
	for _, l := range lines {
		b := []byte(l + "\n")
		p.capture(f, off, len(b))
		if n, err := p.write(context.Background(), b, f, off); n != len(b) || err != nil {
			t.Fatalf("write of the line at %d: %d bytes, %v", off, n, err)
		}
		off += int64(len(b))
	}
	w.Close()
	want := strings.Join(lines, "\n") + "\n"
	if out := <-res; string(out) != want {
		t.Errorf("the reader got %d bytes, want %d", len(out), len(want))
	}
	if p.spliced == 0 {
		t.Error("nothing spliced: the test does not test what it is for")
	}
}

// A raw WriterSink's pipe may be read by a program that splices it on into a socket (Go's
// io.Copy from a pipe to a TCP connection does): the pages then stay referenced by the socket's
// send queue after they left the pipe, so the sink must not hand the pipe pages it writes to again
// (vmsplice from its read buffers did: a fifth of the bytes arrived overwritten by later lines).
func TestPipeReaderSplicingToSocketGetsTheLines(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.log")
	content, want := pipeTestLines(10000, false)
	tl, sink, r, w := pipeTailer(t, dir, WithSpliceFromFile())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(conns)
			return
		}
		c.(*net.TCPConn).SetReadBuffer(16 << 10)
		conns <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	f, _ := c.(*net.TCPConn).File()
	c.Close()
	peer, ok := <-conns
	if !ok {
		t.Fatal("accept failed")
	}
	defer peer.Close()
	got := slowReader(peer, 1000, 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		for {
			n, err := syscall.Splice(int(r.Fd()), nil, int(f.Fd()), nil, 1<<20, 0)
			if n == 0 || err != nil {
				return
			}
		}
	}()
	stop := runTailer(t, tl)
	appendFile(t, app, content...)
	await.True(t, "every line seen", 60*time.Second, func() bool {
		return counterValue(tl.m.lines) == float64(len(content))
	})
	stop()
	w.Close()
	<-done
	out := <-got
	if string(out) != want {
		bad := 0
		for i := range min(len(out), len(want)) {
			if out[i] != want[i] {
				bad++
			}
		}
		t.Errorf("socket got %d bytes, want %d; %d bytes differ", len(out), len(want), bad)
	}
	if sink.pipe.spliced == 0 {
		t.Error("nothing spliced from the file: the file's pages were not tested")
	}
}

// pipeOut learns the pipe's room once (FIONREAD) and writes as many pieces into it as fit, instead
// of asking before each piece (in bench/sidecar an ioctl per 4 KiB write, 22,400 per run).
func TestPipeOutAsksForRoomOncePerFill(t *testing.T) {
	r, w := newTestPipe(t, 1<<20)
	p := newPipeOut(w, true)
	if p == nil {
		t.Fatal("no pipeOut for a pipe")
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	got := slowReader(r, 64<<10, 1<<30)
	n, err := p.write(context.Background(), data, nil, 0)
	w.Close()
	out := <-got
	if n != len(data) || err != nil || !bytes.Equal(out, data) {
		t.Fatalf("write: %d bytes, %v; the reader got %d bytes (equal: %t), want %d", n, err, len(out), bytes.Equal(out, data), len(data))
	}
	if pieces := len(data) / pipePiece; p.waits > pieces/8 {
		t.Errorf("%d pieces written after %d looks for room, want at least 8 pieces a look", pieces, p.waits)
	}
}

// With a raw WriterSink on a pipe the Tailer reads in calls of readPiece bytes (preads), and
// those return what f.ReadAt does: the bytes across the pieces' boundaries, io.EOF at the end. With
// a JSON sink it reads in one call.
func TestTailerReadsPipeSinkChunksInPieces(t *testing.T) {
	app := filepath.Join(t.TempDir(), "app.log")
	data := make([]byte, 3*readPiece+1234)
	for i := range data {
		data[i] = byte(i*7 + i>>16)
	}
	f := createOpen(t, app, data)
	_, w := newTestPipe(t, 64<<10)
	tl, err := NewTailer([]string{app}, NewWriterSink(w, WithFormat(FormatRaw)))
	if err != nil {
		t.Fatal(err)
	}
	if tl.piece != readPiece {
		t.Fatalf("piece %d with a raw pipe sink, want %d", tl.piece, readPiece)
	}
	for _, c := range []struct {
		off, size int
		eof       bool
	}{{0, len(data), false}, {100, 2*readPiece + 5, false}, {100, len(data), true}, {len(data), 10, true}} {
		b := make([]byte, c.size)
		n, err := tl.readAt(f, b, int64(c.off))
		want := data[c.off:min(len(data), c.off+c.size)]
		if !bytes.Equal(b[:n], want) {
			t.Errorf("readAt(off %d, %d bytes): %d bytes, not the file's %d", c.off, c.size, n, len(want))
		}
		if (err == io.EOF) != c.eof || err != nil && err != io.EOF {
			t.Errorf("readAt(off %d, %d bytes): error %v, want EOF %v", c.off, c.size, err, c.eof)
		}
	}
	js, err := NewTailer([]string{app}, NewWriterSink(w))
	if err != nil {
		t.Fatal(err)
	}
	if js.piece != 0 {
		t.Errorf("piece %d with a JSON sink, want 0 (one read call)", js.piece)
	}
}
