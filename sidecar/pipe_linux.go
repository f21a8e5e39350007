//go:build linux

package sidecar

import (
	"io"
	"os"
	"syscall"
	"unsafe"

	"github.com/podblocks/podblocks/internal/rawsys"
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
	// pipePiece is the most one write call moves, as much as `tail -F` writes: the pipe's reader
	// waits for the pipe's lock while a write copies, and short writes keep those waits short (in
	// bench/sidecar, `head` used less CPU and the runs were faster than with 16 or 64 KiB pieces).
	pipePiece = 4 << 10
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
		var n int
		var err error
		if p.pace(len(piece)) {
			n, err = p.writeRaw(piece)
		} else {
			n, err = p.f.Write(piece)
		}
		done += n
		p.written += uint64(n)
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// writeRaw writes b with a raw write(2) (internal/rawsys), which does not enter the Go runtime's syscall state (so
// sysmon does not wake to hand the P off). Only for a b the pipe has room for: the call copies and
// returns without blocking.
func (p *pipeOut) writeRaw(b []byte) (int, error) {
	done := 0
	var err error
	cerr := p.rc.Control(func(fd uintptr) {
		for done < len(b) {
			r, e := rawsys.Write(int(fd), b[done:])
			if e == syscall.EINTR {
				continue
			}
			if e != 0 {
				err = &os.PathError{Op: "write", Path: p.f.Name(), Err: e}
				return
			}
			done += r
		}
	})
	if err == nil {
		err = cerr
	}
	return done, err
}

// readRaw reads len(b) bytes at off, like f.ReadAt, in raw pread(2) calls of at most piece bytes:
// f is a regular file, whose reads copy from the page cache without waiting, so they need not enter
// the Go runtime's syscall state. One Control holds the descriptor for all of them.
func readRaw(f *os.File, b []byte, off int64, piece int) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return f.ReadAt(b, off)
	}
	done := 0
	cerr := rc.Control(func(fd uintptr) {
		for done < len(b) {
			n, e := rawsys.Pread(int(fd), b[done:min(len(b), done+piece)], off+int64(done))
			switch {
			case e == syscall.EINTR:
			case e != 0:
				err = &os.PathError{Op: "read", Path: f.Name(), Err: e}
				return
			case n == 0:
				err = io.EOF
				return
			default:
				done += n
			}
		}
	})
	if err == nil {
		err = cerr
	}
	return done, err
}

// pace sleeps paceSleep at a time, at most paceBudget times (2ms), before the write blocks in the
// kernel instead.
const (
	paceSleep  = 50e3 // ns
	paceBudget = 40
)

// pace waits, in short sleeps that do not involve the Go scheduler, until the pipe has room for n
// bytes and the reader emptied at least half of it, or paceBudget ran out. It reports whether the
// pipe surely has room for n bytes now: FIONREAD counts bytes, the pipe's capacity is in pages, and
// the pages at the pipe's two ends may be partly filled, hence two pages of margin.
func (p *pipeOut) pace(n int) bool {
	u := p.unread()
	if u < 0 {
		return false
	}
	if u > p.capacity { // the reader enlarged the pipe
		p.capacity = max(p.capacity, p.pipeSize())
	}
	if p.capacity-u >= n+pipeMargin {
		return true
	}
	ts := syscall.Timespec{Nsec: paceSleep}
	for range paceBudget {
		// A raw nanosleep: through the runtime, every sleep over 20µs would hand the P off and
		// keep sysmon polling at its fastest rate.
		_, _, _ = syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		if u = p.unread(); u < 0 {
			return false
		}
		if u <= p.capacity/2 {
			return p.capacity-u >= n+pipeMargin
		}
	}
	return false
}

// pipeMargin is the room beyond a write's bytes that pace wants before it reports room: the
// partly filled pages at the pipe's head and tail.
const pipeMargin = 2 << 12
