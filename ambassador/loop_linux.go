//go:build linux

package ambassador

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/podblocks/podblocks/internal/rawsys"
	"github.com/podblocks/podblocks/internal/uring"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The event loops serve HTTP/1.x requests of the common shape without a goroutine per connection.
// In a goroutine per connection, a read that finds nothing parks the goroutine until the runtime
// polls the network, which it does only when every run queue is empty (or every 10 ms): under
// load, a connection whose bytes have arrived waits behind every runnable goroutine, and the tail
// latency grows several-fold. A loop instead owns its sockets (non-blocking, in its own
// edge-triggered epoll, on a locked OS thread): each pass takes what epoll reports, and every
// connection waits at most one pass.
//
// A loop takes a client connection from the accept goroutine and serves each request whose head
// (up to 8 KiB, within the header timeout) has the fast parser's shape (no body, no upgrade, a
// Host) with the proxy's
// retry loop: Cluster.acquire (without waiting), a pooled upstream connection of the loop (dials
// run on a goroutine), writeRequest, the per-try timeout, and a response head that
// respState.parse accepts (Content-Length or no body), relayed with the same header rules as the
// goroutine path. Anything else is handed to the goroutine path with the bytes read so far: the
// whole connection before a request is sent (serveH1 serves it from then on), or the connection,
// the upstream connection and the request's attempts once it is sent (resume finishes the try
// with http.ReadResponse and goes on with the retries). A request that must wait for a circuit
// breaker slot waits on a goroutine, and the loop goes on with the lease.

const (
	clientBuf = 8 << 10 // a request head larger than this goes to the goroutine path
	upBuf     = 16 << 10
	// passCap bounds the body bytes a pass relays to one client: a body that flows as fast as
	// both ends take it goes on in the next pass, after the sockets epoll has reported since.
	passCap   = 64 << 10
	epollET   = 1 << 31
	sockFlags = syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET
)

// loopsSupported reports whether this platform has event loops.
const loopsSupported = true

// loops are an HTTPProxy's event loops.
type loops struct {
	all  []*loop
	next atomic.Uint32
}

type msgKind uint8

const (
	msgConn      msgKind = iota // a new client connection: fd, remote
	msgDialed                   // a dial for c finished: fd, or err
	msgAcquired                 // an Acquire for c that had to wait finished: lease, or err
	msgCloseIdle                // shutdown: close idle clients, the rest once their request is answered
	msgCloseAll                 // the grace period is over: close everything
)

type msg struct {
	kind   msgKind
	fd     int
	remote string
	c      *sock
	gen    uint64
	lease  Lease
	err    error
}

type loop struct {
	p   *HTTPProxy
	ctx context.Context // the requests' context
	loopCore[msg]

	socks   []*sock // by fd
	clients int
	pools   map[*Backend][]*sock
	async   sync.WaitGroup // dials and waiting Acquires
	closing bool
	now     time.Time
	gen     uint64
	ready   []*sock // clients whose exchange ended, to serve their next request
	more    []*sock // clients that reached passCap with more body to relay, for the next pass
	pass    uint64
	dirty   []*sock // sockets with output queued for the end of the pass
	batch   uring.Batch[*sock]
	sink    appendWriter
	bw      *bufio.Writer
}

type sockKind uint8

const (
	clientSock sockKind = iota
	upstreamSock
)

type phase uint8

const (
	pIdle    phase = iota // client: waiting for a request; upstream: pooled
	pBusy                 // client: a request is in flight
	pSending              // upstream: writing the request
	pHead                 // upstream: waiting for the response head
	pBody                 // upstream: relaying the body
)

// sock is one socket of a loop: a client connection or an upstream connection.
type sock struct {
	fd       int // -1 once closed
	kind     sockKind
	phase    phase
	readable bool // epoll said so and no read since found it empty
	queued   bool // in the loop's dirty list
	writable bool
	hup      bool      // the peer closed its side
	deadline time.Time // zero: none
	in       []byte    // data in in[r:w]
	r, w     int
	out      []byte // to write, from outOff
	outOff   int
	werr     syscall.Errno // a write through the ring failed so (EAGAIN: the buffer is full): flush reports it

	// client
	remote  string
	first   bool   // no request read yet
	partial bool   // a request head is arriving
	pass    uint64 // the pass relayed counts in
	relayed int    // body bytes relayed in that pass
	ex      exchange
	rs      reqState

	// upstream
	b        *Backend
	client   *sock
	rsp      respState
	lastHead []byte     // the response head rsp holds the parse of (parseHead); empty: none
	lastFor  string     // the method of the request lastHead answered
	lastOut  []byte     // the head relayed for lastHead (relayHead); empty: none
	outConn  connHeader // the Connection header lastOut carries
}

// exchange is a client's request in flight on the loop.
type exchange struct {
	a          attempts
	req        *http.Request
	headLen    int // the request head's length in the client's buffer (kept until the end)
	closeAfter bool
	keepAlive  bool // the request asked for keep-alive on HTTP/1.0 (see keepAlive10)
	active     bool // counted in the retry budget's requests in flight
	lease      Lease
	counted    bool // the current attempt holds a retry slot
	mayRetry   bool
	start      time.Time
	reused     bool // the try runs on a pooled upstream connection
	fresh      bool // the try was replayed on a new connection
	waiting    bool // a dial or an Acquire is out for this exchange
	up         *sock
	gen        uint64 // tells a dial or Acquire result of this exchange from older ones
	remaining  int64  // body bytes still to relay
	keepUp     bool
	bodyDone   bool // the whole answer is in out
	interim    int  // interim (1xx) answers dropped in this try
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// newLoops makes n loops; start runs them.
func newLoops(p *HTTPProxy, n int, ctx context.Context) (*loops, error) {
	all, err := makeLoops(n, func() (*loop, error) { return newLoop(p, ctx) }, p.log,
		"HTTP event loops write with write(2): ")
	if err != nil {
		return nil, err
	}
	return &loops{all: all}, nil
}

// makeLoops makes n loops with mk, or none: should one fail, those made are shut. Where loops
// have no ring, why is logged once, after fallback, for the first of them: a lasting refusal fails
// every loop's ring alike (uring.New asks the kernel once and remembers it), and one that may pass
// (out of memory or descriptors) may fail any of them, the first or a later one.
func makeLoops[M any, L interface {
	shut() []M
	setupErr() error
}](n int, mk func() (L, error), log *zap.Logger, fallback string) ([]L, error) {
	var all []L
	logged := false
	for range n {
		l, err := mk()
		if err != nil {
			for _, l := range all {
				l.shut()
			}
			return nil, err
		}
		if err := l.setupErr(); err != nil && !logged {
			log.Info(fallback + err.Error())
			logged = true
		}
		all = append(all, l)
	}
	return all, nil
}

// setupErr is why the loop has no ring (nil when it has one, or lost it since).
func (c *loopCore[M]) setupErr() error { return c.ringErr }

// sendPass makes b's sends through c's ring and calls sent with each send's item and outcome
// (uring.Result.Outcome: n bytes sent; err the send's failure, EIO if its outcome is unknown; a
// send not made, n and err zero, is left to the caller's system call). Should the ring fail, c
// sends with one system call per send from then on, and log says why, after what.
func sendPass[M, T any](c *loopCore[M], b *uring.Batch[T], log *zap.Logger, what string, sent func(item T, n int, err syscall.Errno)) {
	sendBatched(c, b, func(item T, r uring.Result, known bool) {
		n, err := r.Outcome(known)
		sent(item, n, err)
	}, func(msg string) { log.Warn(what + msg) })
}

func newLoop(p *HTTPProxy, ctx context.Context) (*loop, error) {
	l := &loop{p: p, ctx: ctx, pools: map[*Backend][]*sock{}}
	l.counts = &p.ringCounts
	if err := l.open(p.cfg.readHeader, p.cfg.idleTimeout, p.cfg.perTryTimeout, p.cfg.bodyIdle, p.cfg.writeTimeout); err != nil {
		return nil, err
	}
	l.bw = bufio.NewWriterSize(&l.sink, 4<<10)
	return l, nil
}

// start runs every loop on a goroutine counted in wg.
func (ls *loops) start(wg *sync.WaitGroup) { startLoops(ls.all, wg) }

// take moves an accepted connection to a loop; false means c is left to the caller.
func (ls *loops) take(c net.Conn) bool {
	fd, err := dupSocket(c)
	if err != nil {
		return false
	}
	remote := c.RemoteAddr().String()
	c.Close() // the duplicate stays open (and non-blocking) for the loop
	l := ls.all[ls.next.Add(1)%uint32(len(ls.all))]
	if !l.post(msg{kind: msgConn, fd: fd, remote: remote}) {
		syscall.Close(fd)
	}
	return true
}

func (ls *loops) broadcast(k msgKind) {
	for _, l := range ls.all {
		l.post(msg{kind: k})
	}
}

// post queues m for the loop and wakes it; false means the loop has exited.
func (l *loop) post(m msg) bool { return l.box.post(m) }

// run serves the loop's sockets until it is closing and has no client left.
func (l *loop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l.now = time.Now()
	l.sweepAt = l.now.Add(l.tick)
	for !(l.closing && l.clients == 0) {
		l.pass++
		// Poll first without giving up the thread's P, and yield a few times with clients
		// connected (loopCore.poll); block only when nothing is ready.
		n := l.poll(len(l.more) == 0 && l.clients > 0)
		if n == 0 && len(l.more) == 0 {
			n = l.block(len(l.socks) > 0)
		}
		l.now = time.Now()
		for _, ev := range l.events[:n] {
			l.event(ev)
		}
		for i, c := range l.more {
			l.later(c) // flushClient goes on relaying the body
			l.more[i] = nil
		}
		l.more = l.more[:0]
		if !l.now.Before(l.sweepAt) {
			l.sweep()
			l.sweepAt = l.now.Add(l.tick)
		}
		l.endPass()
	}
	l.exit()
}

// later queues s's output for the end of the pass: the answers of a pass wake their readers
// together, as HAProxy's tasklets do, rather than one write at a time.
func (l *loop) later(s *sock) {
	if !s.queued {
		s.queued = true
		l.dirty = append(l.dirty, s)
	}
}

// endPass writes what the pass queued and serves the clients whose exchange ended.
func (l *loop) endPass() {
	for len(l.dirty) > 0 || len(l.ready) > 0 {
		if l.ring != nil {
			l.writeBatched()
		}
		for i := 0; i < len(l.dirty); i++ {
			s := l.dirty[i]
			s.queued = false
			switch {
			case s.fd < 0:
			case s.kind == clientSock:
				l.flushClient(s)
			case s.phase == pSending:
				l.flushUp(s)
			}
		}
		clear(l.dirty)
		l.dirty = l.dirty[:0]
		for len(l.ready) > 0 {
			c := l.ready[len(l.ready)-1]
			l.ready = l.ready[:len(l.ready)-1]
			if c.fd >= 0 && c.phase == pIdle {
				l.serveIdle(c)
			}
		}
	}
}

// writeBatched writes the output the pass queued through the ring, in one io_uring_enter, before
// endPass flushes each socket: flush then finds what was written gone, and the error or EAGAIN
// of a write that failed in werr. A write the ring never made is left to flush; a socket whose
// write may or may not have happened fails with EIO.
func (l *loop) writeBatched() {
	for _, s := range l.dirty {
		if s.fd >= 0 && (s.kind == clientSock || s.phase == pSending) && s.outOff < len(s.out) && s.werr == 0 {
			l.batch.Add(s, s.fd, s.out[s.outOff:])
		}
	}
	sendPass(&l.loopCore, &l.batch, l.p.log, "HTTP event loop: ", func(s *sock, n int, err syscall.Errno) {
		s.outOff += n
		s.werr = err
	})
}

// exit closes what the loop still holds once no client is left.
func (l *loop) exit() {
	for b := range l.pools {
		l.dropPool(b)
	}
	for _, s := range l.socks {
		if s != nil && s.fd >= 0 && s.kind == upstreamSock {
			l.closeSock(s)
		}
	}
	l.async.Wait()
	for _, m := range l.shut() {
		l.discard(m)
	}
}

// discard drops a message nobody will serve.
func (l *loop) discard(m msg) {
	switch m.kind {
	case msgConn, msgDialed:
		if m.fd >= 0 {
			syscall.Close(m.fd)
		}
	case msgAcquired:
		if m.err == nil {
			m.lease.Release()
		}
	}
}

func (l *loop) event(ev syscall.EpollEvent) {
	fd := int(ev.Fd)
	if fd == l.box.evfd {
		l.drainInbox()
		return
	}
	if fd >= len(l.socks) || l.socks[fd] == nil {
		return
	}
	s := l.socks[fd]
	e := ev.Events
	if e&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		s.hup = true
	}
	if e&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		s.readable = true
	}
	if e&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		s.writable = true
	}
	if s.kind == clientSock {
		if s.writable && s.outOff < len(s.out) {
			l.flushClient(s)
		}
		if s.fd >= 0 && s.phase == pIdle && s.readable {
			l.readClient(s)
		}
		return
	}
	switch s.phase {
	case pIdle:
		if s.readable { // an idle upstream connection closed (or sent garbage)
			l.closeSock(s)
		}
	case pSending:
		if s.writable {
			l.flushUp(s)
		}
	case pHead, pBody:
		if s.readable {
			l.readUp(s)
		}
	}
}

func (l *loop) drainInbox() {
	msgs := l.box.take()
	for _, m := range msgs {
		l.handle(m)
	}
	l.box.done(msgs)
}

func (l *loop) handle(m msg) {
	switch m.kind {
	case msgConn:
		if l.closing {
			syscall.Close(m.fd)
			return
		}
		c := &sock{fd: m.fd, kind: clientSock, remote: m.remote, first: true, writable: true,
			in: make([]byte, clientBuf)}
		c.rs.reset(l.ctx)
		if !l.add(c) {
			syscall.Close(m.fd)
			return
		}
		l.clients++
		l.serveIdle(c)
	case msgDialed:
		c := m.c
		if c.fd < 0 || c.phase != pBusy || c.ex.gen != m.gen {
			l.discard(m)
			return
		}
		l.dialed(c, m.fd, m.err)
	case msgAcquired:
		c := m.c
		if c.fd < 0 || c.phase != pBusy || c.ex.gen != m.gen {
			l.discard(m)
			return
		}
		c.ex.waiting = false
		if _, ok := m.err.(*panicError); ok {
			l.closeClient(c) // as guard does
			return
		}
		if m.err != nil {
			l.acquireFailed(c, m.err)
			return
		}
		l.tryOn(c, m.lease)
	case msgCloseIdle:
		l.closing = true
		for _, s := range l.socks {
			if s == nil || s.kind != clientSock {
				continue
			}
			switch {
			case s.phase == pIdle && s.r == s.w:
				l.closeClient(s)
			case s.phase == pBusy && s.r+s.ex.headLen == s.w:
				// Its request is the last one the client sent: its answer says Connection:
				// close (unless its head is out already), and the connection closes after it.
				// Requests pipelined after it are served first; the last one's answer says so.
				s.ex.closeAfter = true
			}
		}
	case msgCloseAll:
		l.closing = true
		for _, s := range l.socks {
			if s != nil && s.kind == clientSock {
				l.closeClient(s)
			}
		}
	}
}

// add registers s with the loop's epoll.
func (l *loop) add(s *sock) bool {
	ev := syscall.EpollEvent{Events: sockFlags, Fd: int32(s.fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		return false
	}
	for s.fd >= len(l.socks) {
		l.socks = append(l.socks, nil)
	}
	l.socks[s.fd] = s
	return true
}

// forget removes s from the loop without closing its socket (it is handed over).
func (l *loop) forget(s *sock) {
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil)
	l.socks[s.fd] = nil
	s.fd = -1
}

func (l *loop) closeSock(s *sock) {
	fd := s.fd
	l.forget(s)
	syscall.Close(fd)
}

// closeClient closes c, giving back what its request in flight holds.
func (l *loop) closeClient(c *sock) {
	if c.fd < 0 {
		return
	}
	l.abandon(c)
	l.clients--
	l.closeSock(c)
}

// abandon gives back what c's exchange holds (the client is gone or the try was handed over).
func (l *loop) abandon(c *sock) {
	ex := &c.ex
	l.gen++
	ex.gen = l.gen // results still out are discarded
	if ex.up != nil {
		if ex.up.fd >= 0 {
			l.closeSock(ex.up)
		}
		ex.up = nil
	}
	l.endTry(ex)
	if ex.active {
		ex.active = false
		l.p.budget.active.Add(-1)
	}
}

// endTry releases the current try's lease and retry slot.
func (l *loop) endTry(ex *exchange) {
	if ex.lease.Backend != nil {
		ex.lease.Release()
		ex.lease = Lease{}
	}
	if ex.counted {
		ex.counted = false
		l.p.budget.doneRetry()
	}
}

// fill reads into s's buffer, moving unconsumed bytes to its start first; full means the buffer
// holds only unconsumed bytes and nothing was read. n == 0 and e == 0 is the peer's end of file;
// EAGAIN clears readable, and so does a short read unless the peer closed its side (a later byte
// raises a new edge).
func (s *sock) fill() (n int, e syscall.Errno, full bool) {
	if s.w == len(s.in) {
		if s.r == 0 {
			return 0, 0, true
		}
		s.w = copy(s.in, s.in[s.r:s.w])
		s.r = 0
	}
	space := len(s.in) - s.w
	n, e = rawsys.Read(s.fd, s.in[s.w:])
	if e == syscall.EAGAIN {
		s.readable = false
		return 0, e, false
	}
	if e == 0 && n > 0 {
		if n < space {
			s.readable = s.hup
		}
		s.w += n
	}
	return n, e, false
}

// readClient reads what c sent while it waits for a request.
func (l *loop) readClient(c *sock) {
	for c.fd >= 0 && c.phase == pIdle && c.readable {
		n, e, full := c.fill()
		switch {
		case full:
			l.handOff(c) // a head larger than the buffer
		case e == syscall.EAGAIN:
		case e != 0 || n == 0:
			l.closeClient(c) // gone (a partial head too: net/http drops it silently as well)
		default:
			l.serveNext(c)
			continue
		}
		return
	}
}

// serveIdle serves c, between requests: what it has buffered, then what it has sent since.
func (l *loop) serveIdle(c *sock) {
	l.serveNext(c)
	if c.fd >= 0 && c.phase == pIdle && c.readable {
		l.readClient(c)
	}
}

// serveNext starts c's next request if its head is buffered, else waits for it.
func (l *loop) serveNext(c *sock) {
	cfg := &l.p.cfg
	if c.r == c.w {
		c.r, c.w = 0, 0
		if l.closing {
			l.closeClient(c)
			return
		}
		c.partial = false
		if c.first {
			c.deadline = l.after(cfg.readHeader)
		} else {
			c.deadline = l.after(cfg.idleTimeout)
		}
		return
	}
	buf := c.in[c.r:c.w]
	if c.first {
		if n := min(len(buf), len(h2Preface)); string(buf[:n]) == h2Preface[:n] {
			l.handOff(c) // perhaps h2c: serveH1 tells
			return
		}
	}
	req, n := c.rs.parseRequest(buf)
	if req == nil {
		if headEnded(buf) {
			l.handOff(c) // another shape: the goroutine path parses and serves it
			return
		}
		if !c.partial {
			c.partial = true
			c.deadline = l.after(cfg.readHeader)
		}
		return
	}
	if (req.ProtoAtLeast(1, 1) && req.Host == "") || isUpgrade(req) {
		l.handOff(c) // the goroutine path answers 400, or upgrades
		return
	}
	delete(req.Header, "Expect") // no body, so nothing to continue
	req.RemoteAddr = c.remote
	var cluster *Cluster
	var key uint64
	if !l.guard(c, func() { cluster, key = l.p.clusterFor(req), l.p.key(req) }) {
		return
	}
	c.phase, c.first, c.partial, c.deadline = pBusy, false, false, time.Time{}
	l.gen++
	c.ex = exchange{req: req, headLen: n, closeAfter: req.Close || (l.closing && c.r+n == c.w), keepAlive: keepAlive10(req), gen: l.gen, active: true,
		a: attempts{cluster: cluster, key: key, retriable: isRetriable(req)}}
	l.p.budget.active.Add(1)
	l.attempt(c)
}

// panicError is a panic recovered from user code, as recovered reports it.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprint("panic: ", e.v) }

// recovered runs f and returns the panic it raised, if any, logged as serveHTTP logs a handler's:
// the event loops call user code (KeyFunc, Balancer) through it, where a panic would end the
// process.
func (p *HTTPProxy) recovered(f func()) (perr *panicError) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("handler panic", zap.Any("panic", r))
			perr = &panicError{r}
		}
	}()
	f()
	return nil
}

// guard runs f, which calls user code (KeyFunc, Split matching, the Balancer); if it panics, c is
// closed, as the goroutine path closes the connection of a panicking handler, and ok is false.
func (l *loop) guard(c *sock, f func()) (ok bool) {
	if l.p.recovered(f) != nil {
		l.closeClient(c)
		return false
	}
	return true
}

// attempt runs c's next attempt, or answers with the last failure.
func (l *loop) attempt(c *sock) {
	ex := &c.ex
	p := l.p
	if ex.a.next > p.cfg.retries {
		l.fail(c)
		return
	}
	counted, ok := p.begin(&ex.a)
	if !ok {
		l.fail(c)
		return
	}
	ex.counted = counted
	var lease Lease
	var err error
	if !l.guard(c, func() { lease, err = ex.a.cluster.acquire(l.ctx, ex.a.key, ex.a.tried(), false) }) {
		return
	}
	switch {
	case errors.Is(err, errWouldWait):
		// Wait for a slot on a goroutine, as the goroutine path does.
		ex.waiting = true
		cl, key, tried, gen := ex.a.cluster, ex.a.key, append([]*Backend(nil), ex.a.tried()...), ex.gen
		l.async.Add(1)
		go func() {
			defer l.async.Done()
			var lease Lease
			var err error
			if perr := l.p.recovered(func() { lease, err = cl.Acquire(l.ctx, key, tried) }); perr != nil {
				err = perr
			}
			m := msg{kind: msgAcquired, c: c, gen: gen, lease: lease, err: err}
			if !l.post(m) {
				l.discard(m)
			}
		}()
	case err != nil:
		l.acquireFailed(c, err)
	default:
		l.tryOn(c, lease)
	}
}

func (l *loop) acquireFailed(c *sock, err error) {
	l.endTry(&c.ex)
	if l.ctx.Err() != nil {
		l.closeClient(c)
		return
	}
	c.ex.a.acquireFailed(err)
	l.fail(c)
}

// tryOn starts a try of c's request on the lease's endpoint.
func (l *loop) tryOn(c *sock, lease Lease) {
	ex := &c.ex
	ex.lease, ex.mayRetry, ex.start, ex.fresh = lease, l.p.mayRetry(&ex.a), l.now, false
	l.connect(c)
}

// connect sends the try on a pooled connection, or dials one (on a goroutine).
func (l *loop) connect(c *sock) {
	ex := &c.ex
	b := ex.lease.Backend
	if !ex.fresh {
		if u := l.pooled(b); u != nil {
			ex.reused = true
			l.send(c, u)
			return
		}
	}
	ex.reused, ex.waiting = false, true
	gen, p := ex.gen, l.p
	l.async.Add(1)
	go func() {
		defer l.async.Done()
		fd := -1
		nc, err := p.dialer.DialContext(l.ctx, "tcp", b.Addr)
		if err == nil {
			fd, err = takeFD(nc)
		}
		if err != nil {
			err = &dialError{addr: b.Addr, err: err}
		}
		m := msg{kind: msgDialed, c: c, gen: gen, fd: fd, err: err}
		if !l.post(m) {
			l.discard(m)
		}
	}()
}

// open reports whether uc's endpoint has neither closed its side nor sent anything since the last
// answer, as far as the socket tells without waiting.
func (uc *upConn) open() bool {
	if uc.br.Buffered() > 0 {
		return false
	}
	sc, ok := uc.nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	open := true
	rc.Control(func(fd uintptr) {
		var b [1]byte
		_, _, e := syscall.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		open = e == syscall.EAGAIN
	})
	return open
}

// takeFD returns a duplicate of nc's socket and closes nc.
func takeFD(nc net.Conn) (int, error) {
	defer nc.Close()
	return dupSocket(nc)
}

// dupSocket returns a duplicate of nc's socket (close-on-exec, non-blocking as nc's).
func dupSocket(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var e syscall.Errno
	if cerr := rc.Control(func(s uintptr) {
		var r uintptr
		r, _, e = syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		fd = int(r)
	}); cerr != nil {
		return -1, cerr
	}
	if e != 0 {
		return -1, os.NewSyscallError("fcntl", e)
	}
	return fd, nil
}

func (l *loop) dialed(c *sock, fd int, err error) {
	ex := &c.ex
	ex.waiting = false
	b := ex.lease.Backend
	if err == nil {
		u := &sock{fd: fd, kind: upstreamSock, b: b, writable: true, in: make([]byte, upBuf)}
		if l.add(u) {
			l.send(c, u)
			return
		}
		syscall.Close(fd)
		err = &dialError{addr: b.Addr, err: errors.New("epoll_ctl failed")}
	}
	b.c.Report(b, false, l.now.Sub(ex.start))
	l.tryFailed(c, tryFailed(err))
}

// pooled returns an idle connection to b, or nil.
func (l *loop) pooled(b *Backend) *sock {
	if b.retired.Load() {
		l.dropPool(b)
		return nil
	}
	st := l.pools[b]
	for len(st) > 0 {
		u := st[len(st)-1]
		st[len(st)-1] = nil
		st = st[:len(st)-1]
		if u.fd >= 0 {
			l.pools[b] = st
			return u
		}
	}
	delete(l.pools, b)
	return nil
}

func (l *loop) pool(u *sock) {
	b := u.b
	st := l.pools[b]
	// Drop connections closed while pooled.
	k := 0
	for _, v := range st {
		if v.fd >= 0 {
			st[k] = v
			k++
		}
	}
	clear(st[k:])
	st = st[:k]
	if l.closing || b.retired.Load() || len(st) >= l.p.cfg.maxIdlePerEp {
		l.closeSock(u)
		l.pools[b] = st
		return
	}
	u.phase, u.client, u.deadline, u.r, u.w = pIdle, nil, time.Time{}, 0, 0
	l.pools[b] = append(st, u)
}

func (l *loop) dropPool(b *Backend) {
	for _, u := range l.pools[b] {
		if u.fd >= 0 {
			l.closeSock(u)
		}
	}
	delete(l.pools, b)
}

// send writes c's request on u within the per-try timeout.
func (l *loop) send(c *sock, u *sock) {
	ex := &c.ex
	ex.up, u.client, u.phase, u.r, u.w = u, c, pSending, 0, 0
	ex.interim = 0
	l.sink.b = u.out[:0]
	l.bw.Reset(&l.sink)
	writeRequest(l.bw, nil, ex.req) // no body: it cannot fail
	u.out, u.outOff = l.sink.b, 0
	l.sink.b = nil
	u.deadline = l.after(l.p.cfg.perTryTimeout)
	l.later(u)
}

// flush writes s's pending output; done means all of it is written. EAGAIN clears writable.
func (s *sock) flush() (done bool, e syscall.Errno) {
	if e := s.werr; e != 0 {
		s.werr = 0
		if e == syscall.EAGAIN {
			s.writable = false
		}
		return false, e
	}
	for s.outOff < len(s.out) {
		n, e := rawsys.Write(s.fd, s.out[s.outOff:])
		if e != 0 {
			if e == syscall.EAGAIN {
				s.writable = false
			}
			return false, e
		}
		s.outOff += n
	}
	s.out, s.outOff = s.out[:0], 0
	return true, 0
}

// after is the deadline d from now (none when d <= 0).
func (l *loop) after(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return l.now.Add(d)
}

func (l *loop) flushUp(u *sock) {
	if done, e := u.flush(); !done {
		if e != syscall.EAGAIN {
			l.upFailed(u, os.NewSyscallError("write", e))
		}
		return
	}
	u.phase = pHead
	if u.readable {
		l.readUp(u)
	}
}

// readUp reads u's answer while there is room for it.
func (l *loop) readUp(u *sock) {
	for u.fd >= 0 && u.readable && (u.phase == pHead || u.phase == pBody) {
		c := u.client
		if u.phase == pBody && c.outOff < len(c.out) {
			return // the client has not taken the last part yet
		}
		n, e, full := u.fill()
		if full {
			l.handOffTry(c) // a response head larger than the buffer
			return
		}
		if e == syscall.EAGAIN {
			return
		}
		if e != 0 || n == 0 {
			var err error = io.EOF
			if e != 0 {
				err = os.NewSyscallError("read", e)
			} else if u.w > u.r || u.phase == pBody {
				err = io.ErrUnexpectedEOF
			}
			if u.phase == pBody {
				l.closeClient(c) // the answer is cut short: the client must see it cut
				return
			}
			l.upFailed(u, err)
			return
		}
		if u.phase == pHead {
			l.head(u)
		} else {
			l.body(u)
		}
	}
}

// upFailed ends a try whose connection failed before an answer: a stale pooled connection is
// replaced by a new one once (as roundTrip does); else the try failed.
func (l *loop) upFailed(u *sock, err error) {
	c := u.client
	ex := &c.ex
	l.closeSock(u)
	ex.up = nil
	b := ex.lease.Backend
	timeout := errors.Is(err, os.ErrDeadlineExceeded)
	replay := ex.mayRetry || isRetriable(ex.req)
	if ex.reused && !ex.fresh && replay && !timeout && l.ctx.Err() == nil {
		ex.fresh = true
		l.connect(c)
		return
	}
	b.c.Report(b, false, l.now.Sub(ex.start))
	l.tryFailed(c, tryFailed(fmt.Errorf("endpoint %s: %w", b.Addr, err)))
}

// conn returns the Connection header of ex's answer.
func (ex *exchange) conn() connHeader { return connHeaderFor(ex.closeAfter, ex.keepAlive) }

// tryFailed moves c's request to its next attempt.
func (l *loop) tryFailed(c *sock, terr *tryError) {
	ex := &c.ex
	b := ex.lease.Backend
	l.endTry(ex)
	ex.a.failed(terr, b)
	if l.ctx.Err() != nil {
		l.closeClient(c)
		return
	}
	l.attempt(c)
}

// fail answers c's request with its last failure.
func (l *loop) fail(c *sock) {
	ex := &c.ex
	t := ex.a.final()
	c.out = appendError(c.out, t.status, t.err.Error(), ex.conn(), ex.req.Method == http.MethodHead)
	ex.bodyDone = true
	l.later(c)
}

// head handles u's response head once it is buffered whole.
func (l *loop) head(u *sock) {
	c := u.client
	ex := &c.ex
	buf := u.in[u.r:u.w]
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		if headEnded(buf) {
			l.handOffTry(c) // lines ending in a bare LF: net/http reads them
		}
		return
	}
	b := ex.lease.Backend
	line := buf[:bytes.IndexByte(buf, '\r')]
	code, _, ok := statusOf(line)
	if !ok {
		l.handOffTry(c)
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An interim answer (100 Continue, 103 Early Hints): dropped, as readAnswer drops it; the
		// final one follows.
		u.r += end + 4
		if ex.interim++; ex.interim > maxInterim {
			b.c.Report(b, false, l.now.Sub(ex.start))
			l.closeSock(u)
			ex.up = nil
			l.tryFailed(c, tryFailed(fmt.Errorf("endpoint %s: %w", b.Addr, errTooManyInterim)))
			return
		}
		if u.r == u.w {
			u.r, u.w = 0, 0
			return
		}
		l.head(u)
		return
	}
	if ex.mayRetry && (code == 502 || code == 503 || code == 504) {
		b.c.Report(b, false, l.now.Sub(ex.start))
		l.closeSock(u)
		ex.up = nil
		l.tryFailed(c, &tryError{status: code, err: fmt.Errorf("endpoint %s answered %d", b.Addr, code)})
		return
	}
	resp, err := u.parseHead(buf[:end+2], ex.req)
	if err != nil {
		l.handOffTry(c)
		return
	}
	b.c.Report(b, code < 500, l.now.Sub(ex.start))
	u.deadline = l.after(l.p.cfg.bodyIdle) // the wait for the body: see sweep
	u.r += end + 4
	c.out = u.relayHead(c.out, resp, ex.req, ex.conn())
	ex.remaining = bodyLength(resp, ex.req)
	ex.keepUp = !resp.Close
	u.phase = pBody
	l.body(u)
}

// parseHead parses u's response head to req (respState.parse), or returns the last one's parse
// when head and req's method are those of the last: an endpoint on a keep-alive connection mostly
// answers alike (nginx's Date changes once a second), and parse copies each head into a new
// string. The loop only reads the response, within head, so the last parse is as good as a new
// one.
func (u *sock) parseHead(head []byte, req *http.Request) (*http.Response, error) {
	if len(u.lastHead) > 0 && req.Method == u.lastFor && bytes.Equal(head, u.lastHead) {
		u.rsp.resp.Request = req
		return &u.rsp.resp, nil
	}
	u.lastHead, u.lastOut = u.lastHead[:0], u.lastOut[:0]
	resp, err := u.rsp.parse(head, req)
	if err != nil {
		return nil, err
	}
	u.lastHead, u.lastFor = append(u.lastHead[:0], head...), req.Method
	return resp, nil
}

// relayHead appends to dst the head of resp, parsed by parseHead, as appendHead does, or the head
// it appended last when resp is the last parse and conn the same: appendHead's output depends only
// on resp, req's method (both the same while parseHead reuses its parse) and conn (which tells an
// HTTP/1.0 keep-alive client from others, not only a closing connection from an open one).
func (u *sock) relayHead(dst []byte, resp *http.Response, req *http.Request, conn connHeader) []byte {
	if len(u.lastOut) > 0 && u.outConn == conn {
		return append(dst, u.lastOut...)
	}
	n := len(dst)
	dst = appendHead(dst, resp, req, conn)
	u.lastOut, u.outConn = append(u.lastOut[:0], dst[n:]...), conn
	return dst
}

// appendHead appends the head of resp as the goroutine path writes it to a client, with the
// Connection header conn.
func appendHead(dst []byte, resp *http.Response, req *http.Request, conn connHeader) []byte {
	dst = append(dst, statusLine(resp.StatusCode)...)
	drop := connectionTokens(resp.Header)
	for k, vv := range resp.Header {
		if hopHeaders[k] || drop[k] || k == "Content-Length" {
			continue
		}
		for _, v := range vv {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	if resp.ContentLength >= 0 && req.Method != http.MethodHead && !noBodyStatus(resp.StatusCode) {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, resp.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	} else {
		for _, v := range resp.Header["Content-Length"] {
			dst = append(dst, "Content-Length: "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	dst = append(dst, conn.line()...)
	return append(dst, "\r\n"...)
}

// body moves the body bytes u has buffered to the client.
func (l *loop) body(u *sock) {
	c := u.client
	ex := &c.ex
	k := int(min(ex.remaining, int64(u.w-u.r)))
	c.out = append(c.out, u.in[u.r:u.r+k]...)
	if c.pass != l.pass {
		c.pass, c.relayed = l.pass, 0
	}
	c.relayed += k
	u.r += k
	ex.remaining -= int64(k)
	if k > 0 {
		u.deadline = l.after(l.p.cfg.bodyIdle) // the endpoint is not stalled: see sweep
	}
	if ex.remaining == 0 {
		if u.r != u.w || u.hup {
			ex.keepUp = false // bytes beyond the body, or the endpoint has closed its side
		}
		ex.up, u.client = nil, nil
		l.endTry(ex)
		if ex.keepUp {
			l.pool(u)
		} else {
			l.closeSock(u)
		}
		ex.bodyDone = true
	} else if u.r == u.w {
		u.r, u.w = 0, 0
	}
	l.later(c)
}

// flushClient writes c's pending output; once an answer is written whole, the exchange ends.
func (l *loop) flushClient(c *sock) {
	if done, e := c.flush(); !done {
		if e == syscall.EAGAIN {
			c.deadline = l.after(l.p.cfg.writeTimeout)
		} else {
			l.closeClient(c)
		}
		return
	}
	c.deadline = time.Time{}
	ex := &c.ex
	if c.phase != pBusy {
		return
	}
	if !ex.bodyDone {
		if u := ex.up; u != nil && u.readable {
			if c.pass == l.pass && c.relayed >= passCap {
				l.more = append(l.more, c)
				return
			}
			l.readUp(u)
		}
		return
	}
	// The request is answered.
	l.p.loopServed.Add(1)
	ex.active = false
	l.p.budget.active.Add(-1)
	c.r += ex.headLen
	ex.req = nil
	c.phase = pIdle
	if ex.closeAfter {
		l.closeClient(c)
		return
	}
	l.ready = append(l.ready, c)
}

// sweep acts on expired deadlines and on pools of endpoints that went away.
func (l *loop) sweep() {
	for _, s := range l.socks {
		if s == nil || s.deadline.IsZero() || l.now.Before(s.deadline) {
			continue
		}
		s.deadline = time.Time{}
		if s.kind == clientSock {
			l.closeClient(s) // idle, slow head, or a client not reading its answer
			continue
		}
		switch {
		case s.phase == pSending || s.phase == pHead:
			l.upFailed(s, os.ErrDeadlineExceeded)
		case s.phase == pBody && s.client.outOff < len(s.client.out):
			// The body waits for the client to take what came before (its write timeout
			// bounds that), not for the endpoint.
			s.deadline = l.after(l.p.cfg.bodyIdle)
		case s.phase == pBody:
			// The endpoint sent nothing of the body for the body idle timeout: the answer,
			// started, cannot be replaced, and the client must see it cut.
			l.closeClient(s.client)
		}
	}
	for b := range l.pools {
		if b.retired.Load() {
			l.dropPool(b)
		}
	}
}

// handOff gives c, between requests, to the goroutine path with the bytes it has read.
func (l *loop) handOff(c *sock) {
	pre := bytes.Clone(c.in[c.r:c.w])
	fd, remote, first := c.fd, c.remote, c.first
	l.clients--
	l.forget(c)
	l.p.serveHandedOff(fd, remote, pre, first, nil, nil)
}

// handOffTry gives c and its try in flight to the goroutine path: it reads the answer with
// net/http and goes on with the request's attempts.
func (l *loop) handOffTry(c *sock) {
	ex := &c.ex
	u := ex.up
	pre := bytes.Clone(c.in[c.r:c.w])
	answer := bytes.Clone(u.in[u.r:u.w])
	a, lease, counted, start, mayRetry := ex.a, ex.lease, ex.counted, ex.start, ex.mayRetry
	ufd, cfd, remote := u.fd, c.fd, c.remote
	// The goroutine path owns these now.
	ex.lease, ex.counted, ex.active, ex.up = Lease{}, false, false, nil
	l.forget(u)
	l.clients--
	l.forget(c)
	p := l.p
	var once sync.Once
	giveBack := func() {
		once.Do(func() {
			lease.Release()
			if counted {
				p.budget.doneRetry()
			}
			p.budget.active.Add(-1)
		})
	}
	var uc *upConn
	if nc, err := fdConn(ufd); err == nil {
		uc = newUpConn(nc)
		uc.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(answer), nc), 8<<10)
	}
	resume := func(w http.ResponseWriter, r *http.Request) {
		defer giveBack()
		b := lease.Backend
		var resp *http.Response
		err := errors.New("cannot take over the upstream connection")
		if uc != nil {
			if d := p.cfg.perTryTimeout; d > 0 {
				uc.nc.SetDeadline(start.Add(d))
			}
			resp, err = readAnswer(uc, r)
			if err != nil {
				uc.nc.Close()
				err = fmt.Errorf("endpoint %s: %w", b.Addr, err)
			}
		}
		done, terr := p.answer(w, r, b, start, uc, resp, err, mayRetry)
		giveBack()
		if done {
			return
		}
		a.failed(terr, b)
		if r.Context().Err() != nil {
			return
		}
		p.budget.active.Add(1) // retry counts the request in flight again, as ServeHTTP does
		defer p.budget.active.Add(-1)
		p.retry(w, r, &a)
	}
	abandon := func() {
		if uc != nil {
			uc.nc.Close()
		}
		giveBack()
	}
	p.serveHandedOff(cfd, remote, pre, false, resume, abandon)
}

// fdConn makes a net.Conn of a socket, taking it over.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	c, err := net.FileConn(f)
	f.Close()
	return c, err
}

// serveHandedOff serves a client connection on the goroutine path from now on (see serveH1); if
// resume is set, abandon runs when resume did not (the connection could not be served).
func (p *HTTPProxy) serveHandedOff(fd int, remote string, pre []byte, first bool, resume http.HandlerFunc, abandon func()) {
	p.handedOff.Add(1)
	p.h1wg.Add(1)
	go func() {
		defer p.h1wg.Done()
		ran := false
		if abandon != nil {
			defer func() {
				if !ran {
					abandon()
				}
			}()
		}
		c, err := fdConn(fd)
		if err != nil {
			p.log.Warn("hand over connection", zap.String("remote", remote), zap.Error(err))
			return
		}
		st := p.conns.adopt(c)
		if st == nil {
			c.Close()
			return
		}
		defer p.conns.remove(c)
		var h http.HandlerFunc
		if resume != nil {
			h = func(w http.ResponseWriter, r *http.Request) {
				ran = true
				resume(w, r)
			}
		}
		p.serveH1(*p.reqCtx.Load(), c, st, pre, first, h)
	}()
}

// headEnded reports whether b holds the end of a head as net/http finds it: an empty line (LF or
// CRLF) after a line ending in LF or CRLF.
func headEnded(b []byte) bool {
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n"))
}
