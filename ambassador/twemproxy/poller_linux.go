//go:build linux

package twemproxy

import (
	"bufio"
	"errors"
	"net"
	"os"
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

	mu      sync.Mutex
	clients map[int32]*client // registered clients by socket descriptor

	// Used by the loop goroutine only.
	events  []syscall.EpollEvent
	nev     int
	waitErr error
	buf     []byte
	src     sliceReader
	br      *bufio.Reader
	batch   []*Request
	ds      dirtySet
	scratch routeScratch
}

// The states of a client's read side.
const (
	pollOwn  = iota // the client's goroutine reads
	pollIdle        // the poller reads it when it is readable
	pollBusy        // the poller is reading it
)

// epollET is syscall.EPOLLET as the uint32 of EpollEvent.Events (the constant is negative).
const epollET = 1 << 31

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
		clients: map[int32]*client{}, events: make([]syscall.EpollEvent, 128), buf: make([]byte, ioBufSize),
		batch: make([]*Request, 0, maxBatch)}
	cp.br = bufio.NewReaderSize(&cp.src, ioBufSize)
	cp.scratch.ds = &cp.ds
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
		err := cp.raw.Read(cp.wait)
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

// round serves the clients of one epoll wait, then flushes the server connections they wrote to
// and writes the replies the proxy answered itself.
func (cp *clientPoller) round() {
	now := time.Now().UnixNano()
	for _, ev := range cp.events[:cp.nev] {
		cp.mu.Lock()
		c := cp.clients[ev.Fd]
		cp.mu.Unlock()
		if c == nil || !c.pollState.CompareAndSwap(pollIdle, pollBusy) {
			continue // gone, or its goroutine reads
		}
		c.lastActive.Store(now)
		if why, back := cp.serve(c, ev.Events&epollEnd != 0); back {
			c.pollState.Store(pollOwn)
			c.resume <- why
			continue
		}
		c.pollState.Store(pollIdle)
		if c.kickOut.Load() && c.pollState.CompareAndSwap(pollIdle, pollOwn) {
			c.resume <- resumeRead
		}
	}
	cp.scratch.flush()
}

// serve reads and routes what client c sent; back reports that c must go back to its goroutine,
// and why. ended says the event reported the end of the stream (or an error): c is then read
// until the read that sees it, as no later event would come.
func (cp *clientPoller) serve(c *client, ended bool) (why resumeReason, back bool) {
	p := c.p
	cp.scratch.clientID = c.id
	for {
		c.mu.Lock()
		room := c.roomLocked()
		c.mu.Unlock()
		if !room {
			return resumeSpace, true
		}
		n, err := c.rr.readNow(cp.buf)
		if err == syscall.EAGAIN {
			return 0, false
		}
		if err != nil || n == 0 {
			return resumeRead, true // the goroutine's read sees the end or the error itself
		}
		data := cp.buf[:n]
		hadPending := len(c.pending) > 0
		if hadPending {
			c.pending = append(c.pending, data...)
			data = c.pending
		}
		cp.src.b, cp.src.off = data, 0
		cp.br.Reset(&cp.src)
		consumed := 0
		batch := cp.batch
		var stop bool
		for {
			r := getRequest()
			err := p.proto.ReadRequest(cp.br, r)
			r.c = c
			if err != nil {
				if errors.Is(err, errIncomplete) {
					putRequest(r)
					break
				}
				batch = c.readFailed(err, r, batch)
				stop = true
				break
			}
			consumed = cp.src.off - cp.br.Buffered()
			batch = append(batch, r)
			if r.Quit {
				stop = true
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
		rest := data[consumed:]
		// What is left is the start of a request: keep it for the next read, or let the
		// goroutine finish it when this read added nothing complete or it is large.
		finish := true
		switch {
		case len(rest) == 0:
			c.pending = c.pending[:0]
			finish = false
		case hadPending && consumed == 0: // pending is data
		default:
			c.pending = append(c.pending[:0], rest...)
			finish = len(rest) > ioBufSize/2
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
		c.register = func(uintptr) { c.regErr = cp.register(c) }
	}
	c.lastActive.Store(time.Now().UnixNano())
	c.pollState.Store(pollIdle)
	// Registered inside Control, which holds the descriptor: a connection closed meanwhile (its
	// number then maybe another socket's) fails here instead of registering that socket.
	err := c.rr.raw.Control(c.register)
	if err == nil {
		err = c.regErr
	}
	if err != nil {
		c.pollState.Store(pollOwn)
		return false
	}
	if c.kickOut.Load() && c.pollState.CompareAndSwap(pollIdle, pollOwn) {
		return false // closed meanwhile: the goroutine reads (and fails)
	}
	return true
}

// register adds c's socket to the epoll set, or modifies its registration; either reports the
// socket at once if it is readable. It must run while c's descriptor is held (see adopt); it
// holds the epoll set's.
func (cp *clientPoller) register(c *client) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: c.fd}
	op := syscall.EPOLL_CTL_MOD
	if !c.registered {
		op = syscall.EPOLL_CTL_ADD
		cp.mu.Lock()
		cp.clients[c.fd] = c
		cp.mu.Unlock()
	}
	// The epoll set's descriptor is held too: closed by close meanwhile, its number could be
	// another descriptor's (another pool's epoll set) by now.
	c.ctlOp, c.ctlEv = op, ev
	if c.ctl == nil {
		c.ctl = func(epfd uintptr) {
			c.ctlErr = syscall.EpollCtl(int(epfd), c.ctlOp, int(c.fd), &c.ctlEv)
			if c.ctlErr == syscall.EEXIST {
				c.ctlErr = syscall.EpollCtl(int(epfd), syscall.EPOLL_CTL_MOD, int(c.fd), &c.ctlEv)
			}
		}
	}
	err := cp.raw.Control(c.ctl)
	if err == nil {
		err = c.ctlErr
	}
	if err != nil {
		if !c.registered {
			cp.forget(c)
		}
		return err
	}
	c.registered = true
	return nil
}

// release takes client c out of the poller after its connection was closed: its goroutine reads
// and sees the connection closed. Safe to call from any goroutine, with c.mu held.
func (cp *clientPoller) release(c *client) {
	c.kickOut.Store(true)
	if c.pollState.CompareAndSwap(pollIdle, pollOwn) {
		c.resume <- resumeRead
	}
}

// forget drops client c from the clients map before its connection is closed for good; closing
// the socket takes it out of the epoll set. A map entry a newer client with c's descriptor number
// took over is left alone.
func (cp *clientPoller) forget(c *client) {
	cp.mu.Lock()
	if cp.clients[c.fd] == c {
		delete(cp.clients, c.fd)
	}
	cp.mu.Unlock()
}

// pollClient is a client's state in the poller.
type pollClient struct {
	pollState  atomic.Int32 // pollOwn, pollIdle or pollBusy
	kickOut    atomic.Bool  // the connection was closed: the goroutine must read (and fail)
	lastActive atomic.Int64 // unix nanoseconds of the last round that read the client
	rr         *rawIO       // set by the goroutine in its first adopt; read by the poller only
	fd         int32
	registered bool             // in the epoll set; used by the goroutine
	register   func(fd uintptr) // cp.register(c) for rr's Control, bound once; sets regErr
	regErr     error
	ctl        func(epfd uintptr) // epoll_ctl(ctlOp, ctlEv) for the epoll set's Control, bound once
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
