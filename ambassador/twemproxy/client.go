package twemproxy

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

const (
	maxBatch = 64
	// A client's reader stops reading while it has this many requests unanswered or this many
	// bytes of replies it has not taken: complete ones waiting behind an unanswered request,
	// ones waiting to be written, and the rest of the one being written.
	maxPending = 1024
	maxOutBuf  = 1 << 20
	// A client that takes no byte of its replies for stallTimeout while more than maxStalledOut
	// of them wait unwritten is closed and its replies dropped: the requests it has in flight when
	// its reader stops can have replies of any size. A client that reads, however slowly, is not
	// cut off by this rule (redis's normal clients have no output limit by default, nutcracker
	// none), nor is one whose replies are complete but held behind an unanswered request. There is
	// no bound on what a client that reads may have waiting: one redis reply can be 512 MB, and a
	// pipeline's replies can come faster than a client reads them.
	maxStalledOut = 32 << 20
	stallTimeout  = 5 * time.Second
	// After the last reply to a client whose stream ends, at a quit or a request refused with a
	// *ClientError, the proxy shuts its side of the connection and reads what the client still
	// sends, until the client closes its side, for at most lingerBytes and lingerTimeout, before
	// it closes the connection: closing a socket with unread bytes in it sends a reset, which can
	// make the client lose the replies (the rest of an oversized request is such bytes, and so is
	// what a client pipelined after quit). A client that sends more, or for longer, may still get
	// the reset. A lingering client no longer counts as a client connection (see pool.linger).
	lingerBytes   = 64 << 20
	lingerTimeout = 2 * time.Second
)

// client is one client connection. Its reader goroutine parses batches of requests, queues them
// in order and hands them to the server connections; whoever completes the oldest request (a
// server connection's reader, mostly) moves the ready replies to out and writes them, without
// blocking: what the socket does not take at once is left to the writer goroutine.
type client struct {
	p      *pool
	conn   net.Conn
	nb     *rawIO // non-blocking writes; nil: every write goes through the writer goroutine
	id     uint64
	authed bool // used by the reader goroutine only

	mu        sync.Mutex
	queue     []*Request // requests in order, from head on
	head      int
	out       []byte // replies not written yet
	outLarge  bool   // a reply larger than maxPooledBuf went into out: drop its array once written
	ready     int    // bytes of the complete replies still in queue, behind an incomplete one
	writing   int    // bytes of the writer goroutine's buffer not written yet
	spare     []byte
	stalled   bool // the writer goroutine owns writing out
	broken    bool // the connection failed or was closed: replies are dropped
	quit      bool // a quit (or fatal error) reply is in out: close once it is written
	lingering bool // the quit reply is written and the write side shut: linger before closing
	readDone  bool
	waiting   bool // the reader waits for space
	drainedOK bool
	uncounted atomic.Bool // no longer counted in the pool's client connections (uncount)

	kick    chan struct{} // wakes the writer goroutine; capacity 1
	space   chan struct{} // wakes the reader; capacity 1
	drained chan struct{} // closed once the reader is done and every reply is written or dropped

	// The read side, when the pool's poller reads the client (see clientPoller): whoever owns
	// it uses pending, full and idleExpired; the poller hands it back through resume.
	poller      *clientPoller     // nil: the goroutine always reads
	resume      chan resumeReason // capacity 1
	pending     leftover          // the start of a request the poller read, and its read's error
	full        []*serverConn     // server connections to wait for room on
	idleExpired bool              // the poller found the client idle: close it
	pollClient
}

// resumeReason is why the poller gives a client's read side back to its goroutine.
type resumeReason uint8

const (
	resumeRead  resumeReason = iota // read with blocking reads: end of stream, error, closed, idle, an incomplete request
	resumeSpace                     // the client has too much unanswered or unwritten: wait for space
	resumeRoom                      // wait for room on the server connections in full
	resumeStop                      // the stream ended (quit, or a bad request answered)
	resumeCheck                     // a server session: see whether the oldest request is overdue
)

func newClient(p *pool, conn net.Conn) *client {
	c := &client{p: p, conn: conn, id: p.nextID.Add(1), kick: make(chan struct{}, 1),
		space: make(chan struct{}, 1), drained: make(chan struct{}), poller: p.poller, resume: make(chan resumeReason, 1)}
	c.nb = rawIOFor(conn)
	return c
}

func (c *client) serve() {
	defer func() {
		c.p.clientMu.Lock()
		delete(c.p.clients, c)
		c.p.clientMu.Unlock()
	}()
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); c.writeLoop() }()
	c.readLoop()
	if c.poller != nil {
		// The stream ended: the client needs no more events, also while its last replies are
		// written (they do not go through the poller) and while it lingers.
		c.poller.forget(c)
	}
	c.mu.Lock()
	c.readDone = true
	c.checkDrainedLocked()
	c.mu.Unlock()
	<-c.drained
	close(c.kick)
	<-writerDone
	c.mu.Lock()
	lingering := c.lingering
	c.mu.Unlock()
	c.uncount()
	if lingering && c.p.linger.start(c.p.currentCfg().ClientConnections) {
		c.lingerRead()
		c.p.linger.done()
	}
	c.conn.Close()
}

// uncount stops counting c as a client connection, once: when its stream has ended, also if it then
// lingers, since nutcracker closes such a connection at once (see lingerSlots). It comes before
// the end of the stream is sent, so that a client that saw it and connects again finds the place
// free.
func (c *client) uncount() {
	if c.uncounted.CompareAndSwap(false, true) {
		c.p.clientConns.Add(-1)
		c.p.conns.close()
	}
}

// lingerRead reads and drops what the client sends after its stream ended, until the client
// closes its side or fails, lingerBytes or lingerTimeout; the pool's Run closing the connection
// ends it too.
func (c *client) lingerRead() {
	_ = c.conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	_, _ = io.CopyN(io.Discard, c.conn, lingerBytes)
}

// closeConn closes the connection; a client the poller reads goes back to its goroutine, whose
// read fails.
func (c *client) closeConn() {
	c.conn.Close()
	if c.poller != nil {
		c.poller.release(c)
	}
}

func (c *client) readLoop() {
	p := c.p
	var br *bufio.Reader // made when the goroutine first reads itself
	batch := make([]*Request, 0, maxBatch)
	var ds dirtySet
	scratch := routeScratch{clientID: c.id, ds: &ds}
	idle := p.opts.clientIdleTimeout
	var deadlineSet time.Time
	readSelf := false // read at least one request before handing the client to the poller again
	budget := 0       // the requests the reader may take before it looks for space again
	for {
		if br == nil || br.Buffered() == 0 {
			if c.poller != nil && !readSelf {
				if deadlineSet != (time.Time{}) {
					_ = c.conn.SetReadDeadline(time.Time{}) // the poller's reads must not time out
					deadlineSet = time.Time{}
				}
				if c.poller.adopt(c) {
					why := <-c.resume
					switch why {
					case resumeStop:
						return
					case resumeSpace:
						c.waitForSpace()
						continue
					}
					c.full = waitForRoom(c.full)
					if why == resumeRoom {
						continue
					}
				}
				readSelf = true
			}
			budget = c.waitForSpace()
			if br == nil {
				br = bufio.NewReaderSize(clientSource{c}, ioBufSize)
			}
			// Refresh the idle deadline only when a tenth of it has passed: a deadline update per
			// read costs more than the rest of a small request.
			if idle > 0 {
				if now := time.Now(); now.Sub(deadlineSet) > idle/10 {
					deadlineSet = now
					_ = c.conn.SetReadDeadline(now.Add(idle))
				}
				if c.idleExpired {
					c.idleExpired = false
					_ = c.conn.SetReadDeadline(time.Unix(1, 0))
				}
			}
		}
		r := getRequest()
		err := p.proto.ReadRequest(br, r)
		r.c = c
		if err != nil {
			c.dispatch(c.readFailed(err, r, batch), &scratch)
			return
		}
		readSelf = false
		batch = append(batch, r)
		budget--
		if quit := c.quitRead(r); quit || budget <= 0 || len(batch) == cap(batch) || !moreBuffered(br) {
			c.dispatch(batch, &scratch) // r may be released from here on
			batch = batch[:0]
			if quit {
				return
			}
			if budget <= 0 {
				budget = c.waitForSpace()
			}
		}
	}
}

// quitRead reports whether r, a request just read, is a quit (memcache) or QUIT (redis), which
// ends the client's stream, and counts it as the client's end (client_eof), as nutcracker counts
// a quit. Both readers of a client, its goroutine (readLoop) and the poller, ask it, so that the
// count is kept in one place.
func (c *client) quitRead(r *Request) bool {
	if r.Quit {
		c.p.clientEOF.Add(1)
	}
	return r.Quit
}

// readFailed handles a failed ReadRequest into r: a *ClientError becomes r's reply, written before
// the connection closes, and joins batch; anything else releases r. It returns the last batch.
func (c *client) readFailed(err error, r *Request, batch []*Request) []*Request {
	p := c.p
	var ce *ClientError
	if errors.As(err, &ce) {
		r.reset()
		r.c = c
		r.Local, r.Quit = true, true
		r.Resp = append(r.Resp, ce.Reply...)
		p.clientErr.Add(1)
		return append(batch, r)
	}
	putRequest(r)
	if errors.Is(err, io.EOF) {
		p.clientEOF.Add(1)
	} else {
		p.clientErr.Add(1)
	}
	return batch
}

// clientSource is what a client's goroutine reads: the bytes the poller left, then the socket.
type clientSource struct{ c *client }

func (s clientSource) Read(b []byte) (int, error) {
	c := s.c
	if n, ok, err := c.pending.read(b); ok {
		return n, err
	}
	return c.conn.Read(b)
}

// leftover is what the poller read from a socket and leaves to the goroutine that reads it next:
// the start of a request or reply, then the error of the read after it. Linux reports a socket's
// error to one read only: the goroutine's own read would find the end of the stream instead.
type leftover struct {
	b   []byte
	err error
}

// read reads what is left into p, then the error; ok is false when nothing is left (the caller
// reads the socket).
func (l *leftover) read(p []byte) (n int, ok bool, err error) {
	if len(l.b) > 0 {
		n = copy(p, l.b)
		l.b = l.b[:copy(l.b, l.b[n:])]
		return n, true, nil
	}
	return 0, l.err != nil, l.err
}

// waitForSpace blocks while the client has too much unanswered or unwritten, and returns how
// many requests the reader may take then (see budgetLocked).
func (c *client) waitForSpace() (budget int) {
	for {
		c.mu.Lock()
		if budget = c.budgetLocked(); budget > 0 {
			c.mu.Unlock()
			return budget
		}
		c.waiting = true
		c.mu.Unlock()
		<-c.space
	}
}

// budgetLocked returns how many more requests the reader may take, one by one, before it looks
// again: none while the client has too much unanswered or unwritten (roomLocked), else as many as
// keep it within maxPending unanswered. Looking once per read instead would let one read of small
// pipelined requests put thousands in flight, each of whose replies can be large.
func (c *client) budgetLocked() int {
	if !c.roomLocked() {
		return 0
	}
	return maxPending - (len(c.queue) - c.head)
}

// roomLocked reports whether the reader may take more requests.
func (c *client) roomLocked() bool {
	return len(c.queue)-c.head < maxPending && c.ready+len(c.out)+c.writing < maxOutBuf
}

// wakeReaderLocked wakes the reader if it waits for space and there is some.
func (c *client) wakeReaderLocked() {
	if c.waiting && c.roomLocked() {
		c.waiting = false
		c.space <- struct{}{}
	}
}

// moreBuffered reports whether br holds at least the start of one more complete line, so
// dispatching can wait for the next request without delaying this batch behind a slow client.
func moreBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// dispatch routes batch, flushes the server connections it wrote to, and waits while one of them
// is full.
func (c *client) dispatch(batch []*Request, scratch *routeScratch) {
	c.route(batch, scratch)
	if len(scratch.touched) > 0 {
		// Let the other clients' readers that are ready run first: their requests join this
		// flush (they see it owed), so one write carries many clients' requests, as in
		// nutcracker's event loop. It yields with any GOMAXPROCS: yielding only at GOMAXPROCS=1
		// (to spare an idle P's wake-up) was measured, and was slower with two Ps.
		runtime.Gosched()
	}
	scratch.flush()
	// Read no more while a server connection this batch filled holds its limit: a server that
	// stops reading would otherwise let every client queue up to maxPending requests in it.
	scratch.full = waitForRoom(scratch.full)
}

// waitForRoom waits for room on each server connection of full and returns full emptied.
func waitForRoom(full []*serverConn) []*serverConn {
	for i, sc := range full {
		sc.waitForRoom()
		full[i] = nil
	}
	return full[:0]
}

// route queues batch for in-order replies and hands its requests to their server connections,
// which it adds to scratch.touched (to flush) and scratch.full (to wait for). It clears batch.
func (c *client) route(batch []*Request, scratch *routeScratch) {
	if len(batch) == 0 {
		return
	}
	p := c.p
	p.mu.RLock()
	st := p.st
	local := false
	for _, r := range batch {
		if r.Select {
			c.answerSelect(st.cfg, r)
		}
		c.checkAuth(st.cfg, r)
		local = local || r.Local
	}
	// Queue the batch before routing it: a reply can come back before route returns. The
	// requests to route are kept at the front of batch, as a local one may be released once queued.
	k := 0
	c.mu.Lock()
	for _, r := range batch {
		r.done = r.Local
		c.queue = append(c.queue, r)
		if !r.Local {
			batch[k] = r
			k++
		}
	}
	if local {
		c.drainLocked(scratch.ds.rc)
	}
	c.mu.Unlock()
	if local {
		scratch.ds.add(c)
	}
	scratch.now = time.Now()
	var frags int
	for _, r := range batch[:k] {
		frags += st.route(r, scratch) // r may be released from here on
	}
	scratch.enqueue()
	clear(batch)
	p.mu.RUnlock()
	if frags > 0 {
		p.fragments.Add(int64(frags))
	}
}

// answerSelect answers a client's selection of a database: a success for the pool's redis_db, the
// database of its server connections, an error for any other. (checkAuth, after it, answers it
// instead while the client must authenticate.)
func (c *client) answerSelect(cfg *PoolConfig, r *Request) {
	r.Local, r.MultiKey = true, false
	sel, ok := c.p.proto.(Selector)
	if !ok {
		r.Resp = c.p.proto.ErrorReply(r.Resp[:0], errors.New("unsupported command"))
		return
	}
	match := len(r.Keys) == 1 && string(r.Key(0)) == strconv.Itoa(cfg.RedisDB)
	r.Resp = sel.SelectReply(r.Resp[:0], cfg.RedisDB, match)
}

// checkAuth answers password handshakes and, in a pool with redis_auth, every request of a
// client that has not authenticated yet.
func (c *client) checkAuth(cfg *PoolConfig, r *Request) {
	auth, ok := c.p.proto.(Authenticator)
	if !ok || (cfg.RedisAuth == "" && !r.Auth) {
		return
	}
	switch {
	case r.Auth && cfg.RedisAuth == "":
		r.Resp = auth.AuthReply(r.Resp[:0], AuthNotSet)
	case r.Auth && len(r.Keys) == 1 && subtle.ConstantTimeCompare(r.Key(0), []byte(cfg.RedisAuth)) == 1:
		c.authed = true
		r.Resp = auth.AuthReply(r.Resp[:0], AuthOK)
	case r.Auth:
		c.authed = false
		r.Resp = auth.AuthReply(r.Resp[:0], AuthInvalid)
	case c.authed || r.Quit:
		return
	default:
		r.Resp = auth.AuthReply(r.Resp[:0], AuthRequired)
	}
	r.Local = true
	r.MultiKey = false
}

// drainLocked moves the replies of the complete requests at the head of the queue to out, in
// order, and releases the requests (into rc).
func (c *client) drainLocked(rc *reqCache) {
	p := c.p
	n := 0
	for c.head < len(c.queue) {
		r := c.queue[c.head]
		if !r.done {
			break
		}
		c.queue[c.head] = nil
		c.head++
		n++
		if !r.Local {
			switch {
			case len(r.frags) > 0:
				r.Resp = r.Resp[:0]
				p.proto.Merge(r, r.frags)
			case r.err != nil && !r.NoReply:
				// A failed noreply request is dropped uncounted, as nutcracker drops it.
				p.forwardError.Add(1)
				r.Resp = p.proto.ErrorReply(r.Resp[:0], r.err)
			}
		}
		c.ready -= r.readyBytes
		if !c.broken && !c.quit {
			// A noreply request gets no reply on any path (an error, a local answer): the
			// client reads none, and one would shift every later reply.
			switch {
			case r.NoReply:
			case len(c.out) == 0 && len(r.Resp) > maxPooledBuf:
				// A large reply first in line is written from its own buffer rather than
				// copied: out takes it over, and r the old out's array.
				c.out, r.Resp = r.Resp, c.out[:0]
				c.outLarge = true
			default:
				c.out = append(c.out, r.Resp...)
				c.outLarge = c.outLarge || len(r.Resp) > maxPooledBuf
			}
			c.quit = r.Quit
		}
		rc.put(r)
	}
	if c.head == len(c.queue) {
		c.queue, c.head = c.queue[:0], 0
	} else if c.head >= 256 && c.head*2 >= len(c.queue) {
		k := copy(c.queue, c.queue[c.head:])
		clear(c.queue[k:])
		c.queue, c.head = c.queue[:k], 0
	}
	if n > 0 {
		c.wakeReaderLocked()
	}
}

// writeLocked writes out without blocking; what the socket does not take goes to the writer
// goroutine.
func (c *client) writeLocked() {
	if c.stalled {
		return
	}
	if len(c.out) > 0 && !c.broken {
		n, err := c.tryWrite(c.out)
		switch {
		case err != nil:
			c.breakLocked()
		case n < len(c.out):
			k := copy(c.out, c.out[n:])
			c.out = c.out[:k]
			c.stalled = true
			c.kick <- struct{}{}
			return
		}
	}
	c.clearOutLocked()
	c.afterWriteLocked()
}

// clearOutLocked empties out once its replies are written, and drops its array if a reply larger
// than maxPooledBuf went into it, so that a client does not hold the size of its largest reply for
// the life of its connection. An array grown past maxPooledBuf by many smaller replies is kept: a
// client that pipelines that much per write would grow it again for every batch.
func (c *client) clearOutLocked() {
	if c.outLarge {
		c.out, c.outLarge = nil, false
		return
	}
	c.out = c.out[:0]
}

func (c *client) afterWriteLocked() {
	if c.quit && !c.broken {
		c.uncount()
		if c.closeWrite() {
			// The last reply is written: serve lingers before it closes.
			c.broken, c.lingering = true, true
			c.out = c.out[:0]
		} else {
			c.breakLocked()
		}
	}
	c.wakeReaderLocked()
	c.checkDrainedLocked()
}

// closeWrite shuts the connection's write side (a TCP or Unix socket), after the last reply; it
// reports whether it did.
func (c *client) closeWrite() bool {
	cw, ok := c.conn.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}

func (c *client) breakLocked() {
	c.broken = true
	c.out = c.out[:0]
	c.closeConn()
}

func (c *client) checkDrainedLocked() {
	if c.readDone && !c.drainedOK && c.head == len(c.queue) && !c.stalled && (len(c.out) == 0 || c.broken) {
		c.drainedOK = true
		close(c.drained)
	}
}

// tryWrite writes as much of b as the socket takes at once.
func (c *client) tryWrite(b []byte) (int, error) {
	if c.nb == nil {
		return 0, nil
	}
	return c.nb.Write(b)
}

// writeLoop writes out with blocking writes while the client is stalled. A write that makes no
// progress for stallTimeout closes the client if more than maxStalledOut of its replies wait by
// then; one that does not finish within the client write timeout closes it in any case.
func (c *client) writeLoop() {
	wt := c.p.opts.clientWriteTimeout
	var dl writeDeadline
	for range c.kick {
		c.mu.Lock()
		for c.stalled && len(c.out) > 0 && !c.broken {
			c.writeOutLocked(&dl, wt)
		}
		// The non-blocking writes that follow the stall check the write deadline too: clear it,
		// or they fail once it passes and the client is cut off.
		dl.clear(c.conn)
		c.stalled = false
		c.clearOutLocked()
		c.afterWriteLocked()
		c.mu.Unlock()
	}
}

// writeOutLocked takes the replies in out and writes them with blocking writes, unlocking mu
// during each; it returns with mu held once they are written or the client is broken. Replies
// that arrive meanwhile wait in a fresh out.
func (c *client) writeOutLocked(dl *writeDeadline, wt time.Duration) {
	whole, large := c.out, c.outLarge
	buf := whole
	c.out, c.outLarge, c.spare = c.spare[:0], false, nil
	c.writing = len(buf)
	for first := true; len(buf) > 0 && !c.broken; first = false {
		c.mu.Unlock()
		stallAt, wtAt := dl.arm(c.conn, wt, first)
		n, err := c.conn.Write(buf)
		buf = buf[n:]
		c.mu.Lock()
		c.writing = len(buf)
		if n > 0 {
			c.wakeReaderLocked()
		}
		if err != nil {
			c.writeFailedLocked(err, n, len(buf), stallAt, wtAt)
		}
	}
	c.writing = 0
	if !large {
		c.spare = whole[:0] // kept as clearOutLocked keeps out
	}
}

// writeFailedLocked decides, after a blocking write that wrote n bytes and left left of its buffer,
// whether the client is broken: on a failure other than the write deadline, once the client write
// timeout (wtAt, zero: none) has passed, or once the stall that began at stallAt has lasted
// stallTimeout with more than maxStalledOut waiting. Otherwise the write is retried.
func (c *client) writeFailedLocked(err error, n, left int, stallAt, wtAt time.Time) {
	now := time.Now()
	switch {
	case !errors.Is(err, os.ErrDeadlineExceeded):
		c.breakLocked()
	case !wtAt.IsZero() && !now.Before(wtAt):
		c.breakLocked() // the client write timeout passed
	case n == 0 && now.Sub(stallAt) >= stallTimeout*9/10 && left+len(c.out) > maxStalledOut:
		c.p.log.Warn("client output buffer limit reached with no write progress: closing the client",
			zap.Int("buffered", left+len(c.out)), zap.Duration("stalled", now.Sub(stallAt)),
			zap.Stringer("client", c.conn.RemoteAddr()))
		c.breakLocked()
	}
}

// writeDeadline keeps a stalled client's write deadline: the sooner of stallTimeout and the client
// write timeout (wt, 0: none), each renewed only once a tenth of it has passed, since a deadline
// update per write costs more than a small write; at least 90% of each is left when a write starts.
type writeDeadline struct {
	stallSet, wtSet, set time.Time
}

// arm sets conn's write deadline for a write starting now and returns when the stall period it
// covers began and when the write timeout ends (zero: no wt). The write timeout is renewed only for
// the first write of a buffer (newBuf): the rest of a buffer, after a write the stall deadline
// ended, has what is left of it.
func (d *writeDeadline) arm(conn net.Conn, wt time.Duration, newBuf bool) (stallAt, wtAt time.Time) {
	now := time.Now()
	if now.Sub(d.stallSet) > stallTimeout/10 {
		d.stallSet = now
	}
	at := d.stallSet.Add(stallTimeout)
	if wt > 0 {
		if newBuf && now.Sub(d.wtSet) > wt/10 {
			d.wtSet = now
		}
		wtAt = d.wtSet.Add(wt)
		if wtAt.Before(at) {
			at = wtAt
		}
	}
	if !at.Equal(d.set) {
		d.set = at
		_ = conn.SetWriteDeadline(at)
	}
	return d.stallSet, wtAt
}

func (d *writeDeadline) clear(conn net.Conn) {
	if !d.set.IsZero() {
		_ = conn.SetWriteDeadline(time.Time{})
		*d = writeDeadline{}
	}
}
