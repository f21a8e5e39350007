//go:build linux

package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/podblocks/podblocks/internal/rawsys"
	"golang.org/x/sys/unix"
)

// pipeOut writes the lines of a raw WriterSink into a pipe synchronously, straight from the
// buffer the Tailer read them into (no copy into a sink buffer, no writing goroutine), and paces
// its writes to the reader. A JSON WriterSink's goroutine writes its batches into a pipe with it too,
// unpaced (see paced). Either way a write waits for room only while its ctx lasts (see write).
//
// By default the lines are written with write(2), a copy of the bytes the Tailer read: what the
// pipe holds is then the pipe's own, whatever happens to the file afterwards.
//
// With WithSpliceFromFile (WriterSink.splice), lines that are a file's bytes (Record.from) go into
// the pipe as the file's page-cache pages, without a copy: before the Tailer reads a chunk it has the sink capture the same byte range of
// the file into a staging pipe (splice(2) from the file, see capture), and the lines are then moved
// from there into the output pipe (splice between the pipes). Capturing before the read, the
// staging pipe holds the pages the read copied from, so the bytes shipped are the bytes the Tailer
// read and checked, as with a write; a file truncated and regrown in between fails the Tailer's
// start check after the read and nothing of that chunk is shipped. Page-cache pages are not
// rewritten when the file is appended to or truncated to zero (truncation drops them from the file,
// its later bytes go to new pages), so the pipe's bytes stay what was read even when its reader
// splices them on into a socket, where they stay referenced after they left the pipe
// (TestPipeReaderSplicingToSocketGetsTheLines). But an in-place rewrite of bytes still in the pipe,
// a hole punched over them, or a truncation to a size inside their page (which zeroes the page's
// rest) changes lines already counted delivered and checkpointed (TestPartialTruncateKeepsShippedLines
// and the tests after it fail with splicing): hence opt-in, for append-only logs only. Other bytes (the rest of a line read after the capture, lines
// after a skipped one, a file system without splice) are copied with write(2). Handing the pipe the
// read buffer's pages instead (vmsplice) was wrong: a buffer the Tailer reads into again changed
// bytes a reader had spliced on into a socket.
//
// Writes are paced: when the pipe has no room for the next piece, pipeOut sleeps (50µs at a time,
// up to 2ms) until the reader emptied half of it, instead of waiting in the kernel, which wakes the
// writer each time the reader frees a page (a wake-up every 8 KiB read by `head`, ~11,000 per
// 92 MB in bench/sidecar, and with them the Go runtime's sysmon polling every 20µs).
type pipeOut struct {
	f        *os.File // the pipe's write end
	rc       syscall.RawConn
	capacity int
	// paced is set for a writer that may hold its thread while it waits for room (the Tailer's own
	// goroutine, for raw lines): room then sleeps in raw calls first (see room). A writer beside the
	// Tailer (the JSON writing goroutine) waits in ppoll at once, which hands the P off.
	paced   bool
	free    int    // bytes the pipe surely has room for: as of the last FIONREAD, less those written since
	written uint64 // bytes written into the pipe through this pipeOut (tests)
	spliced uint64 // of them, moved from the staging pipe (tests)
	waits   int    // calls of room (tests)
	// slack holds, oldest first, the writes and splices of the ones still in the pipe that take
	// more of its room than their bytes (see reserve), and slackRoom the sum of their extra room.
	slack     []slack
	slackRoom int
	st        stage
}

// slack is a write or splice into the pipe that takes room beyond its bytes: partly filled pages.
type slack struct {
	end  uint64 // where in the bytes written (counted as written) it ended
	room int    // the room it takes beyond its bytes
}

// stage is the staging pipe that holds a range of a file's page-cache pages (see capture).
type stage struct {
	r, w int      // its ends; -1 while not open
	f    *os.File // the file whose bytes it holds
	off  int64    // the file offset of its first byte
	n    int      // how many bytes it holds
	// unsupported is set when splice from a file failed as not supported (a file system without
	// it, a seccomp filter): not tried again.
	unsupported bool
}

const (
	fSetPipeSz = 1031 // F_SETPIPE_SZ
	fGetPipeSz = 1032 // F_GETPIPE_SZ
	// pipePiece is the most one write call moves, as much as `tail -F` writes: the pipe's reader
	// waits for the pipe's lock while a write copies, and short writes keep those waits short (in
	// bench/sidecar, `head` used less CPU and the runs were faster than with 16 or 64 KiB pieces).
	pipePiece = 4 << 10
)

// newPipeOut returns a pipeOut when w is the write end of a pipe, else nil; paced: see pipeOut.paced.
func newPipeOut(w io.Writer, paced bool) *pipeOut {
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
	p := &pipeOut{f: f, rc: rc, paced: paced, st: stage{r: -1, w: -1}}
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

// write writes b (complete lines) into the pipe, all inside one Control. When from is set, b is
// from's bytes at off followed in the file by a newline (a Record.from), and what of it the staging
// pipe holds is moved from there (spliceStaged). The rest goes in pieces of at most pipePiece bytes.
// It returns how many bytes went in; an error leaves the rest to the caller.
//
// A piece the pipe is known to have room for is a raw write(2) (internal/rawsys), which copies and
// returns without blocking and does not enter the Go runtime's syscall state (so sysmon does not
// wake to hand the P off). The room is learnt with FIONREAD (see room) and counted down by the
// bytes written, so one FIONREAD serves as many pieces as fit: the reader only adds room meanwhile.
// Only when the reader left too little room within the pacing budget does a piece wait for room in
// the kernel (writeWhenRoom), and that wait ends with ctx: a reader that stopped reading cannot keep
// the Tailer from stopping. A write that gives up returns ctx's error with the bytes written so far.
func (p *pipeOut) write(ctx context.Context, b []byte, from *os.File, off int64) (int, error) {
	done := 0
	var err error
	p.free = 0 // room counted in an earlier call may have been taken by another writer of the pipe
	cerr := p.rc.Control(func(fd uintptr) {
		if from != nil {
			done = p.spliceStaged(int(fd), from, off, len(b))
		}
		for done < len(b) && err == nil {
			piece := b[done:min(len(b), done+pipePiece)]
			if p.free < len(piece) {
				p.free = p.room(int(fd), len(piece))
			}
			var n int
			if smallPages && p.free >= len(piece) {
				n, err = p.writeRaw(int(fd), piece)
				if errors.Is(err, syscall.EAGAIN) {
					// A non-blocking pipe with less room than counted (another writer took it):
					// wait for room.
					err, p.free = nil, 0
				}
			} else {
				n, err = p.writeWhenRoom(ctx, int(fd), piece)
			}
			// Counted down also after writeWhenRoom: the room counted before it was less than
			// the piece it wrote, so none is left for the next piece, which asks again.
			p.free -= n
			done += n
			p.written += uint64(n)
			if rest := n % pipePage; rest != 0 {
				// Its last page is partly filled: a write after it that does not fit in the
				// page's rest takes a new slot and leaves the rest empty.
				p.addSlack(pipePage - rest)
				p.free -= pipePage - rest
			}
		}
	})
	if err == nil {
		err = cerr
	}
	if p.st.n > 0 && (err != nil || p.st.f != from || p.st.off != off+int64(len(b))) {
		// It holds bytes written from b meanwhile, or bytes of another place.
		p.dropStage()
	}
	return done, err
}

// Splice flags.
const (
	spliceMove     = 1 // SPLICE_F_MOVE
	spliceNonblock = 2 // SPLICE_F_NONBLOCK
)

// splicePipes moves up to n bytes from the pipe in to the pipe out without waiting for room or
// data: it moves pipe buffers, nothing waits, so it is a raw call.
func splicePipes(in, out, n int) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), spliceMove|spliceNonblock)
	return int(r), e
}

// spliceFile moves up to n bytes of the regular file in at *off into the pipe out. SPLICE_F_NONBLOCK
// only keeps it from waiting for room in the pipe: pages not in the page cache are read from the
// file system, which may take as long as it takes (FUSE, NFS), so it goes through the Go runtime's
// syscall state like any file read; a raw call there would hold up every stop-the-world of the
// runtime (a GC) for as long (TestColdFileReadDoesNotHoldUpGC).
func spliceFile(in int, off *int64, out, n int) (int, syscall.Errno) {
	r, _, e := syscall.Syscall6(syscall.SYS_SPLICE, uintptr(in), uintptr(unsafe.Pointer(off)), uintptr(out), 0,
		uintptr(n), spliceMove|spliceNonblock)
	return int(r), e
}

// stageSize is the capacity asked for the staging pipe: a read chunk and the line carried over.
const stageSize = 1 << 20

// capture puts the n bytes of f at off into the staging pipe, as far as they exist yet and fit,
// before the Tailer reads them (see pipeOut). It keeps what the pipe holds when that starts at off
// of f (the rest of the previous chunk's capture: the line it ended in and what followed) and adds
// the bytes after it; anything else there is dropped first. Best effort: what is not captured is
// written from the Tailer's buffer.
func (p *pipeOut) capture(f *os.File, off int64, n int) {
	st := &p.st
	if st.unsupported {
		return
	}
	if st.n > 0 && (st.f != f || st.off != off) {
		p.dropStage()
	}
	if st.n == 0 {
		st.f, st.off = f, off
	}
	if st.n >= n {
		return
	}
	if st.r < 0 {
		var fds [2]int
		if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
			return
		}
		st.r, st.w = fds[0], fds[1]
		_, _, _ = syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(st.w), fSetPipeSz, stageSize)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		for st.n < n {
			at := st.off + int64(st.n)
			k, e := spliceFile(int(fd), &at, st.w, n-st.n)
			switch {
			case e == syscall.EINTR:
			case e == syscall.EINVAL || e == syscall.ENOSYS || e == syscall.EOPNOTSUPP || e == syscall.EPERM:
				st.unsupported = true
				return
			case e != 0 || k == 0: // full (EAGAIN), the file's end, or an error the read will report
				return
			default:
				st.n += k
			}
		}
	})
	if st.unsupported {
		p.dropStage()
	}
}

// spliceStaged moves the first bytes of the staging pipe, up to n, into the pipe fd when they are
// from's bytes at off, pacing like write. It returns how many it moved; it stops early when the
// pipe's reader left no room within the pacing budget (write then waits for the rest) or the pipe
// failed (write then reports it).
func (p *pipeOut) spliceStaged(fd int, from *os.File, off int64, n int) int {
	st := &p.st
	if st.n == 0 || st.f != from || st.off != off {
		return 0
	}
	done, tries := 0, 0
	for want := min(n, st.n); done < want; {
		if p.free <= spliceSlack {
			// Ask for room for no more than half the pipe, which room waits for.
			if p.free = p.room(fd, min(want-done, p.capacity/2)+spliceSlack); p.free <= spliceSlack {
				break
			}
		}
		k, e := splicePipes(st.r, fd, min(want-done, p.free-spliceSlack))
		switch {
		case e == syscall.EINTR:
		case e == syscall.EAGAIN:
			// Out of slots though FIONREAD shows room (partly filled pages): wait for the reader.
			if tries++; tries > paceBudget {
				return done
			}
			p.free = 0
		case e != 0 || k == 0:
			return done
		default:
			done += k
			st.n -= k
			st.off += int64(k)
			p.free -= k + spliceSlack
			p.written += uint64(k)
			p.spliced += uint64(k)
			p.addSlack(spliceSlack)
		}
	}
	return done
}

// dropStage closes the staging pipe, releasing the pages it holds; capture opens a new one.
func (p *pipeOut) dropStage() {
	st := &p.st
	if st.r >= 0 {
		syscall.Close(st.r)
		syscall.Close(st.w)
	}
	st.r, st.w, st.f, st.n = -1, -1, nil, 0
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

// pollSlice is the longest writeWhenRoom waits in one ppoll before it looks at its ctx again: how
// late a write waiting for a stalled reader notices that the Tailer is stopping.
const pollSlice = 20 * time.Millisecond

// writeWhenRoom writes piece, at most pipePiece (PIPE_BUF) bytes, into the pipe fd once the pipe has
// room for it, or gives up without writing when ctx is done. It waits for POLLOUT in ppoll, through
// the runtime's syscall state (the P is handed off while it waits, as in a blocking write), at most
// pollSlice at a time, looking at ctx in between. POLLOUT means a free slot, which takes a write of
// up to PIPE_BUF bytes whole: the write does not block (unless another writer of the pipe took the
// slot meanwhile: on a non-blocking descriptor the write fails with EAGAIN and the wait goes on, on
// a blocking one it waits in the kernel as f.Write did). A pipe without readers reports POLLERR,
// and the write then fails with EPIPE.
func (p *pipeOut) writeWhenRoom(ctx context.Context, fd int, piece []byte) (int, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("wait for room in pipe %s: %w", p.f.Name(), err)
		}
		ts := unix.NsecToTimespec(int64(pollSlice)) // ppoll leaves the time not slept in it
		r, err := unix.Ppoll(pfd, &ts, nil)         // through the runtime's syscall state
		switch {
		case err == unix.EINTR || err == nil && r == 0: // interrupted, or no room within pollSlice
			continue
		case err != nil:
			return 0, &os.PathError{Op: "ppoll", Path: p.f.Name(), Err: err}
		}
		n, err := syscall.Write(fd, piece)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
		case err != nil:
			return 0, &os.PathError{Op: "write", Path: p.f.Name(), Err: err}
		default:
			return n, nil // all of piece (PIPE_BUF bytes go whole); the caller writes any rest
		}
	}
}

// room sleeps paceSleep at a time, at most paceBudget times (2ms), before a write waits for room in
// the kernel instead (writeWhenRoom).
const (
	paceSleep  = 50e3 // ns
	paceBudget = 40
)

// room returns how many bytes the pipe fd surely has room for, waiting for at least n when paced:
// when it has less, room waits in short sleeps that do not involve the Go scheduler until the
// reader emptied at least half of it, or paceBudget ran out (then it returns what there is, maybe
// less than n). FIONREAD counts bytes, the pipe's capacity is in pages (slots of a page or less),
// and the pages at the pipe's two ends may be partly filled, hence two pages of margin, and more for
// the partly filled pages that short writes and splices leave in it (see reserve).
func (p *pipeOut) room(fd, n int) int {
	p.waits++
	u := unread(fd)
	if u < 0 {
		return 0
	}
	if u > p.capacity { // the reader enlarged the pipe
		p.capacity = max(p.capacity, pipeSize(fd))
	}
	if free := p.capacity - u - pipeMargin - p.reserve(u); free >= n || !p.paced {
		return max(free, 0)
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
	return max(p.capacity-u-pipeMargin-p.reserve(u), 0)
}

// pipeMargin is the room beyond a write's bytes that room keeps back: the partly filled pages at
// the pipe's head and tail.
const pipeMargin = 2 << 12

// pipePage is the size of a pipe's slot (a page).
const pipePage = 4 << 10

// smallPages: the kernel's pages are pipePage bytes, as the count of room assumes (pipeMargin,
// spliceSlack, the rest of a page a short write leaves). With larger pages (64 KiB on some arm64 and
// ppc64le kernels) a pipe has fewer, larger slots than counted, and a raw write on that count could
// block in the kernel, where no stop ends it; there every piece waits for a free slot in
// writeWhenRoom instead (a ppoll more per piece). A var for the tests.
var smallPages = os.Getpagesize() == pipePage

// spliceSlack is the room a splice into the pipe may take beyond its bytes: a spliced range
// takes a slot for each page it touches, so up to two partly filled ones at its ends, and the
// write after it cannot fill up the last of them (only pages written by write are merged into),
// one more. Without counting them, a pipe holding many short spliced ranges could have no slot
// left while FIONREAD shows room, and a raw write would block in the kernel.
const spliceSlack = 3 << 12

// addSlack records that the write or splice that ended at p.written takes room more than its bytes.
func (p *pipeOut) addSlack(room int) {
	p.slack = append(p.slack, slack{end: p.written, room: room})
	p.slackRoom += room
}

// reserve is the room kept back for the writes and splices whose bytes are still in the pipe, which
// holds u bytes, beyond their bytes: spliceSlack for each splice, and for each write that ended
// inside a page the rest of that page (such writes, each shorter than a page, could otherwise fill
// all slots while FIONREAD shows room, and a raw write would block in the kernel: nothing
// interrupts it, not even a stop), counting those that ended after the first byte the reader has
// not taken (counting all of u as this pipeOut's bytes, which over-counts when other processes
// write too: when they hold more than all this pipeOut wrote, none of its writes is known to be
// taken).
func (p *pipeOut) reserve(u int) int {
	var taken uint64
	if uint64(u) < p.written {
		taken = p.written - uint64(u)
	}
	i := 0
	for ; i < len(p.slack) && p.slack[i].end <= taken; i++ {
		p.slackRoom -= p.slack[i].room
	}
	if i > 0 {
		p.slack = p.slack[:copy(p.slack, p.slack[i:])]
	}
	return p.slackRoom
}
