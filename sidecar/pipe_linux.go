//go:build linux

package sidecar

import (
	"io"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// pipeOut writes the lines of a raw WriterSink into a pipe without copying them: the Tailer reads
// the file into slots of pipeOut's ring (readBuffer), and Write hands the lines' pages to the pipe
// with vmsplice(2); the pipe's reader copies them out. Without it logship copied every byte twice
// more (read buffer -> sink buffer -> pipe), half its CPU in bench/sidecar.
//
// The pipe references the ring's pages until its reader has read them, so a slot is handed out again
// only once every byte spliced from it has been read: when the bytes in the pipe (FIONREAD) are no
// more than the bytes written after that slot's last splice (the pipe is FIFO). Otherwise the Tailer
// reads into its own buffer and Write copies those lines into the pipe with write(2). The ring is
// mapped outside the Go heap: the pipe may keep its pages after the sink is gone, and unmapping
// them then does not change what the pipe holds.
//
// Writes are paced: when the pipe has no room for the next piece, pipeOut sleeps (50µs at a time,
// up to 2ms) until the reader emptied half of it, instead of blocking in the kernel, which wakes the
// writer each time the reader frees a page (a wake-up every 8 KiB read by `head`, ~11,000 per
// 92 MB in bench/sidecar, and with them the Go runtime's sysmon polling every 20µs).
type pipeOut struct {
	f        *os.File // the pipe's write end (kept open and reachable)
	rc       syscall.RawConn
	capacity int

	ring    []byte   // nil until the first readBuffer
	slot    int      // bytes per slot
	next    int      // the slot readBuffer hands out next
	after   []uint64 // per slot: written after its last splice, 0 if none
	written uint64   // bytes written into the pipe through this pipeOut

	spliced, copied uint64 // bytes spliced from the ring and written from elsewhere (tests)
}

const (
	fGetPipeSz = 1032 // F_GETPIPE_SZ
	pipeSlots  = 2    // slots beyond the pipe's capacity in the ring
	// pipePiece is the most one vmsplice or write call moves: the reader takes a piece while the next
	// is spliced, and each call stays shorter than sysmon's 20µs tick.
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

// readBuffer returns a free slot of n bytes to read into, or nil when none is free (or n is not
// the slot size fixed by the first call).
func (p *pipeOut) readBuffer(n int) []byte {
	if p.ring == nil {
		slots := (p.capacity+n-1)/n + pipeSlots
		ring, err := syscall.Mmap(-1, 0, slots*n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
		if err != nil {
			p.capacity = 0 // no ring: copy everything
			return nil
		}
		p.ring, p.slot, p.after = ring, n, make([]uint64, slots)
		runtime.AddCleanup(p, func(b []byte) { _ = syscall.Munmap(b) }, ring)
	}
	if n != p.slot {
		return nil
	}
	k := p.next
	if a := p.after[k]; a != 0 {
		if u := p.unread(); u < 0 || uint64(u) > p.written-a {
			return nil // its bytes may still be in the pipe
		}
	}
	p.next = (k + 1) % len(p.after)
	return p.ring[k*n : (k+1)*n : (k+1)*n]
}

// ringSlot is the slot b lies in, -1 when b is not (wholly) in the ring.
func (p *pipeOut) ringSlot(b []byte) int {
	if len(b) == 0 || p.ring == nil {
		return -1
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(p.ring)))
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if start < base || start+uintptr(len(b)) > base+uintptr(len(p.ring)) {
		return -1
	}
	k := int(start-base) / p.slot
	if int(start-base+uintptr(len(b))-1)/p.slot != k {
		return -1
	}
	return k
}

// write writes b (complete lines) into the pipe, splicing it when it lies in the ring and copying
// it otherwise. It returns how many bytes went in; an error leaves the rest to the caller.
func (p *pipeOut) write(b []byte) (int, error) {
	k := p.ringSlot(b)
	done := 0
	for done < len(b) {
		piece := b[done:min(len(b), done+pipePiece)]
		p.pace(len(piece))
		var n int
		var err error
		if k >= 0 {
			n, err = p.vmsplice(piece)
		} else {
			n, err = p.f.Write(piece)
		}
		done += n
		p.written += uint64(n)
		if k >= 0 {
			p.spliced += uint64(n)
			p.after[k] = p.written
		} else {
			p.copied += uint64(n)
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// vmsplice hands b's pages to the pipe, waiting for room like a write (through the poller when the
// descriptor is non-blocking).
func (p *pipeOut) vmsplice(b []byte) (int, error) {
	done := 0
	var serr error
	err := p.rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			iov := syscall.Iovec{Base: &b[done]}
			iov.SetLen(len(b) - done)
			n, _, e := syscall.Syscall6(syscall.SYS_VMSPLICE, fd, uintptr(unsafe.Pointer(&iov)), 1, 0, 0, 0)
			switch e {
			case 0:
				done += int(n)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait until writable
			default:
				serr = e
				return true
			}
		}
		return true
	})
	runtime.KeepAlive(b)
	if serr != nil {
		err = serr
	}
	if err != nil {
		return done, &os.PathError{Op: "vmsplice", Path: p.f.Name(), Err: err}
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
