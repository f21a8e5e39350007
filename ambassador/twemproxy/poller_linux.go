//go:build linux

package twemproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/podblocks/podblocks/internal/rawsys"
)

// clientPoller reads the requests of a pool's clients on one goroutine, as nutcracker's event
// loop does: an epoll set of the client sockets, itself waited on through Go's poller, says which
// clients sent something; the loop reads each once (a short read means the socket is drained, so
// there is no read that finds it empty, unless the event also reported the stream's end), routes
// the requests, and after the round writes every server connection it touched once. One goroutine
// wakes per round instead of one per client and request, which is what the Go scheduler charges
// most for with several Ps.
//
// The server sessions' sockets are in the same epoll set: the loop reads their replies too, and
// completes their requests, so that one goroutine reads both sides as nutcracker's one thread
// does, instead of the poller and a reader goroutine per session waking each other on two
// threads (see serverConn.readLoop and handOver).
//
// The loop never blocks on anything but the epoll set. A client that must wait (it has too much
// unanswered, a server connection it wrote to is full), whose stream ended or failed, or that sent
// an incomplete request the loop cannot finish from what it read, goes back to its own goroutine
// (client.readLoop), which reads with blocking reads as without a poller and gives it back once it
// has read a request and its buffer is empty.
type clientPoller struct {
	p    *pool
	file *os.File
	raw  syscall.RawConn
	done chan struct{}

	mu       sync.Mutex
	clients  map[int32]*client  // registered clients by socket descriptor
	sessions map[int32]*session // registered server sessions by socket descriptor

	// Used by the loop goroutine only.
	events  []syscall.EpollEvent
	nev     int
	waitErr error
	buf     []byte
	src     sliceReader
	br      *bufio.Reader
	batch   []*Request
	ds      dirtySet
	rc      reqCache   // the requests the loop released, for its next ones
	answers []*Request // the requests a session's read answered, to complete together
	scratch routeScratch
	waitFn  func(fd uintptr) bool // wait, bound once: a method value made per round cost an allocation
}

// The states of a client's read side.
const (
	pollOwn  = iota // the client's goroutine reads
	pollIdle        // the poller reads it when it is readable
	pollBusy        // the poller is reading it
)

// epollET is syscall.EPOLLET as the uint32 of EpollEvent.Events (the constant is negative).
const epollET = 1 << 31

// testHookRoundSession, set by tests only, runs at the start of every server session's event in
// the poller's round (a test makes the poller lag with it).
var testHookRoundSession func()

// padSession marks a server session's registration in EpollEvent.Pad (the upper half of the
// event's data, which the kernel hands back as it was given); a client's is 0.
const padSession = 1

// epollEnd are the events that say the stream ended or failed. Edge-triggered, they are reported
// once, with the data that came before them.
const epollEnd = syscall.EPOLLRDHUP | syscall.EPOLLHUP | syscall.EPOLLERR

// errIncomplete is what sliceReader returns past its bytes: the request is not all there yet.
var errIncomplete = errors.New("twemproxy: incomplete request")

// sliceReader reads b and then fails with errIncomplete.
type sliceReader struct {
	b   []byte
	off int
}

func (s *sliceReader) Read(p []byte) (int, error) {
	if s.off == len(s.b) {
		return 0, errIncomplete
	}
	n := copy(p, s.b[s.off:])
	s.off += n
	return n, nil
}

// newClientPoller returns a poller for p's clients, or nil where it cannot make one (the
// clients' goroutines then read).
func newClientPoller(p *pool) *clientPoller {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil
	}
	file := os.NewFile(uintptr(epfd), "epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil
	}
	cp := &clientPoller{p: p, file: file, raw: raw, done: make(chan struct{}),
		clients: map[int32]*client{}, sessions: map[int32]*session{}, events: make([]syscall.EpollEvent, 128), buf: make([]byte, ioBufSize),
		batch: make([]*Request, 0, maxBatch)}
	cp.br = bufio.NewReaderSize(&cp.src, ioBufSize)
	cp.waitFn = cp.wait
	cp.scratch.ds = &cp.ds
	cp.ds.rc = &cp.rc
	// The epoll set must be pollable by Go's poller; a set deadline fails where it is not.
	if err := file.SetReadDeadline(time.Time{}); err != nil {
		file.Close()
		return nil
	}
	return cp
}

// start runs the loop until close.
func (cp *clientPoller) start() {
	go func() {
		defer close(cp.done)
		cp.loop()
	}()
}

// close stops the loop and waits for it; every client must have left it.
func (cp *clientPoller) close() {
	cp.file.Close()
	<-cp.done
}

func (cp *clientPoller) wait(fd uintptr) bool {
	for {
		n, e := rawsys.EpollPoll(int(fd), cp.events)
		if e == syscall.EINTR {
			continue
		}
		cp.nev, cp.waitErr = n, nil
		if e != 0 {
			cp.waitErr = e
		}
		return n > 0 || e != 0
	}
}

func (cp *clientPoller) loop() {
	idle := cp.p.opts.clientIdleTimeout
	sweepEvery := idle / 10
	if idle > 0 {
		_ = cp.file.SetReadDeadline(time.Now().Add(sweepEvery))
	}
	for {
		err := cp.raw.Read(cp.waitFn)
		if err == nil {
			err = cp.waitErr
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			cp.sweep(idle)
			_ = cp.file.SetReadDeadline(time.Now().Add(sweepEvery))
			continue
		}
		if err != nil {
			return
		}
		cp.round()
	}
}

// round serves the clients of one epoll wait, then (routeScratch.flush) writes the replies that are
// ready, the proxy's own answers among them, before the server connections they wrote to: a write
// to a server wakes it, and it may take this CPU before the replies go out.
func (cp *clientPoller) round() {
	now := time.Now().UnixNano()
	for _, ev := range cp.events[:cp.nev] {
		if ev.Pad == padSession {
			cp.roundSession(ev)
			continue
		}
		cp.mu.Lock()
		c := cp.clients[ev.Fd]
		cp.mu.Unlock()
		if c == nil || !c.pollState.CompareAndSwap(pollIdle, pollBusy) {
			continue // gone, or its goroutine reads
		}
		c.lastActive.Store(now)
		why, back := cp.serve(c, ev.Events&epollEnd != 0)
		c.leave(c.resume, back, why, nil, resumeRead)
	}
	cp.scratch.flush()
}

// leave ends the poller's turn on e (pollBusy): back hands e to its goroutine, through resume,
// with why. Otherwise e is idle again, unless it was evicted meanwhile or want (if not nil) says
// its goroutine asked for it back: then it goes back with again.
func (e *pollClient) leave(resume chan<- resumeReason, back bool, why resumeReason, want *atomic.Bool, again resumeReason) {
	if back {
		e.pollState.Store(pollOwn)
		resume <- why
		return
	}
	e.pollState.Store(pollIdle)
	if (e.kickOut.Load() || want != nil && want.Load()) && e.pollState.CompareAndSwap(pollIdle, pollOwn) {
		resume <- again
	}
}

// serve reads and routes what client c sent; back reports that c must go back to its goroutine,
// and why. ended says the event reported the end of the stream (or an error): c is then read
// until the read that sees it, as no later event would come.
func (cp *clientPoller) serve(c *client, ended bool) (why resumeReason, back bool) {
	p := c.p
	cp.scratch.clientID = c.id
	for {
		c.mu.Lock()
		budget := c.budgetLocked()
		c.mu.Unlock()
		if budget == 0 {
			return resumeSpace, true
		}
		data, n, hadPending, err := cp.fill(c.rr, &c.pending)
		if err == syscall.EAGAIN {
			return 0, false
		}
		if err != nil || n == 0 {
			return resumeRead, true // the goroutine's read sees the end, or the error fill kept
		}
		consumed := 0
		batch := cp.batch
		var stop, spent bool
		for {
			r := cp.rc.get()
			err := p.proto.ReadRequest(cp.br, r)
			r.c = c
			if err != nil {
				if errors.Is(err, errIncomplete) {
					cp.rc.put(r)
					break
				}
				batch = c.readFailed(err, r, batch)
				stop = true
				break
			}
			consumed = cp.src.off - cp.br.Buffered()
			batch = append(batch, r)
			if c.quitRead(r) {
				stop = true
				break
			}
			if budget--; budget == 0 {
				spent = true // the rest waits for space
				break
			}
			if len(batch) == cap(batch) {
				c.route(batch, &cp.scratch)
				batch = batch[:0]
			}
		}
		c.route(batch, &cp.scratch)
		cp.batch = batch[:0]
		// The server connections c's requests filled are c's to wait for, never the next
		// client's: take them out of the round's scratch whatever c does next.
		if len(cp.scratch.full) > 0 && !stop {
			c.full = append(c.full[:0], cp.scratch.full...)
		}
		clear(cp.scratch.full)
		cp.scratch.full = cp.scratch.full[:0]
		if stop {
			return resumeStop, true
		}
		// What is left is the start of a request: keep it for the next read, or let the
		// goroutine finish it when this read added nothing complete or it is large.
		rest := c.pending.keep(data, consumed, hadPending)
		finish := len(rest) > 0 && (spent || hadPending && consumed == 0 || len(rest) > ioBufSize/2)
		if spent && finish {
			// The rest may hold complete requests, which no event would bring back: the
			// goroutine waits for room and space, then reads them.
			return resumeRead, true
		}
		if len(c.full) > 0 {
			return resumeRoom, true // then the goroutine gives c back, and the poller goes on
		}
		if finish {
			return resumeRead, true
		}
		if n < len(cp.buf) && !ended {
			return 0, false // drained: the next byte, or the end, brings another event
		}
	}
}

// fill reads rr once, without waiting, into the poller's buffer and sets the poller's reader on
// the bytes to parse: what the last read left in pending (hadPending), then what this one read
// (n bytes). n is 0 with err (syscall.EAGAIN: nothing to read) or at the end of the stream. An
// error other than EAGAIN is kept in pending for the goroutine's reader, which must report it: the
// socket reports it to this read only.
func (cp *clientPoller) fill(rr *rawIO, pending *leftover) (data []byte, n int, hadPending bool, err error) {
	n, err = rr.readNow(cp.buf)
	if err != nil || n == 0 {
		if err != nil && err != syscall.EAGAIN {
			pending.err = readError(err)
		}
		return nil, n, false, err
	}
	data = cp.buf[:n]
	if hadPending = len(pending.b) > 0; hadPending {
		pending.b = append(pending.b, data...)
		data = pending.b
	}
	cp.src.b, cp.src.off = data, 0
	cp.br.Reset(&cp.src)
	return data, n, hadPending, nil
}

// keep keeps rest, what is left of data past consumed, in l for the next read, and returns it.
// data is fill's: l's own bytes when hadPending, which then need no copy if none was consumed.
func (l *leftover) keep(data []byte, consumed int, hadPending bool) (rest []byte) {
	rest = data[consumed:]
	switch {
	case len(rest) == 0:
		l.b = l.b[:0]
	case hadPending && consumed == 0: // l is data
	default:
		l.b = append(l.b[:0], rest...)
	}
	return rest
}

// sweep sends the clients idle in the poller for longer than idle back to their goroutines, which
// close them as a read that timed out.
func (cp *clientPoller) sweep(idle time.Duration) {
	before := time.Now().Add(-idle).UnixNano()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, c := range cp.clients {
		if c.lastActive.Load() < before && c.pollState.CompareAndSwap(pollIdle, pollOwn) {
			c.idleExpired = true
			c.resume <- resumeRead
		}
	}
}

// adopt gives client c's read side to the poller (called by c's goroutine, whose buffer is empty).
// It reports false when the poller cannot take it; the goroutine then reads on.
func (cp *clientPoller) adopt(c *client) bool {
	if c.kickOut.Load() {
		return false
	}
	if c.rr == nil {
		rr, fd := newRawReader(c.conn)
		if rr == nil {
			return false
		}
		c.rr, c.fd = rr, fd
	}
	if c.register == nil {
		c.register = func(uintptr) { c.regErr = cp.register(&c.pollClient, c, nil) }
	}
	c.lastActive.Store(time.Now().UnixNano())
	return c.enter()
}

// enter hands e's read side to the poller through e.register; it reports false when the poller
// cannot take it, or when e was closed meanwhile: the goroutine then reads (and fails). It also
// reports true when the registration failed but the poller had claimed e meanwhile (from a stale
// event of e's descriptor) and has handed it back: the reason is in e's resume channel, where the
// goroutine waits as after any hand-back.
func (e *pollClient) enter() bool {
	e.pollState.Store(pollIdle)
	// Registered inside Control, which holds the descriptor: a connection closed meanwhile (its
	// number then maybe another socket's) fails here instead of registering that socket.
	err := e.rr.raw.Control(e.register)
	if err == nil {
		err = e.regErr
	}
	if err != nil {
		// Taken back only from pollIdle: while the poller reads e (pollBusy, a round never
		// blocks) wait until it is done, and either handed e back or left it idle.
		for !e.pollState.CompareAndSwap(pollIdle, pollOwn) {
			if e.pollState.Load() == pollOwn {
				return true
			}
			runtime.Gosched()
		}
		return false
	}
	if e.kickOut.Load() && e.pollState.CompareAndSwap(pollIdle, pollOwn) {
		return false // closed meanwhile: the goroutine reads (and fails)
	}
	return true
}

// register adds e's socket to the epoll set, or modifies its registration; either reports the
// socket at once if it is readable. e is client c's or server session s's (the other is nil). It
// must run while e's descriptor is held (see enter); it holds the epoll set's.
func (cp *clientPoller) register(e *pollClient, c *client, s *session) error {
	var pad int32
	if s != nil {
		pad = padSession
	}
	if !e.registered {
		cp.mu.Lock()
		if s != nil {
			cp.sessions[e.fd] = s
		} else {
			cp.clients[e.fd] = c
		}
		cp.mu.Unlock()
	}
	op := syscall.EPOLL_CTL_MOD
	if !e.registered {
		op = syscall.EPOLL_CTL_ADD
	}
	if err := cp.ctl(e, op, pad); err != nil {
		if !e.registered {
			if s != nil {
				cp.forgetSession(s)
			} else {
				cp.forget(c)
			}
		}
		return err
	}
	e.registered = true
	return nil
}

// ctl adds e's socket to the epoll set, modifies its registration or deletes it (op), with pad in
// the event's data.
func (cp *clientPoller) ctl(e *pollClient, op int, pad int32) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: e.fd, Pad: pad}
	// The epoll set's descriptor is held too: closed by close meanwhile, its number could be
	// another descriptor's (another pool's epoll set) by now.
	e.ctlOp, e.ctlEv = op, ev
	if e.ctlFn == nil {
		e.ctlFn = func(epfd uintptr) {
			e.ctlErr = syscall.EpollCtl(int(epfd), e.ctlOp, int(e.fd), &e.ctlEv)
			if e.ctlErr == syscall.EEXIST {
				e.ctlErr = syscall.EpollCtl(int(epfd), syscall.EPOLL_CTL_MOD, int(e.fd), &e.ctlEv)
			}
		}
	}
	err := cp.raw.Control(e.ctlFn)
	if err == nil {
		err = e.ctlErr
	}
	return err
}

// release takes client c out of the poller after its connection was closed: its goroutine reads
// and sees the connection closed. Safe to call from any goroutine, with c.mu held.
func (cp *clientPoller) release(c *client) { c.evict(c.resume) }

// evict takes e out of the poller for good: if the poller has it, resume hands it back to e's
// goroutine; if the poller is reading it now, the poller hands it back when it is done.
func (e *pollClient) evict(resume chan<- resumeReason) {
	e.kickOut.Store(true)
	if e.pollState.CompareAndSwap(pollIdle, pollOwn) {
		resume <- resumeRead
	}
}

// forget takes client c out of the poller for good, once its stream ended (called by c's
// goroutine, which reads it): out of the epoll set, so that what a client that lingers or is still
// being written to sends wakes the loop no more, and out of the clients map. A map entry a newer
// client with c's descriptor number took over is left alone.
func (cp *clientPoller) forget(c *client) {
	if c.registered {
		// Deleted while the descriptor is held: closed meanwhile (which took the socket out of
		// the set), its number may be another socket's by now.
		_ = c.rr.raw.Control(func(uintptr) { _ = cp.ctl(&c.pollClient, syscall.EPOLL_CTL_DEL, 0) })
		c.registered = false
	}
	forgetEntry(&cp.mu, cp.clients, c.fd, c)
}

// forgetEntry deletes m[fd] under mu if it is v.
func forgetEntry[T comparable](mu *sync.Mutex, m map[int32]T, fd int32, v T) {
	mu.Lock()
	if m[fd] == v {
		delete(m, fd)
	}
	mu.Unlock()
}

// pollClient is a client's state in the poller.
type pollClient struct {
	pollState  atomic.Int32 // pollOwn, pollIdle or pollBusy
	kickOut    atomic.Bool  // the connection was closed: the goroutine must read (and fail)
	lastActive atomic.Int64 // unix nanoseconds of the last round that read the client
	rr         *rawIO       // set by the goroutine in its first adopt; read by the poller only
	fd         int32
	registered bool             // in the epoll set; used by the goroutine
	register   func(fd uintptr) // registers in the epoll set, for rr's Control, bound once; sets regErr
	regErr     error
	ctlFn      func(epfd uintptr) // epoll_ctl(ctlOp, ctlEv) for the epoll set's Control, bound once
	ctlOp      int
	ctlEv      syscall.EpollEvent
	ctlErr     error
}

// newRawReader returns a rawIO for reading conn, which the poller reads without waiting, and
// its descriptor.
func newRawReader(conn net.Conn) (*rawIO, int32) {
	rr := rawIOFor(conn)
	var fd int32 = -1
	if rr == nil || rr.raw.Control(func(f uintptr) { fd = int32(f) }) != nil || fd < 0 {
		return nil, 0
	}
	return rr, fd
}

// polled reports whether the poller reads c.
func (c *client) polled() bool { return c.pollState.Load() != pollOwn }

// roundSession serves the server session of event ev: the poller reads its replies and completes
// their requests, unless its goroutine reads it.
func (cp *clientPoller) roundSession(ev syscall.EpollEvent) {
	if testHookRoundSession != nil {
		testHookRoundSession()
	}
	cp.mu.Lock()
	s := cp.sessions[ev.Fd]
	cp.mu.Unlock()
	if s == nil || !s.pollState.CompareAndSwap(pollIdle, pollBusy) {
		return
	}
	back := cp.serveSession(s, ev.Events&epollEnd != 0)
	s.leave(s.resume, back, resumeRead, &s.wantBack, resumeCheck)
}

// serveSession reads the replies session s's server sent and completes their requests into the
// round's dirty set, as its goroutine's readLoop would; it reports that the goroutine must read:
// the stream ended or failed, data came with nothing in flight, a reply is bad (the goroutine's
// read of the same bytes fails the session), or a large reply is only partly there. ended says
// the event reported the end of the stream: s is then read until the read that sees it.
func (cp *clientPoller) serveSession(s *session, ended bool) (back bool) {
	sc := s.sc
	rs := &s.rs
	proto := sc.st.proto
	defer rs.publish(sc)
	for {
		data, n, hadPending, err := cp.fill(s.rr, &rs.pending)
		if err == syscall.EAGAIN {
			return false
		}
		if err != nil || n == 0 {
			return true // the goroutine's read sees the end, or the error fill kept
		}
		rs.readAt = time.Now()
		consumed := 0
		bad := false
		for consumed < len(data) {
			if rs.i == len(rs.local) {
				sc.mu.Lock()
				ok := rs.takeLocked(sc)
				sc.mu.Unlock()
				if !ok {
					bad = true // unsolicited data
					break
				}
			}
			r := rs.local[rs.i]
			m := len(r.Resp)
			if err := proto.ReadResponse(cp.br, r); err != nil {
				r.Resp = r.Resp[:m]
				bad = !errors.Is(err, errIncomplete)
				break
			}
			consumed = cp.src.off - cp.br.Buffered()
			rs.answered(sc, r, m)
			cp.answers = append(cp.answers, r)
		}
		// The replies of one client's requests, next to each other in the server's stream, are
		// completed under one lock of the client's.
		finishAll(cp.answers, &cp.ds)
		cp.answers = cp.answers[:0]
		rest := rs.pending.keep(data, consumed, hadPending)
		if bad || len(rest) > ioBufSize/2 {
			return true
		}
		if n < len(cp.buf) && !ended {
			return false // drained: the next byte, or the end, brings another event
		}
	}
}

// readWaiting reads what session s's socket holds, without waiting, into the bytes its goroutine
// parses first (rs.pending), with the end of the stream or the error that follows them: called by
// the goroutine when it took the read side back with the oldest request overdue, whose read would
// fail at once (its deadline has passed) without reading a reply that is already in.
func (s *session) readWaiting() {
	pb := &s.rs.pending
	if s.rr == nil || pb.err != nil {
		return
	}
	for {
		start := len(pb.b)
		pb.b = slices.Grow(pb.b, ioBufSize)
		n, err := s.rr.readNow(pb.b[start : start+ioBufSize])
		pb.b = pb.b[:start+n]
		if n > 0 {
			s.rs.readAt = time.Now()
		}
		switch {
		case err == syscall.EAGAIN:
			return
		case err != nil:
			pb.err = readError(err)
			return
		case n == 0:
			pb.err = io.EOF
			return
		case n < ioBufSize:
			return // drained
		}
	}
}

// adoptSession gives server session s's read side to the poller (called by its goroutine, which
// has nothing buffered). It reports false when the poller cannot take it; the goroutine then
// reads on.
func (cp *clientPoller) adoptSession(s *session) bool {
	if s.kickOut.Load() || s.rr == nil {
		return false
	}
	if s.register == nil {
		s.register = func(uintptr) { s.regErr = cp.register(&s.pollClient, nil, s) }
	}
	return s.enter()
}

// takeBack takes session s's read side back from the poller if the poller is not reading it
// now; then it reports true. Otherwise the poller gives it back once it is done (s.wantBack).
func (cp *clientPoller) takeBack(s *session) bool {
	return s.pollState.CompareAndSwap(pollIdle, pollOwn)
}

// releaseSession takes session s out of the poller for good after its connection was closed (or
// its server connection is closing): its goroutine reads. Safe to call from any goroutine.
func (cp *clientPoller) releaseSession(s *session) { s.evict(s.resume) }

// forgetSession drops session s from the sessions map before its connection is closed.
func (cp *clientPoller) forgetSession(s *session) {
	if s.rr != nil {
		forgetEntry(&cp.mu, cp.sessions, s.fd, s)
	}
}

// setPollReader gives s the reader the poller reads its replies with.
func (s *session) setPollReader() { s.rr, s.fd = newRawReader(s.conn) }

// kicked reports whether s was taken out of the poller for good.
func (s *session) kicked() bool { return s.kickOut.Load() }

// polled reports whether the poller reads s's replies.
func (s *session) polled() bool { return s.pollState.Load() != pollOwn }
