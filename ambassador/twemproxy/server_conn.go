package twemproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	ioBufSize   = 16 << 10
	inflightCap = 4096
)

// server is one backend of a pool state.
type server struct {
	cfg   ServerConfig
	idx   int
	conns []*serverConn

	failures  atomic.Int32
	nextRetry atomic.Int64 // unix nanoseconds until which the server is ejected; 0: live
	ejectedAt atomic.Int64 // unix seconds of the last ejection

	eof, errs, timedout atomic.Int64
}

// serverConn is one of a server's server_connections: requests from any client are queued on it,
// written in batches, and their replies read back in order.
type serverConn struct {
	srv *server
	st  *poolState

	mu      sync.Mutex
	queue   []*Request
	spare   []*Request
	closing bool
	wake    chan struct{} // capacity 1: a pending wake-up is enough

	connected                atomic.Bool
	requests, requestBytes   atomic.Int64
	responses, responseBytes atomic.Int64
	outQueue                 atomic.Int64
}

func newServerConn(srv *server, st *poolState) *serverConn {
	return &serverConn{srv: srv, st: st, wake: make(chan struct{}, 1)}
}

// enqueue hands r to the connection; it never blocks.
func (sc *serverConn) enqueue(r *Request) {
	sc.mu.Lock()
	if sc.closing {
		sc.mu.Unlock()
		r.fail(ErrClosed)
		return
	}
	sc.queue = append(sc.queue, r)
	first := len(sc.queue) == 1
	sc.mu.Unlock()
	if first {
		select {
		case sc.wake <- struct{}{}:
		default:
		}
	}
}

func (sc *serverConn) take() []*Request {
	sc.mu.Lock()
	b := sc.queue
	sc.queue = sc.spare[:0]
	sc.spare = nil
	sc.mu.Unlock()
	return b
}

func (sc *serverConn) giveBack(b []*Request) {
	clear(b)
	sc.mu.Lock()
	if sc.spare == nil {
		sc.spare = b[:0]
	}
	sc.mu.Unlock()
}

func (sc *serverConn) inQueue() (n int, bytes int64) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, r := range sc.queue {
		bytes += int64(len(r.Buf))
	}
	return len(sc.queue), bytes
}

// close stops accepting requests; run finishes the queued ones and returns.
func (sc *serverConn) close() {
	sc.mu.Lock()
	sc.closing = true
	sc.mu.Unlock()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

func (sc *serverConn) queueLen() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return len(sc.queue)
}

func (sc *serverConn) isClosing() bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.closing && len(sc.queue) == 0
}

func (sc *serverConn) failQueued(err error) {
	b := sc.take()
	for _, r := range b {
		r.fail(err)
	}
	sc.giveBack(b)
}

// run owns the connection: it dials on demand (or at once with preconnect), runs sessions, and
// returns when ctx ends or after close once the queue is empty.
func (sc *serverConn) run(ctx context.Context) {
	first := sc.st.cfg.Preconnect
	for {
		// Requests can be left queued without a pending wake-up when a session ends; they go out
		// on the next connection without waiting for another request.
		if !first && sc.queueLen() == 0 {
			select {
			case <-sc.wake:
			case <-ctx.Done():
				sc.closeAndFail()
				return
			}
		}
		first = false
		if sc.isClosing() {
			return
		}
		conn, err := sc.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				sc.closeAndFail()
				return
			}
			sc.failQueued(err)
			sc.srv.errs.Add(1)
			sc.st.failure(sc.srv)
			continue
		}
		sc.session(ctx, conn)
		if ctx.Err() != nil {
			sc.closeAndFail()
			return
		}
		if sc.isClosing() {
			return
		}
	}
}

func (sc *serverConn) closeAndFail() {
	sc.mu.Lock()
	sc.closing = true
	sc.mu.Unlock()
	sc.failQueued(ErrClosed)
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
		if err := handshake(conn, send, n); err != nil {
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
			return fmt.Errorf("rejected: %q", line)
		}
	}
	return nil
}

// session runs one connected server connection until it fails, ctx ends, or the conn is closed.
func (sc *serverConn) session(ctx context.Context, conn net.Conn) {
	sc.connected.Store(true)
	defer sc.connected.Store(false)
	inflight := make(chan *Request, inflightCap)
	dead := make(chan struct{})
	var (
		once    sync.Once
		sessErr error
	)
	kill := func(err error, count bool) {
		once.Do(func() {
			sessErr = err
			close(dead)
			conn.Close()
			if count {
				sc.st.failure(sc.srv)
			}
		})
	}
	readerDone := make(chan struct{})
	go sc.readLoop(conn, inflight, dead, &sessErr, kill, readerDone)
	defer func() {
		close(inflight)
		select {
		case <-readerDone:
		case <-ctx.Done():
			kill(ErrClosed, false)
			<-readerDone
		}
		conn.Close()
	}()

	bw := bufio.NewWriterSize(conn, ioBufSize)
	var noreply []*Request
	for {
		batch := sc.take()
		if len(batch) == 0 {
			sc.giveBack(batch)
			if sc.isClosing() {
				return
			}
			select {
			case <-sc.wake:
				continue
			case <-dead:
				return
			case <-ctx.Done():
				kill(ErrClosed, false)
				return
			}
		}
		now := time.Now()
		n := 0
		for _, r := range batch {
			if !r.NoReply {
				n++
			}
		}
		sc.outQueue.Add(int64(n)) // before the reader can take any off
		var werr error
		var nbytes int64
		pushed := 0
		for i, r := range batch {
			r.sent = now
			if _, werr = bw.Write(r.Buf); werr != nil {
				for _, q := range batch[i:] {
					q.fail(werr)
				}
				break
			}
			nbytes += int64(len(r.Buf))
			if r.NoReply {
				noreply = append(noreply, r)
				continue
			}
			select {
			case inflight <- r:
				pushed++
			case <-dead:
				for _, q := range batch[i:] {
					q.fail(sessErr)
				}
				werr = sessErr
			}
			if werr != nil {
				break
			}
		}
		if pushed != n {
			sc.outQueue.Add(int64(pushed - n)) // not sent after all
		}
		sc.requests.Add(int64(len(batch)))
		sc.requestBytes.Add(nbytes)
		if werr == nil {
			werr = bw.Flush()
		}
		for _, r := range noreply {
			if werr != nil {
				r.fail(werr)
			} else {
				r.complete()
			}
		}
		clear(noreply)
		noreply = noreply[:0]
		sc.giveBack(batch)
		if werr != nil {
			sc.srv.errs.Add(1)
			kill(werr, true)
			return
		}
	}
}

func (sc *serverConn) readLoop(conn net.Conn, inflight <-chan *Request, dead <-chan struct{}, sessErr *error, kill func(error, bool), done chan<- struct{}) {
	defer close(done)
	br := bufio.NewReaderSize(conn, ioBufSize)
	timeout := sc.st.cfg.Timeout
	proto := sc.st.proto
	isDead := false
	// Counters are published in batches (whenever the in-flight queue runs empty, or every 64
	// replies) to keep atomics off the per-reply path.
	var nresp, nbytes, ndone int64
	publish := func() {
		sc.responses.Add(nresp)
		sc.responseBytes.Add(nbytes)
		sc.outQueue.Add(-ndone)
		nresp, nbytes, ndone = 0, 0, 0
	}
	defer publish()
	var lastSent time.Time
	for r := range inflight {
		ndone++
		if isDead {
			r.fail(*sessErr)
			continue
		}
		// Requests written in one batch share their sent time, so one deadline covers the batch.
		if timeout > 0 && !r.sent.Equal(lastSent) {
			lastSent = r.sent
			_ = conn.SetReadDeadline(r.sent.Add(timeout))
		}
		n := len(r.Resp)
		err := proto.ReadResponse(br, r)
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				err = ErrTimeout
				sc.srv.timedout.Add(1)
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				err = errors.New("connection closed by server")
				sc.srv.eof.Add(1)
			default:
				sc.srv.errs.Add(1)
			}
			select {
			case <-dead: // killed by the writer or ctx: keep its error
			default:
				kill(err, true)
			}
			isDead = true
			r.Resp = r.Resp[:n]
			r.fail(*sessErr)
			continue
		}
		nresp++
		nbytes += int64(len(r.Resp) - n)
		sc.st.success(sc.srv)
		r.complete()
		if nresp >= 64 || len(inflight) == 0 {
			publish()
		}
	}
}
