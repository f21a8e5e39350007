//go:build linux

package ambassador

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/podblocks/podblocks/internal/rawsys"
	"github.com/podblocks/podblocks/internal/uring"
	"golang.org/x/sys/unix"
)

// TCPProxy's event loops relay the bytes of connections whose endpoint is dialed: a goroutine per
// connection accepts, balances and dials as on the goroutine path, then hands both sockets to a
// loop (the fds duplicated with F_DUPFD_CLOEXEC, so they stay non-blocking and leave Go's
// netpoller). A loop owns them in its own edge-triggered epoll on a locked OS thread, as
// HTTPProxy's loops do (loop_linux.go), and moves each direction's bytes one of two ways:
//
//   - Copy (small messages, where every direction starts): one read of at most copyLen bytes into
//     the loop's buffer, kept in the flow, and one send of them to the destination at the end of
//     the pass, as HTTPProxy's loops write (what the destination does not take waits in the flow
//     for its EPOLLOUT). The pass's sends go out together in one io_uring_enter where the kernel
//     allows (internal/uring), else one sendto(2) each. A read that returns fewer bytes than asked
//     drained the socket's receive queue at that moment (a stream socket's recv stops short only
//     when the queue is empty), so the loop does not read again to see EAGAIN: the next byte to
//     arrive raises a new edge (tcp_data_ready wakes the epoll item whether or not epoll
//     reported it before), which the next epoll_wait returns. The rule is off for an end whose
//     event reported EPOLLRDHUP/HUP/ERR (the end of the stream came with the edge already taken:
//     read to EOF) or EPOLLPRI (urgent data stops a read short of the queue's end).
//   - Splice (bulk): socket to a pipe of the flow, pipe to socket, with splice(2)
//     (SPLICE_F_MOVE|SPLICE_F_NONBLOCK), the bytes never entering user space; an EAGAIN waits for
//     the next EPOLLIN of the source or EPOLLOUT of the destination. A short splice proves
//     nothing (a pipe can fill its slots with few bytes), so a splicing flow reads to EAGAIN.
//
// A copy read that fills the buffer switches its direction to splice; a splice that moves less
// than copyLen switches it back. So a bulk transfer copies at most copyLen bytes at each switch
// and splices the rest, and a request/response exchange of small messages makes one read and
// one send per message and direction, as HAProxy's mode tcp does. The pipes are made on a
// flow's first switch. On end of file from one side, the other side is shut down for writing
// once the flow holds nothing (half-close); the relay ends when both directions have, on an
// error either way, or after the idle timeout with no byte moved.

// copyLen is the loop's copy buffer: a read that fills it switches the flow to splice.
const copyLen = 16 << 10

// spliceLen is what one splice into an empty pipe asks for; the pipe's capacity bounds it.
const spliceLen = 1 << 20

// tcpSockFlags are the events a relay's socket waits for: sockFlags and EPOLLPRI (urgent data,
// which turns the short-read rule off for the socket).
const tcpSockFlags = sockFlags | syscall.EPOLLPRI

// afterShortRead, when set (by tests), runs on the loop right after a copy read returned fewer
// bytes than asked, with the socket read: data that arrives then must still be relayed.
var afterShortRead func(fd int)

// relayBudget bounds the bytes one direction moves per pass before the loop serves others.
const relayBudget = 1 << 20

type tcpMsgKind uint8

const (
	tcpMsgRelay tcpMsgKind = iota // relay client and up for lease
	tcpMsgClose                   // shutdown: close every relay and exit
)

type tcpMsg struct {
	kind       tcpMsgKind
	client, up int
	lease      Lease
}

// tcpLoops are a TCPProxy's event loops.
type tcpLoops struct {
	all  []*tcpLoop
	next atomic.Uint32
}

type tcpLoop struct {
	p *TCPProxy
	loopCore[tcpMsg]

	splices atomic.Int64 // splice(2) calls, for Statusz and the test that proves the path
	spliced atomic.Int64 // bytes spliced into pipes
	copied  atomic.Int64 // bytes read into buf
	relays  atomic.Int64 // relays served

	buf   []byte                 // the copy path's buffer, copyLen
	batch uring.Batch[relayFlow] // the pass's sends through the ring

	ends    []*relayEnd // by fd
	open    map[*relay]struct{}
	again   []*relay // relays that used their budget in a pass
	sends   []*relay // relays with copied bytes to send at the end of the pass
	sending bool     // the end of the pass: copied bytes go out as they are read
	now     time.Time
}

// relayEnd is one socket of a relay.
type relayEnd struct {
	r        *relay
	fd       int
	readable bool
	toEnd    bool // an event reported the end of the stream, an error or urgent data: no short-read rule
}

// flow is one direction of a relay: src's bytes to dst, copied through the loop's buffer or
// spliced through the flow's pipe.
type flow struct {
	src, dst *relayEnd
	splicing bool   // reads splice into the pipe (bulk); else they copy
	pr, pw   int    // the pipe's read and write ends, -1 until the flow first splices
	pending  int    // bytes in the pipe
	held     []byte // copied bytes dst has not taken yet
	eof      bool
	done     bool // dst is shut down for writing
}

type relay struct {
	client, up relayEnd
	in, out    flow // client to up, up to client
	lease      Lease
	active     time.Time // the last time a byte moved
	queued     bool      // in again
	toSend     bool      // in sends
	closed     bool
}

// newTCPLoops makes n loops; start runs them.
func newTCPLoops(p *TCPProxy, n int) (*tcpLoops, error) {
	all, err := makeLoops(n, func() (*tcpLoop, error) {
		l := &tcpLoop{p: p, open: map[*relay]struct{}{}, buf: make([]byte, copyLen)}
		if err := l.loopCore.open(p.cfg.idleTimeout); err != nil {
			return nil, fmt.Errorf("event loop: %w", err)
		}
		return l, nil
	}, p.log, "TCP event loops send with sendto(2): ")
	if err != nil {
		return nil, err
	}
	return &tcpLoops{all: all}, nil
}

// start runs every loop on a goroutine counted in wg.
func (ls *tcpLoops) start(wg *sync.WaitGroup) { startLoops(ls.all, wg) }

// stop tells every loop to close its relays and exit.
func (ls *tcpLoops) stop() {
	for _, l := range ls.all {
		l.post(tcpMsg{kind: tcpMsgClose})
	}
}

// counts returns, over all loops, the relays served, the splice calls made and the bytes read by
// splice (into pipes) and by copy (into the loops' buffers).
func (ls *tcpLoops) counts() (c tcpCounts) {
	for _, l := range ls.all {
		c.relays += l.relays.Load()
		c.splices += l.splices.Load()
		c.spliced += l.spliced.Load()
		c.copied += l.copied.Load()
		c.batched += l.counts.batched.Load()
		c.enters += l.counts.enters.Load()
	}
	return c
}

// take hands client and up, with the lease on up's endpoint, to a loop, which releases the lease,
// closes both and counts the connection out of the proxy's active ones when the relay ends. false
// means nothing was taken: the caller still owns all of it.
func (ls *tcpLoops) take(client, up net.Conn, lease Lease) bool {
	cfd, err := dupSocket(client)
	if err != nil {
		return false
	}
	ufd, err := dupSocket(up)
	if err != nil {
		syscall.Close(cfd)
		return false
	}
	l := ls.all[ls.next.Add(1)%uint32(len(ls.all))]
	if !l.post(tcpMsg{kind: tcpMsgRelay, client: cfd, up: ufd, lease: lease}) {
		syscall.Close(cfd)
		syscall.Close(ufd)
		return false
	}
	return true
}

// post queues m for the loop and wakes it; false means the loop has exited.
func (l *tcpLoop) post(m tcpMsg) bool { return l.box.post(m) }

// run relays until the proxy stops.
func (l *tcpLoop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.now = time.Now()
	l.sweepAt = l.now.Add(l.tick)
	for closing := false; !closing; {
		// Poll, and before blocking yield a few times (loopCore.poll); with no relay open the
		// loop blocks at once.
		n := l.poll(len(l.again) == 0 && len(l.open) > 0)
		if n == 0 && len(l.again) == 0 {
			n = l.block(len(l.open) > 0)
		}
		l.now = time.Now()
		for _, ev := range l.events[:n] {
			if int(ev.Fd) == l.box.evfd {
				closing = l.drainInbox()
				continue
			}
			e := l.ends[ev.Fd]
			if e == nil || e.r.closed {
				continue
			}
			const toEnd = syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR | syscall.EPOLLPRI
			if ev.Events&(syscall.EPOLLIN|toEnd) != 0 {
				e.readable = true
			}
			if ev.Events&toEnd != 0 {
				e.toEnd = true
			}
			l.pump(e.r)
		}
		for len(l.again) > 0 {
			again := l.again
			l.again = nil
			for _, r := range again {
				r.queued = false
				if !r.closed {
					l.pump(r)
				}
			}
			if len(l.again) > 0 {
				break // the next pass polls first
			}
		}
		l.flush()
		if !l.now.Before(l.sweepAt) {
			l.sweep()
			l.sweepAt = l.now.Add(l.tick)
		}
	}
	for r := range l.open {
		l.close(r)
	}
	for _, m := range l.shut() {
		l.discard(m)
	}
}

// drainInbox serves the posted messages; true means the proxy stops.
func (l *tcpLoop) drainInbox() (closing bool) {
	msgs := l.box.take()
	for _, m := range msgs {
		switch {
		case closing:
			l.discard(m)
		case m.kind == tcpMsgClose:
			closing = true
		default:
			l.relay(m)
		}
	}
	l.box.done(msgs)
	return closing
}

// discard undoes a relay message nobody will serve.
func (l *tcpLoop) discard(m tcpMsg) {
	if m.kind == tcpMsgRelay {
		syscall.Close(m.client)
		syscall.Close(m.up)
		m.lease.Release()
		l.p.conns.Add(-1)
	}
}

// relay starts relaying m's sockets.
func (l *tcpLoop) relay(m tcpMsg) {
	r := &relay{lease: m.lease, active: l.now}
	r.client = relayEnd{r: r, fd: m.client, readable: true}
	r.up = relayEnd{r: r, fd: m.up, readable: true}
	r.in = flow{src: &r.client, dst: &r.up, pr: -1, pw: -1}
	r.out = flow{src: &r.up, dst: &r.client, pr: -1, pw: -1}
	l.open[r] = struct{}{}
	l.relays.Add(1)
	for _, e := range []*relayEnd{&r.client, &r.up} {
		for e.fd >= len(l.ends) {
			l.ends = append(l.ends, nil)
		}
		ev := syscall.EpollEvent{Events: tcpSockFlags, Fd: int32(e.fd)}
		if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, e.fd, &ev); err != nil {
			l.close(r)
			return
		}
		l.ends[e.fd] = e
	}
	l.pump(r)
}

// close ends r: its sockets and pipes are closed, its lease released, its connection counted out.
func (l *tcpLoop) close(r *relay) {
	if r.closed {
		return
	}
	r.closed = true
	delete(l.open, r)
	for _, e := range []*relayEnd{&r.client, &r.up} {
		if e.fd < len(l.ends) && l.ends[e.fd] == e {
			l.ends[e.fd] = nil
			// Closing the fd would not remove it from the epoll set while another descriptor
			// of the socket is open (the net.Conn it was duplicated from, until its owner closes it).
			syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, e.fd, nil)
		}
		syscall.Close(e.fd)
	}
	for _, f := range []*flow{&r.in, &r.out} {
		if f.pr >= 0 {
			syscall.Close(f.pr)
			syscall.Close(f.pw)
		}
	}
	r.lease.Release()
	l.p.conns.Add(-1)
}

// sweep closes the relays idle for the idle timeout.
func (l *tcpLoop) sweep() {
	idle := l.p.cfg.idleTimeout
	if idle <= 0 {
		return
	}
	for r := range l.open {
		if l.now.Sub(r.active) >= idle {
			l.close(r)
		}
	}
}

// pump moves what r's sockets allow both ways and ends r when both directions are done or one
// fails.
func (l *tcpLoop) pump(r *relay) {
	for _, f := range []*flow{&r.in, &r.out} {
		if f.done {
			continue
		}
		if !l.move(r, f) {
			l.close(r)
			return
		}
	}
	if r.in.done && r.out.done {
		l.close(r)
	}
}

// splice calls splice(2) from in to out, non-blocking, moving pages.
func (l *tcpLoop) splice(in, out, n int) (int, syscall.Errno) {
	l.splices.Add(1)
	const flags = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK
	m, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), flags)
	return int(m), e
}

// send writes b to fd without blocking and without SIGPIPE.
func send(fd int, b []byte) (int, syscall.Errno) {
	const flags = syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL
	n, _, e := syscall.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), flags, 0, 0)
	return int(n), e
}

// move runs f until its source has nothing, its destination takes nothing more or its budget is
// used; false means the relay failed.
func (l *tcpLoop) move(r *relay, f *flow) bool {
	for budget := relayBudget; ; {
		if len(f.held) > 0 && !l.sending {
			if !r.toSend {
				r.toSend = true
				l.sends = append(l.sends, r)
			}
			return true
		}
		if f.pending > 0 || len(f.held) > 0 {
			var n int
			var e syscall.Errno
			if f.pending > 0 {
				n, e = l.splice(f.pr, f.dst.fd, f.pending)
			} else {
				n, e = send(f.dst.fd, f.held)
			}
			switch e {
			case 0:
				if f.pending > 0 {
					f.pending -= n
				} else {
					f.held = f.held[:copy(f.held, f.held[n:])] // keeps the buffer for the next message
				}
				r.active = l.now
				continue
			case syscall.EAGAIN:
				return true // EPOLLOUT on dst resumes
			case syscall.EINTR:
				continue
			}
			return false
		}
		if f.eof {
			syscall.Shutdown(f.dst.fd, syscall.SHUT_WR)
			f.done = true
			return true
		}
		if !f.src.readable {
			return true
		}
		if budget <= 0 {
			if !r.queued {
				r.queued = true
				l.again = append(l.again, r)
			}
			return true
		}
		var n int
		var e syscall.Errno
		if f.splicing {
			n, e = l.splice(f.src.fd, f.pw, spliceLen)
		} else {
			n, e = rawsys.Read(f.src.fd, l.buf)
		}
		switch e {
		case 0:
		case syscall.EAGAIN:
			f.src.readable = false // EPOLLIN on src resumes
			return true
		case syscall.EINTR:
			continue
		default:
			return false
		}
		if n == 0 {
			f.eof = true
			continue
		}
		budget -= n
		r.active = l.now
		if f.splicing {
			l.spliced.Add(int64(n))
			f.pending = n
			f.splicing = n >= copyLen
			continue
		}
		l.copied.Add(int64(n))
		if n == len(l.buf) {
			if err := l.pipe(f); err != nil {
				l.p.log.Warn("relay pipe: " + err.Error())
			} else {
				f.splicing = true
			}
		} else if !f.src.toEnd {
			// A short read drained the receive queue: wait for the next edge.
			f.src.readable = false
			if afterShortRead != nil {
				afterShortRead(f.src.fd)
			}
		}
		if l.sending {
			if !l.sendCopy(f, l.buf[:n]) {
				return false
			}
		} else {
			f.held = append(f.held[:0], l.buf[:n]...) // sent at the end of the pass
		}
	}
}

// flush sends what the pass copied, the relays' peers woken once per pass rather than as the
// loop reads.
func (l *tcpLoop) flush() {
	l.sending = true
	if l.ring != nil {
		l.sendBatched()
	}
	for i := 0; i < len(l.sends); i++ {
		r := l.sends[i]
		r.toSend = false
		if !r.closed {
			l.pump(r)
		}
	}
	clear(l.sends)
	l.sends = l.sends[:0]
	l.sending = false
}

// sendCopy sends b, read into the loop's buffer, to f's destination and keeps what it does not
// take in f.held; false means the send failed.
func (l *tcpLoop) sendCopy(f *flow, b []byte) bool {
	for {
		n, e := send(f.dst.fd, b)
		switch e {
		case 0:
			b = b[n:]
			if len(b) > 0 {
				continue
			}
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			f.held = append(f.held[:0], b...) // EPOLLOUT on dst resumes
		default:
			return false
		}
		return true
	}
}

// pipe makes f's pipe if it has none.
func (l *tcpLoop) pipe(f *flow) error {
	if f.pr >= 0 {
		return nil
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return err
	}
	f.pr, f.pw = p[0], p[1]
	return nil
}

// relayFlow is a flow with its relay, for a send through the ring.
type relayFlow struct {
	r *relay
	f *flow
}

// sendBatched sends the copied bytes of the pass's relays through the ring; what a destination
// does not take stays in its flow, and flush's pump goes on as after a sendto. A send the ring
// never made is left to the pump's sendto; a relay whose send may or may not have happened is
// closed.
func (l *tcpLoop) sendBatched() {
	for _, r := range l.sends {
		if r.closed {
			continue
		}
		for _, f := range []*flow{&r.in, &r.out} {
			if !f.done && f.pending == 0 && len(f.held) > 0 {
				l.batch.Add(relayFlow{r, f}, f.dst.fd, f.held)
			}
		}
	}
	sendPass(&l.loopCore, &l.batch, l.p.log, "TCP event loop: ", func(rf relayFlow, n int, err syscall.Errno) {
		f, r := rf.f, rf.r
		if n > 0 {
			f.held = f.held[:copy(f.held, f.held[n:])]
			r.active = l.now
		}
		if err != 0 && err != syscall.EAGAIN { // on EAGAIN the pump sends again and waits for EPOLLOUT
			l.close(r)
		}
	})
}
