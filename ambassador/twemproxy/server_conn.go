package twemproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

const (
	ioBufSize = 16 << 10
	// maxServerOut bounds a server connection's output while the server does not take it (it
	// stopped reading, or is slow): a client reader that finds this much queued after its batch,
	// counting the batch being written, waits for room before it reads more, so the output buffer
	// and the batch being written hold at most this plus one batch of each client's requests.
	maxServerOut = 4 << 20
)

// server is one backend of a pool state.
type server struct {
	cfg   ServerConfig
	idx   int
	conns []*serverConn

	*serverCore // shared with the servers of the same identity in the pool's other states (see carry)

	// movedFrom is the core of the server of the same name at another address or network in the
	// state that this server's state replaces (see carry): start takes its counters as this
	// server's base. nil once taken, or when there is none.
	movedFrom *serverCore
}

// serverCore is a server's ejection and counters. A reload shares it between the old state's server
// and the new state's server of the same name, network and address (see poolState.carry), so that
// what the old state's connections count and fail while they drain lands where the stats and the
// distribution look: the counters add up, and a failure there ejects the server from the pool's
// current distribution. The hot path reaches its atomics through one more pointer, and takes no lock.
type serverCore struct {
	failures  atomic.Int32
	nextRetry atomic.Int64 // unix nanoseconds until which the server is ejected; 0: live
	ejectedAt atomic.Int64 // unix microseconds of the last ejection (nutcracker's server_ejected_at)

	eof, errs, timedout atomic.Int64
	resp                serverResponseTimes

	warns logLimit // the warnings of its failures

	// The connections of the states that share it and have not retired (the current one and those
	// draining), whose counters and queues the stats add up, and the counters of the connections of
	// the states that retired. Under mu; a connection's own counters under its mu, taken after.
	mu    sync.Mutex
	conns []*serverConn
	gone  connTotals

	// base is what the server of the same name counted at another address before a reload moved
	// it (see carry), so that its series go on rather than back to 0; set as the state that holds
	// c is published (see poolState.start), read-only after.
	base serverTotals
}

// connTotals is the counters of connections that have retired.
type connTotals struct{ requests, requestBytes, responses, responseBytes int64 }

// serverTotals is a server's counters: those of its connections, its failures and its response
// times.
type serverTotals struct {
	connTotals
	eof, errs, timedout int64
	resp                [len(responseBounds) + 1]int64
	respSum             int64 // nanoseconds
}

// totals returns c's counters now, with its base.
func (c *serverCore) totals() serverTotals {
	var ss ServerStats
	c.stats(&ss)
	t := c.base
	t.requests, t.requestBytes = ss.Requests, ss.RequestBytes // stats added the base's
	t.responses, t.responseBytes = ss.Responses, ss.ResponseBytes
	t.eof += c.eof.Load()
	t.errs += c.errs.Load()
	t.timedout += c.timedout.Load()
	for i := range t.resp {
		t.resp[i] += c.resp.n[i].Load()
	}
	t.respSum += c.resp.sum.Load()
	return t
}

// retire moves the counters of conns, whose state has ended (nothing of theirs runs any more),
// into c's totals and stops counting them live.
func (c *serverCore) retire(conns []*serverConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sc := range conns {
		i := slices.Index(c.conns, sc)
		if i < 0 {
			continue
		}
		c.conns = slices.Delete(c.conns, i, i+1)
		sc.mu.Lock()
		c.gone.requests += sc.requests
		c.gone.requestBytes += sc.requestBytes
		sc.mu.Unlock()
		c.gone.responses += sc.responses.Load()
		c.gone.responseBytes += sc.responseBytes.Load()
	}
}

// histogram returns c's response times as Prometheus' histogram (see serverResponseTimes), with its
// base.
func (c *serverCore) histogram() (count uint64, sum float64, buckets map[float64]uint64) {
	count, sum, buckets = c.resp.histogram()
	var cum uint64
	for i, b := range responseBounds {
		cum += uint64(c.base.resp[i])
		buckets[b.Seconds()] += cum
	}
	cum += uint64(c.base.resp[len(responseBounds)])
	return count + cum, sum + time.Duration(c.base.respSum).Seconds(), buckets
}

// stats adds c's counters and queues, of every connection that shares it, to ss, with its base:
// all of its request and response counters, and the base of its failure counters (ss holds c's
// own).
func (c *serverCore) stats(ss *ServerStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ss.Requests += c.gone.requests + c.base.requests
	ss.RequestBytes += c.gone.requestBytes + c.base.requestBytes
	ss.Responses += c.gone.responses + c.base.responses
	ss.ResponseBytes += c.gone.responseBytes + c.base.responseBytes
	ss.ServerEOF += c.base.eof
	ss.ServerErr += c.base.errs
	ss.ServerTimedout += c.base.timedout
	for _, sc := range c.conns {
		if sc.connected.Load() {
			ss.ServerConnections++
		}
		ss.Responses += sc.responses.Load()
		ss.ResponseBytes += sc.responseBytes.Load()
		req, reqBytes, inq, inqBytes, outq := sc.queues()
		ss.Requests += req
		ss.RequestBytes += reqBytes
		ss.InQueue += inq
		ss.InQueueBytes += inqBytes
		ss.OutQueue += outq
	}
}

// warn logs a failure of the server with its details (the client gets nutcracker's short text:
// see ServerError), at most once a second.
func (s *server) warn(log *zap.Logger, msg string, err error) {
	if ok, held := s.warns.allow(); ok {
		log.Warn(msg, zap.String("server", s.cfg.Name), zap.String("addr", s.cfg.Addr), zap.Error(err),
			zap.Int64("suppressed", held))
	}
}

// serverConn is one of a server's server_connections. Client readers append their requests'
// bytes to its output buffer and flush it themselves (group commit: whoever finds the buffer
// unflushed writes everything queued so far, so there is no writer goroutine); the pool's poller
// (or, when the poller gives it back, the session's reader goroutine) reads the replies in order
// and completes the requests, writing the replies straight to their clients. The run goroutine
// only dials and watches sessions.
type serverConn struct {
	srv *server
	st  *poolState

	mu         sync.Mutex
	sess       *session   // the connected session; nil while not connected
	out        []byte     // bytes for sess not written yet
	spareOut   []byte     // out's other half, while a flush writes
	flushBytes int        // the bytes of the batch a flush is writing (out's other half)
	noreply    []*Request // noreply requests whose bytes are in out: complete once written
	spareNR    []*Request
	flushing   bool       // a goroutine is writing out; it loops until out is empty
	owed       bool       // a goroutine that appended to out will flush it
	inflight   []*Request // requests in out or written, awaiting replies, in order, not taken by the reader
	waiting    []*Request // requests queued while not connected
	waitBytes  int        // the bytes of the waiting requests
	closing    bool
	readerIdle bool          // the reader waits for a reply with no request taken: enqueue arms the deadline
	pollWatch  bool          // the poller reads sess's replies and its timer is not armed: enqueue arms it
	armed      time.Time     // the read deadline enqueue armed
	room       chan struct{} // closed when out shrinks below maxServerOut; nil: nobody waits

	wake chan struct{} // capacity 1: a pending wake-up is enough

	// Counters of the requests enqueued (appended, or waiting for the dial), under mu: enqueue
	// runs once per request on the client poller's goroutine, where three atomic additions cost as
	// much as the append.
	requests, requestBytes int64
	expected               int64 // requests appended that await a reply

	connected                atomic.Bool
	responses, responseBytes atomic.Int64
	settled                  atomic.Int64 // requests of expected answered or failed, added in batches
}

// session is one connection to the server.
type session struct {
	sc   *serverConn
	conn net.Conn
	nb   *rawIO // non-blocking writes; nil where raw socket I/O is unsupported
	rd   *rawIO // the reader's reads (nb's socket, but not concurrent with its writes); nil: conn
	dead bool   // under serverConn.mu
	// quiet: made while the server was ejected; its failure is not counted toward an ejection
	// while the server still is (see run)
	quiet bool
	err   error // why it died; set before dead is visible to the reader
	done  chan struct{}

	// The read side. Whoever owns it (the reader goroutine, or the pool's poller while the
	// goroutine waits on resume) uses rs; see serverConn.handOver.
	rs       replyState
	resume   chan resumeReason // capacity 1: the poller gives the read side back
	timer    *time.Timer       // while polled: fires when the oldest request in flight may be overdue
	wantBack atomic.Bool       // the goroutine asks the poller to give the read side back
	pollClient
}

// replyState is a session's reply reading: the requests taken from inflight (local[i:] still
// await their replies, in order), the counters not yet published, and the start of a reply the
// poller read, with its read's error (the goroutine reads them first).
type replyState struct {
	local         []*Request
	i             int
	nresp, nbytes int64
	pending       leftover
	// readAt is the time of the last read from the socket: a reply read from what it brought was
	// answered then. One clock reading per read, not per reply, for times, the replies' response
	// times not yet published.
	readAt time.Time
	times  responseTimes
}

// publish adds the counters of the replies read so far to sc's.
func (rs *replyState) publish(sc *serverConn) {
	if rs.nresp == 0 {
		return
	}
	sc.responses.Add(rs.nresp)
	sc.responseBytes.Add(rs.nbytes)
	sc.settled.Add(rs.nresp)
	sc.srv.resp.publish(&rs.times)
	rs.nresp, rs.nbytes = 0, 0
}

// takeLocked makes sc's requests in flight the next ones to read replies for; it reports false when
// there are none. local[i:] must be empty.
func (rs *replyState) takeLocked(sc *serverConn) bool {
	if len(sc.inflight) == 0 {
		return false
	}
	clear(rs.local)
	rs.local, sc.inflight = sc.inflight, rs.local[:0]
	rs.i = 0
	return true
}

// oldestLocked returns the oldest request awaiting its reply, or nil.
func (rs *replyState) oldestLocked(sc *serverConn) *Request {
	if rs.i < len(rs.local) {
		return rs.local[rs.i]
	}
	if len(sc.inflight) > 0 {
		return sc.inflight[0]
	}
	return nil
}

func newServerConn(srv *server, st *poolState) *serverConn {
	return &serverConn{srv: srv, st: st, wake: make(chan struct{}, 1)}
}

func (sc *serverConn) signal() {
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// enqueue appends rs, in order, for the server at time now. It reports whether the caller must
// flush the output buffer (owe: false when rs are waiting for a connection, or when another
// goroutine owes a flush that will carry their bytes) and whether the buffer is full, in which
// case the caller must waitForRoom before it reads more requests. It never blocks on the network.
// The requests may be released from here on.
func (sc *serverConn) enqueue(rs []*Request, now time.Time, ds *dirtySet) (owe, full bool) {
	sc.mu.Lock()
	if sc.closing {
		sc.mu.Unlock()
		finishEach(rs, ErrClosed, ds)
		return false, false
	}
	if sc.sess == nil {
		first := len(sc.waiting) == 0
		for _, r := range rs {
			sc.waiting = append(sc.waiting, r)
			sc.waitBytes += len(r.Buf)
			sc.requests++ // as nutcracker counts it: forwarded, whether or not the dial succeeds
			sc.requestBytes += int64(len(r.Buf))
		}
		full = sc.fullLocked()
		sc.mu.Unlock()
		if first {
			sc.signal()
		}
		return false, full
	}
	for _, r := range rs {
		sc.requests++
		sc.requestBytes += int64(len(r.Buf))
		sc.appendLocked(r, now)
	}
	owe = !sc.owed
	sc.owed = true
	full = sc.fullLocked()
	sc.mu.Unlock()
	return owe, full
}

// fullLocked reports whether client readers must wait: while connected, the output buffer and the
// batch being written reach maxServerOut; while not, the requests waiting for the connection do.
func (sc *serverConn) fullLocked() bool {
	if sc.sess == nil {
		return sc.waitBytes >= maxServerOut
	}
	return len(sc.out)+sc.flushBytes >= maxServerOut
}

// waitForRoom blocks while the output buffer (or, while not connected, the queue of waiting
// requests) is full.
func (sc *serverConn) waitForRoom() {
	sc.mu.Lock()
	for !sc.closing && sc.fullLocked() {
		if sc.room == nil {
			sc.room = make(chan struct{})
		}
		room := sc.room
		sc.mu.Unlock()
		<-room
		sc.mu.Lock()
	}
	sc.mu.Unlock()
}

// roomLocked wakes the goroutines waiting for room: out was written or dropped, the waiting
// requests were sent or failed, or the connection is closing.
func (sc *serverConn) roomLocked() {
	if sc.room != nil {
		close(sc.room)
		sc.room = nil
	}
}

// appendLocked appends r for the connected session; enqueue counted it.
func (sc *serverConn) appendLocked(r *Request, now time.Time) {
	r.sent = now
	sc.out = append(sc.out, r.Buf...)
	if r.NoReply {
		sc.noreply = append(sc.noreply, r)
		return
	}
	sc.expected++
	sc.inflight = append(sc.inflight, r)
	if sc.readerIdle {
		sc.readerIdle = false
		if t := sc.st.cfg.Timeout; t > 0 {
			sc.armed = now.Add(t)
			_ = sc.sess.conn.SetReadDeadline(sc.armed)
		}
	}
	if sc.pollWatch {
		sc.pollWatch = false
		if t := sc.st.cfg.Timeout; t > 0 && sc.sess.timer != nil {
			sc.sess.timer.Reset(t)
		}
	}
}

// flush writes the output buffer unless another goroutine is already doing it; requests whose
// replies are not expected are completed into ds. It never blocks on the server: when the socket
// does not take everything at once, the rest of the flushing moves to a goroutine of its own, so a
// server that stops reading holds up neither the client reader that flushed (and its flushes to
// other servers) nor run.
func (sc *serverConn) flush(ds *dirtySet) {
	sc.mu.Lock()
	if sc.flushing || len(sc.out) == 0 {
		sc.mu.Unlock()
		return
	}
	sc.flushing = true
	sc.flushLocked(ds, true)
}

// flushLocked is flush's loop, entered with mu held and flushing set; it unlocks mu. With
// nonBlocking, a write the socket does not take at once is finished by flushBlocked.
func (sc *serverConn) flushLocked(ds *dirtySet, nonBlocking bool) {
	for len(sc.out) > 0 && sc.sess != nil {
		sc.owed = false // bytes appended from here on need another flush
		s, buf, nr := sc.sess, sc.out, sc.noreply
		sc.out, sc.spareOut = sc.spareOut[:0], nil
		sc.noreply, sc.spareNR = sc.spareNR[:0], nil
		sc.flushBytes = len(buf)
		sc.mu.Unlock()
		var err error
		if nonBlocking && s.nb != nil {
			var n int
			n, err = s.nb.Write(buf)
			if err == nil && n < len(buf) {
				sc.st.wg.Add(1)
				go sc.flushBlocked(s, buf, n, nr)
				return
			}
		} else {
			_, err = s.conn.Write(buf)
		}
		sc.wrote(s, buf, nr, err, ds)
	}
	sc.flushing = false
	s := sc.finishedLocked()
	sc.mu.Unlock()
	if s != nil {
		sc.kill(s, ErrClosed, false, ds)
	}
}

// flushBlocked finishes a write the socket did not take at once (buf[n:]) with a blocking write,
// then goes on flushing what was appended meanwhile. It runs on its own goroutine, counted in the
// pool's WaitGroup; a killed session's closed connection ends its write.
func (sc *serverConn) flushBlocked(s *session, buf []byte, n int, nr []*Request) {
	defer sc.st.wg.Done()
	var ds dirtySet
	_, err := s.conn.Write(buf[n:])
	sc.wrote(s, buf, nr, err, &ds)
	sc.flushLocked(&ds, false)
	ds.flush()
}

// wrote completes a flushed batch: the no-reply requests finish, a failed write kills the session,
// and the buffers go back for reuse. It returns with mu held.
func (sc *serverConn) wrote(s *session, buf []byte, nr []*Request, err error, ds *dirtySet) {
	finishEach(nr, err, ds)
	if err != nil {
		sc.srv.errs.Add(1)
		sc.kill(s, err, true, ds)
	}
	sc.mu.Lock()
	sc.flushBytes = 0
	sc.roomLocked()
	if cap(buf) <= maxPooledBuf {
		sc.spareOut = buf[:0]
	}
	sc.spareNR = nr[:0]
}

// finishedLocked returns the session if the connection is closing and the session has nothing
// left to do.
func (sc *serverConn) finishedLocked() *session {
	if sc.closing && sc.sess != nil && sc.readerIdle && len(sc.inflight) == 0 && len(sc.out) == 0 && !sc.flushing {
		return sc.sess
	}
	return nil
}

// kill ends session s with err (once): its connection is closed and the requests it still holds,
// other than those the reader has taken (the reader fails those), fail with err.
func (sc *serverConn) kill(s *session, err error, count bool, ds *dirtySet) {
	sc.mu.Lock()
	if s.dead {
		sc.mu.Unlock()
		return
	}
	s.err, s.dead = err, true
	var failed, nr []*Request
	if sc.sess == s {
		sc.sess = nil
		failed, nr = sc.inflight, sc.noreply
		sc.inflight, sc.noreply = nil, nil
		sc.out = sc.out[:0]
		sc.readerIdle = false
		sc.pollWatch = false
		sc.owed = false
		sc.roomLocked()
	}
	sc.mu.Unlock()
	if cp := sc.st.poller; cp != nil {
		cp.forgetSession(s)
	}
	s.conn.Close()
	if cp := sc.st.poller; cp != nil {
		cp.releaseSession(s) // its goroutine reads, and sees the connection closed
	}
	if count && !(s.quiet && sc.srv.ejected()) {
		sc.st.failure(sc.srv)
	}
	sc.settled.Add(int64(len(failed)))
	err = serverError(err) // once for both
	finishEach(failed, err, ds)
	finishEach(nr, err, ds)
}

// queues returns the connection's request counters and queues for the stats.
func (sc *serverConn) queues() (requests, requestBytes, inQueue, inQueueBytes, outQueue int64) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.requests, sc.requestBytes, int64(len(sc.waiting)), int64(sc.waitBytes + len(sc.out) + sc.flushBytes),
		sc.expected - sc.settled.Load()
}

// close stops accepting requests; run finishes the queued ones and returns.
func (sc *serverConn) close() {
	sc.mu.Lock()
	sc.closing = true
	sc.roomLocked()
	s := sc.finishedLocked()
	live := sc.sess
	sc.mu.Unlock()
	if cp := sc.st.poller; cp != nil && live != nil {
		// The session's goroutine finishes it, once its requests are answered: take its read
		// side back from the poller for good.
		cp.releaseSession(live)
	}
	if s != nil {
		var ds dirtySet
		sc.kill(s, ErrClosed, false, &ds)
		ds.flush()
	}
	sc.signal()
}

func (sc *serverConn) failWaiting(err error) {
	sc.mu.Lock()
	w := sc.waiting
	sc.waiting, sc.waitBytes = nil, 0
	sc.roomLocked()
	sc.mu.Unlock()
	var ds dirtySet
	finishEach(w, err, &ds)
	ds.flush()
}

// run owns the connection: it dials on demand (or at once with preconnect), runs sessions, and
// returns when ctx ends or after close once the queue is empty.
func (sc *serverConn) run(ctx context.Context) {
	first := sc.st.cfg.Preconnect
	for {
		sc.mu.Lock()
		closing, nwait := sc.closing, len(sc.waiting)
		sc.mu.Unlock()
		if closing && nwait == 0 {
			return
		}
		// Requests can be left waiting without a pending wake-up when a session ends; they go out
		// on the next connection without waiting for another request.
		if !first && nwait == 0 {
			select {
			case <-sc.wake:
				continue
			case <-ctx.Done():
				sc.closeAndFail()
				return
			}
		}
		first = false
		// A connection made while the server is ejected carries requests placed on it just before
		// its ejection (by clients that raced with it): nutcracker, whose one event loop failed them
		// with the connection that ejected it, makes none, so its failure is not counted again.
		quiet := sc.srv.ejected()
		sc.st.conns.open() // as nutcracker counts a server connection: before it connects
		conn, err := sc.dial(ctx)
		if err != nil {
			sc.st.conns.close()
			if ctx.Err() != nil {
				sc.closeAndFail()
				return
			}
			sc.srv.warn(sc.st.log, "server connect failed", err)
			sc.failWaiting(err)
			sc.srv.errs.Add(1)
			if !quiet {
				sc.st.failure(sc.srv)
			}
			continue
		}
		s := &session{sc: sc, conn: conn, quiet: quiet, done: make(chan struct{}), resume: make(chan resumeReason, 1)}
		s.nb, s.rd = rawIOFor(conn), rawIOFor(conn)
		if sc.st.poller != nil {
			s.setPollReader() // before any goroutine sees s: kill reads its descriptor
		}
		now := time.Now()
		sc.mu.Lock()
		sc.sess = s
		for i, r := range sc.waiting {
			sc.appendLocked(r, now)
			sc.waiting[i] = nil
		}
		sc.waiting, sc.waitBytes = sc.waiting[:0], 0
		sc.roomLocked()
		sc.mu.Unlock()
		sc.connected.Store(true)
		go sc.readLoop(s)
		var ds dirtySet
		sc.flush(&ds)
		ds.flush()
		select {
		case <-s.done:
		case <-ctx.Done():
			sc.kill(s, ErrClosed, false, &ds)
			ds.flush()
			<-s.done
		}
		sc.connected.Store(false)
		sc.st.conns.close()
		if ctx.Err() != nil {
			sc.closeAndFail()
			return
		}
	}
}

func (sc *serverConn) closeAndFail() {
	sc.mu.Lock()
	sc.closing = true
	sc.mu.Unlock()
	sc.failWaiting(ErrClosed) // wakes the readers waiting for room
}

func (sc *serverConn) dial(ctx context.Context) (net.Conn, error) {
	cfg := sc.st.cfg
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	if cfg.TCPKeepalive {
		d.KeepAlive = 0
	}
	conn, err := d.DialContext(ctx, sc.srv.cfg.Network, sc.srv.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", sc.srv.cfg.Addr, errConnRefusedText(err))
	}
	if send, n := sc.st.proto.Handshake(cfg); len(send) > 0 {
		_ = conn.SetDeadline(time.Now().Add(timeout))
		// The end of ctx ends the handshake too: a server that does not answer it must not hold
		// up Run for the timeout.
		stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
		err := handshake(conn, send, n)
		if !stop() || err != nil && ctx.Err() != nil {
			err = ctx.Err() // the handshake ended because ctx did
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("handshake %s: %w", sc.srv.cfg.Addr, err)
		}
		_ = conn.SetDeadline(time.Time{})
	}
	return conn, nil
}

// errConnRefusedText keeps the operating system's message ("connection refused") for replies.
func errConnRefusedText(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

func handshake(conn net.Conn, send []byte, n int) error {
	if _, err := conn.Write(send); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	for range n {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 0 || line[0] != '+' {
			refusal := strings.TrimSpace(strings.TrimPrefix(string(line), "-"))
			return &ServerError{Text: "handshake rejected: " + refusal, Err: fmt.Errorf("rejected: %q", line)}
		}
	}
	return nil
}

// readLoop reads session s's replies in order until it dies. It takes the in-flight requests in
// batches, completes each with its reply, and writes the clients' replies before each read from
// the server: once per read when replies arrive whole. With a poller, it hands the reading to the
// poller's loop whenever it has nothing buffered (see handOver), and reads itself only what the
// poller gives back.
func (sc *serverConn) readLoop(s *session) {
	defer close(s.done)
	timeout := sc.st.cfg.Timeout
	proto := sc.st.proto
	cp := sc.st.poller
	if cp != nil {
		// kill takes s out of the poller's map, but a first registration (which only this
		// goroutine makes) can add it after that: take it out once s is done for sure.
		defer cp.forgetSession(s)
	}
	var ds dirtySet
	rs := &s.rs
	// Every read that can wait for the server first writes the replies completed so far, so a
	// slowly arriving reply does not hold up the replies before it.
	var src io.Reader = s.conn
	if s.rd != nil {
		src = s.rd // raw reads: no system call state, as for the client reads (see rawIO)
	}
	fr := &flushingReader{r: pendingReader{rs: rs, r: src}, ds: &ds, conn: s.conn}
	br := bufio.NewReaderSize(fr, ioBufSize)
	polling := cp != nil && s.rd != nil
	if polling && timeout > 0 {
		s.timer = time.NewTimer(time.Hour)
		s.timer.Stop()
		defer s.timer.Stop()
	}
	readSelf := false // read at least one reply before handing the session to the poller again
	// fail ends the session after err, counted as a server failure. Like nutcracker, which counts
	// every close of a server connection, a connection the server closes while nothing is in
	// flight on it counts too: a server that died while its connections were idle is ejected by
	// their closes, before a client request fails on it.
	fail := func(err error) {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			err = ErrTimeout
			sc.srv.timedout.Add(1)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			err = errors.New("connection closed by server")
			sc.srv.eof.Add(1)
		case errors.Is(err, ErrBadResponse):
			sc.srv.errs.Add(1)
		default:
			sc.mu.Lock()
			dead := s.dead
			sc.mu.Unlock()
			if !dead {
				sc.srv.errs.Add(1)
			}
		}
		sc.kill(s, err, true, &ds)
		sc.mu.Lock()
		err = s.err // the first cause, if something else killed the session
		sc.mu.Unlock()
		sc.srv.warn(sc.st.log, "server connection failed", err)
		rs.publish(sc)
		sc.settled.Add(int64(len(rs.local) - rs.i))
		finishEach(rs.local[rs.i:], err, &ds)
		rs.i = len(rs.local)
		ds.flush()
	}
	for {
		if polling && !readSelf && br.Buffered() == 0 && len(rs.pending.b) == 0 {
			rs.publish(sc)
			ds.flush()
			if fr.armed != (time.Time{}) {
				_ = s.conn.SetReadDeadline(time.Time{}) // the poller's reads must not time out
				fr.armed = time.Time{}
			}
			sc.handOver(s, cp)
			readSelf = true
		}
		if rs.i == len(rs.local) {
			rs.publish(sc)
			ds.flush()
			sc.mu.Lock()
			waited := len(sc.inflight) == 0 // then the deadline is the one enqueue or the wait arms
			for len(sc.inflight) == 0 {
				if s.dead {
					sc.mu.Unlock()
					return
				}
				sc.readerIdle = true
				if fs := sc.finishedLocked(); fs != nil {
					sc.mu.Unlock()
					sc.kill(fs, ErrClosed, false, &ds)
					ds.flush()
					return
				}
				sc.mu.Unlock()
				fr.due = time.Time{} // a deadline that fires here is handled below
				_, err := br.Peek(1)
				sc.mu.Lock()
				if err == nil {
					if len(sc.inflight) == 0 {
						sc.mu.Unlock()
						fail(fmt.Errorf("%w: unsolicited data", ErrBadResponse))
						return
					}
					break
				}
				var ne net.Error
				if s.dead || !errors.As(err, &ne) || !ne.Timeout() {
					sc.mu.Unlock()
					fail(err)
					return
				}
				// A deadline fired while waiting: it is real only if the oldest request is overdue.
				if len(sc.inflight) > 0 {
					d := sc.inflight[0].sent.Add(timeout)
					if !time.Now().Before(d) {
						sc.mu.Unlock()
						fail(err)
						return
					}
					sc.armed = d
				} else {
					sc.armed = time.Time{}
				}
				_ = s.conn.SetReadDeadline(sc.armed)
			}
			sc.readerIdle = false
			if waited {
				fr.armed = sc.armed
			}
			rs.takeLocked(sc)
			sc.mu.Unlock()
		}
		r := rs.local[rs.i]
		if timeout > 0 {
			// An armed deadline no later than r's is kept: if it fires before r's reply is in,
			// fr moves it to r's. Moving it for every reply (each request of a round has its own
			// time) cost a runtime timer update per reply.
			fr.due = r.sent.Add(timeout)
			if fr.armed.IsZero() || fr.armed.After(fr.due) {
				fr.armed = fr.due
				_ = s.conn.SetReadDeadline(fr.due)
			}
		}
		n := len(r.Resp)
		if err := proto.ReadResponse(br, r); err != nil {
			r.Resp = r.Resp[:n]
			fail(err)
			return
		}
		readSelf = false
		rs.completed(sc, r, n, &ds)
	}
}

// completed counts the reply just read into r (whose reply began at Resp[n:]) and completes r,
// the oldest request awaiting its reply. r may be released from here on.
func (rs *replyState) completed(sc *serverConn, r *Request, n int, ds *dirtySet) {
	rs.answered(sc, r, n)
	r.finish(nil, ds)
}

// answered counts the reply just read into r (whose reply began at Resp[n:]) and takes r, the
// oldest request awaiting its reply, off local; the caller completes it.
func (rs *replyState) answered(sc *serverConn, r *Request, n int) {
	rs.times.add(rs.readAt.Sub(r.sent))
	rs.nresp++
	rs.nbytes += int64(len(r.Resp) - n)
	rs.local[rs.i] = nil
	rs.i++
	sc.st.success(sc.srv)
}

// handOver gives session s's read side to the poller and waits until the poller gives it back, or
// until the oldest request in flight is overdue, which the goroutine's read then reports. It
// returns with the read side the goroutine's. The session's timer fires at the earliest moment a
// request in flight can be overdue (enqueue arms it when none was); it is moved only when it fires.
func (sc *serverConn) handOver(s *session, cp *clientPoller) {
	timeout := sc.st.cfg.Timeout
	var fired <-chan time.Time
	if s.timer != nil {
		fired = s.timer.C
	}
	for {
		// The timer is armed for the oldest request in flight, or by enqueue for the next one.
		sc.mu.Lock()
		sc.pollWatch = false
		if s.timer != nil {
			if r := s.rs.oldestLocked(sc); r != nil {
				s.timer.Reset(time.Until(r.sent.Add(timeout)))
			} else {
				s.timer.Stop()
				sc.pollWatch = true
			}
		}
		sc.mu.Unlock()
		if !cp.adoptSession(s) {
			sc.stopWatch()
			return
		}
		var why resumeReason
		select {
		case why = <-s.resume:
		case <-fired:
			s.wantBack.Store(true)
			why = resumeCheck
			if !cp.takeBack(s) {
				why = <-s.resume // the poller reads it now; it gives it back after
			}
		}
		s.wantBack.Store(false)
		sc.stopWatch()
		if why != resumeCheck {
			return
		}
		// The timer fired: the goroutine reads if the oldest request is overdue (its read
		// deadline is then past, so what is in the socket is read here first), or if the session
		// was closed; else back to the poller.
		sc.mu.Lock()
		r := s.rs.oldestLocked(sc)
		overdue := r != nil && !time.Now().Before(r.sent.Add(timeout))
		sc.mu.Unlock()
		if overdue {
			// The poller may have lagged behind a reply already in: the goroutine's read, whose
			// deadline has passed, would fail without reading it.
			s.readWaiting()
			return
		}
		if s.kicked() {
			return
		}
	}
}

// stopWatch stops enqueue from arming the session's timer: its goroutine reads.
func (sc *serverConn) stopWatch() {
	sc.mu.Lock()
	sc.pollWatch = false
	sc.mu.Unlock()
}

// pendingReader reads what the poller left of a partial reply (and its read's error), then r.
type pendingReader struct {
	rs *replyState
	r  io.Reader
}

func (p pendingReader) Read(b []byte) (int, error) {
	if n, ok, err := p.rs.pending.read(b); ok {
		return n, err
	}
	n, err := p.r.Read(b)
	if n > 0 {
		p.rs.readAt = time.Now()
	}
	return n, err
}

// flushingReader reads from r after writing the replies collected in ds. While a reply is read
// (due set), a read deadline (armed) that fires before due is moved to due and the read goes on.
type flushingReader struct {
	r     io.Reader
	ds    *dirtySet
	conn  net.Conn
	due   time.Time // the reply being read is overdue from then; zero: let every timeout through
	armed time.Time // the read deadline set on conn
}

func (f *flushingReader) Read(b []byte) (int, error) {
	if len(f.ds.clients) > 0 {
		f.ds.flush()
	}
	for {
		n, err := f.r.Read(b)
		var ne net.Error
		if err == nil || f.due.IsZero() || !errors.As(err, &ne) || !ne.Timeout() || !time.Now().Before(f.due) {
			return n, err
		}
		f.armed = f.due
		_ = f.conn.SetReadDeadline(f.due)
	}
}
