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
	free     int    // bytes the pipe surely has room for: as of the last FIONREAD, less those written since
	written  uint64 // bytes written into the pipe through this pipeOut (tests)
	waits    int    // calls of room (tests)
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
	_ = rc.Control(func(fd uintptr) { p.capacity = pipeSize(int(fd)) })
	if p.capacity <= 0 {
		return nil
	}
	return p
}

// pipeSize is the capacity of the pipe fd (F_GETPIPE_SZ), -1 on error.
func pipeSize(fd int) int {
	r, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), fGetPipeSz, 0)
	if e != 0 {
		return -1
	}
	return int(r)
}

// unread is how many bytes the pipe fd holds (FIONREAD), -1 on error.
func unread(fd int) int {
	var n int32
	if _, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); e != 0 {
		return -1
	}
	return int(n)
}

// write writes b (complete lines) into the pipe in pieces of at most pipePiece bytes, all inside
// one Control. It returns how many bytes went in; an error leaves the rest to the caller.
//
// A piece the pipe is known to have room for is a raw write(2) (internal/rawsys), which copies and
// returns without blocking and does not enter the Go runtime's syscall state (so sysmon does not
// wake to hand the P off). The room is learnt with FIONREAD (see room) and counted down by the
// bytes written, so one FIONREAD serves as many pieces as fit: the reader only adds room meanwhile.
// Only when the reader left too little room within the pacing budget does a piece go to f.Write,
// which waits for room as the file does (blocking in the kernel, or in the runtime's poller).
func (p *pipeOut) write(b []byte) (int, error) {
	done := 0
	var err error
	p.free = 0 // room counted in an earlier call may have been taken by another writer of the pipe
	cerr := p.rc.Control(func(fd uintptr) {
		for done < len(b) && err == nil {
			piece := b[done:min(len(b), done+pipePiece)]
			if p.free < len(piece) {
				p.free = p.room(int(fd), len(piece))
			}
			var n int
			if p.free >= len(piece) {
				n, err = p.writeRaw(int(fd), piece)
				p.free -= n
			} else {
				n, err = p.f.Write(piece)
			}
			done += n
			p.written += uint64(n)
		}
	})
	if err == nil {
		err = cerr
	}
	return done, err
}

// writeRaw writes all of b, which the pipe fd has room for, in raw write calls.
func (p *pipeOut) writeRaw(fd int, b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, e := rawsys.Write(fd, b[done:])
		switch {
		case e == syscall.EINTR:
		case e != 0:
			return done, &os.PathError{Op: "write", Path: p.f.Name(), Err: e}
		default:
			done += n
		}
	}
	return done, nil
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

// room sleeps paceSleep at a time, at most paceBudget times (2ms), before a write blocks in the
// kernel instead.
const (
	paceSleep  = 50e3 // ns
	paceBudget = 40
)

// room returns how many bytes the pipe fd surely has room for, waiting for at least n: when it has
// less, room waits in short sleeps that do not involve the Go scheduler until the reader emptied
// at least half of it, or paceBudget ran out (then it returns what there is, maybe less than n).
// FIONREAD counts bytes, the pipe's capacity is in pages, and the pages at the pipe's two ends may
// be partly filled, hence two pages of margin.
func (p *pipeOut) room(fd, n int) int {
	p.waits++
	u := unread(fd)
	if u < 0 {
		return 0
	}
	if u > p.capacity { // the reader enlarged the pipe
		p.capacity = max(p.capacity, pipeSize(fd))
	}
	if p.capacity-u >= n+pipeMargin {
		return p.capacity - u - pipeMargin
	}
	ts := syscall.Timespec{Nsec: paceSleep}
	for range paceBudget {
		// A raw nanosleep: through the runtime, every sleep over 20µs would hand the P off and
		// keep sysmon polling at its fastest rate.
		_, _, _ = syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		if u = unread(fd); u < 0 {
			return 0
		}
		if u <= p.capacity/2 {
			break
		}
	}
	return max(p.capacity-u-pipeMargin, 0)
}

// pipeMargin is the room beyond a write's bytes that room keeps back: the partly filled pages at
// the pipe's head and tail.
const pipeMargin = 2 << 12
