//go:build linux

package sidecar

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// The pipe references the pages spliced into it until its reader took them: a slot of the ring is
// not handed out again (for the Tailer to read the next bytes into) while its bytes are unread.
func TestPipeOutKeepsSlotsUntilRead(t *testing.T) {
	const page = 4096
	r, w := newTestPipe(t, 4*page)
	p := newPipeOut(w)
	if p == nil {
		t.Fatal("no pipeOut for a pipe")
	}
	var want bytes.Buffer
	for i := range 4 { // fills the pipe
		b := p.readBuffer(page)
		if b == nil {
			t.Fatalf("slot %d: nil", i)
		}
		copy(b, bytes.Repeat([]byte{'a' + byte(i)}, page-1))
		b[page-1] = '\n'
		if n, err := p.write(b); n != page || err != nil {
			t.Fatalf("write slot %d: %d %v", i, n, err)
		}
		want.Write(b)
	}
	for i := 4; i < len(p.after); i++ { // the slots beyond the pipe's capacity are free
		if p.readBuffer(page) == nil {
			t.Fatalf("slot %d: nil", i)
		}
	}
	if b := p.readBuffer(page); b != nil {
		copy(b, bytes.Repeat([]byte{'z'}, page)) // what the Tailer would do: read the next chunk into it
		t.Error("slot 0 handed out again while its bytes are in the pipe")
	}
	got := make([]byte, page)
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if b := p.readBuffer(page); b == nil {
		t.Error("slot 0 not handed out once its bytes were read")
	} else {
		copy(b, bytes.Repeat([]byte{'z'}, page))
	}
	rest := make([]byte, 3*page)
	if _, err := io.ReadFull(r, rest); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(got, rest...), want.Bytes()) {
		t.Error("the pipe's bytes changed after they were spliced")
	}
	if p.spliced != 4*page || p.copied != 0 {
		t.Errorf("spliced %d, copied %d bytes; want %d, 0", p.spliced, p.copied, 4*page)
	}
}

// A raw WriterSink on a pipe ships the Tailer's lines by splicing them from its read buffers, with
// a reader that takes them slowly and in small pieces (the ring laps many times and the writer
// waits for room), the same bytes as a file sink would get: binary and over-long lines skipped, a
// line split across reads whole.
func TestTailerSplicesRawLinesIntoPipe(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.log")
	var content []string
	var want strings.Builder
	for i := range 20000 {
		l := fmt.Sprintf("%06d %s", i, strings.Repeat("x", i%150))
		switch i % 997 {
		case 11:
			l += "\x00 binary"
		case 12:
			l = strings.Repeat("long ", 60) // over the 256-byte limit
		default:
			want.WriteString(l + "\n")
		}
		content = append(content, l)
	}
	appendFile(t, app, content[:10000]...)
	r, w := newTestPipe(t, 16<<10)
	sink := NewWriterSink(w, WithFormat(FormatRaw))
	if sink.pipe == nil {
		t.Fatal("no pipeOut for a pipe")
	}
	tl, err := NewTailer([]string{filepath.Join(dir, "*.log")}, sink, WithMaxLineBytes(256), WithReadChunkBytes(8<<10),
		WithPollInterval(20*time.Millisecond), WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		var out []byte
		buf := make([]byte, 3000)
		for i := 0; ; i++ {
			n, err := r.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				got <- out
				return
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	stop := runTailer(t, tl)
	appendFile(t, app, content[10000:]...)
	await.True(t, "every line seen", 30*time.Second, func() bool {
		return counterValue(tl.m.skipped.WithLabelValues("binary"))+counterValue(tl.m.skipped.WithLabelValues("too_long"))+
			counterValue(tl.m.lines) == float64(len(content))
	})
	stop()
	w.Close()
	out := <-got
	if diff := cmp.Diff(want.String(), string(out)); diff != "" {
		t.Errorf("pipe (-want +got):\n%s", diff)
	}
	if sink.pipe.spliced == 0 || sink.pipe.spliced+sink.pipe.copied != uint64(want.Len()) {
		t.Errorf("spliced %d + copied %d bytes, want %d with some spliced", sink.pipe.spliced, sink.pipe.copied, want.Len())
	}
}
