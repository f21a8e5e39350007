//go:build linux

package sidecar

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

// pipeOut writes the lines of a raw WriterSink into a pipe synchronously, straight from the
// buffer the Tailer read them into (no copy into a sink buffer, no writing goroutine), and paces
// its writes to the reader.
//
// It copies the bytes into the pipe with write(2). Handing the pipe the read buffer's pages
// instead (vmsplice) saved a copy, but the pipe's reader may splice them on, into a socket say,
// where they stay referenced after they left the pipe: a buffer the Tailer reads into again then
// changes bytes already sent (TestPipeReaderSplicingToSocketGetsTheLines).
//
// Writes are paced: when the pipe has no room for the next piece, pipeOut sleeps (50µs at a time,
// up to 2ms) until the reader emptied half of it, instead of blocking in the kernel, which wakes the
// writer each time the reader frees a page (a wake-up every 8 KiB read by `head`, ~11,000 per
// 92 MB in bench/sidecar, and with them the Go runtime's sysmon polling every 20µs).
type pipeOut struct {
	f        *os.File // the pipe's write end
	rc       syscall.RawConn
	capacity int
	written  uint64 // bytes written into the pipe through this pipeOut (tests)
}

const (
	fGetPipeSz = 1032 // F_GETPIPE_SZ
	// pipePiece is the most one write call moves: the reader takes a piece while the next
	// is written, and each call stays shorter than sysmon's 20µs tick.
	pipePiece = 64 << 10
)

// newPipeOut returns a pipeOut when w is the write end of a pipe, else nil.
func newPipeOut(w io.Writer) *pipeOut {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	p := &pipeOut{f: f, rc: rc}
	if p.capacity = p.pipeSize(); p.capacity <= 0 {
		return nil
	}
	return p
}

// pipeSize is the pipe's capacity (F_GETPIPE_SZ), -1 on error.
func (p *pipeOut) pipeSize() int {
	size := -1
	_ = p.rc.Control(func(fd uintptr) {
		if r, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, fd, fGetPipeSz, 0); e == 0 {
			size = int(r)
		}
	})
	return size
}

// unread is how many bytes the pipe holds (FIONREAD), -1 on error.
func (p *pipeOut) unread() int {
	var n int32
	ok := false
	_ = p.rc.Control(func(fd uintptr) {
		_, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
		ok = e == 0
	})
	if !ok {
		return -1
	}
	return int(n)
}

// write writes b (complete lines) into the pipe. It returns how many bytes went in; an error
// leaves the rest to the caller.
func (p *pipeOut) write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		piece := b[done:min(len(b), done+pipePiece)]
		p.pace(len(piece))
		n, err := p.f.Write(piece)
		done += n
		p.written += uint64(n)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// pace sleeps paceSleep at a time, at most paceBudget times (2ms), before the write blocks in the
// kernel instead.
const (
	paceSleep  = 50e3 // ns
	paceBudget = 40
)

// pace waits, in short sleeps that do not involve the Go scheduler, until the pipe has room for n
// bytes and the reader emptied at least half of it, or paceBudget ran out.
func (p *pipeOut) pace(n int) {
	u := p.unread()
	if u < 0 || p.capacity-u >= n {
		return
	}
	if u > p.capacity { // the reader enlarged the pipe
		p.capacity = max(p.capacity, p.pipeSize())
	}
	ts := syscall.Timespec{Nsec: paceSleep}
	for range paceBudget {
		// A raw nanosleep: through the runtime, every sleep over 20µs would hand the P off and
		// keep sysmon polling at its fastest rate.
		_, _, _ = syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		if u := p.unread(); u < 0 || u <= p.capacity/2 {
			return
		}
	}
}
