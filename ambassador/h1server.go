package ambassador

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
)

// The proxy serves HTTP/1.x itself rather than through net/http's Server: per request that saves a
// background-read goroutine, several deadline updates and the response machinery, which is most of
// the gap to HAProxy. Requests of the common shape are parsed in place (parseRequest), the rest by
// http.ReadRequest (with a header size limit), and h2c connections (prior knowledge) go to a net/http Server with unencrypted HTTP/2 on. Both end in
// ServeHTTP.

// h2Preface is what an HTTP/2 client with prior knowledge sends first.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// limitedConnReader reads from a connection at most remain bytes (the header size limit while
// headers are read; unlimited otherwise).
type limitedConnReader struct {
	c      io.Reader
	remain int64
	rec    *[]byte // if set, what is read is appended to it
}

var errHeaderTooLarge = errors.New("request header too large")

func (l *limitedConnReader) Read(p []byte) (int, error) {
	if l.remain <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.remain {
		p = p[:l.remain]
	}
	n, err := l.c.Read(p)
	l.remain -= int64(n)
	if l.rec != nil {
		*l.rec = append(*l.rec, p[:n]...)
	}
	return n, err
}

// h1Conn is one client connection's state; it is also the http.ResponseWriter for its requests.
type h1Conn struct {
	p        *HTTPProxy
	c        net.Conn
	lr       limitedConnReader
	br       *bufio.Reader
	bw       *bufio.Writer
	remote   string
	wdl      time.Time // current write deadline
	hijacked bool

	// per response
	hdr         http.Header
	wroteHdr    bool
	status      int
	chunked     bool
	noBody      bool
	closeAfter  bool
	keepAlive10 bool  // the request asked for keep-alive on HTTP/1.0 (see keepAlive10)
	clen        int64 // declared Content-Length, -1 if none
	written     int64
	req         *http.Request
	trailers    []string // names announced in Trailer, sent after a chunked body

	rs   reqState // the fast request parser's reused request
	head []byte   // the bytes of a head http.ReadRequest reads (from its start), for framedTwice
}

var h1Pool = sync.Pool{New: func() any {
	return &h1Conn{br: bufio.NewReaderSize(nil, 8<<10), bw: bufio.NewWriterSize(nil, 8<<10), hdr: make(http.Header, 16)}
}}

// connState is one client connection's shutdown state.
type connState struct{ active atomic.Bool }

// connSet tracks client connections so shutdown can close the idle ones at once and the rest
// after the grace period.
type connSet struct {
	mu        sync.Mutex
	m         map[net.Conn]*connState
	closing   atomic.Bool
	closedAll bool // guarded by mu
}

// add tracks c; nil means the proxy is shutting down.
func (s *connSet) add(c net.Conn) *connState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil
	}
	if s.m == nil {
		s.m = map[net.Conn]*connState{}
	}
	st := &connState{}
	s.m[c] = st
	return st
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// adopt tracks c, handed over by an event loop, even while the set is closing (its buffered
// request is served); nil means closeAll has run.
func (s *connSet) adopt(c net.Conn) *connState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closedAll {
		return nil
	}
	if s.m == nil {
		s.m = map[net.Conn]*connState{}
	}
	st := &connState{}
	st.active.Store(true)
	s.m[c] = st
	return st
}

// closeIdle marks the set closing and wakes every connection waiting for its next request.
func (s *connSet) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing.Store(true)
	for c, st := range s.m {
		if !st.active.Load() {
			c.SetReadDeadline(pastTime)
		}
	}
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closedAll = true
	for c := range s.m {
		c.Close()
	}
}

// serveH1 serves one client connection until it closes, fails, idles out or the proxy shuts down.
// pre holds bytes read from c already (at most the reader's 8 KiB), served first; first says that
// no request was read from c yet; resume, if not nil, serves the first request instead of
// ServeHTTP (it finishes one that the event loop started).
func (p *HTTPProxy) serveH1(ctx context.Context, c net.Conn, st *connState, pre []byte, first bool, resume http.HandlerFunc) {
	hc := h1Pool.Get().(*h1Conn)
	hc.p, hc.c, hc.remote, hc.hijacked, hc.wdl = p, c, c.RemoteAddr().String(), false, time.Time{}
	hc.lr = limitedConnReader{c: c, remain: 1 << 62}
	if len(pre) > 0 {
		hc.lr.c = io.MultiReader(bytes.NewReader(pre), c)
	}
	hc.br.Reset(&hc.lr)
	hc.bw.Reset(c)
	hc.rs.reset(ctx)
	defer func() {
		if !hc.hijacked {
			c.Close()
		}
		hc.p, hc.c, hc.req = nil, nil, nil
		hc.br.Reset(nil)
		hc.bw.Reset(nil)
		hc.rs.release()
		h1Pool.Put(hc)
	}()
	cfg := &p.cfg
	for ; ; first = false {
		// Wait for the next request (keep-alive idle time), then read its header in time.
		if len(pre) > 0 {
			pre = nil
			hc.br.Peek(1) // the bytes read before are served even when the proxy is closing
		} else if hc.br.Buffered() == 0 {
			yieldBeforeRead(hc.br)
			st.active.Store(false)
			idle := cfg.idleTimeout
			if first {
				idle = cfg.readHeader
			}
			if idle > 0 {
				c.SetReadDeadline(time.Now().Add(idle))
			}
			if p.conns.closing.Load() {
				return
			}
			if _, err := hc.br.Peek(1); err != nil {
				return
			}
		}
		st.active.Store(true)
		buf, _ := hc.br.Peek(hc.br.Buffered())
		if n := min(len(buf), len(h2Preface)); first && string(buf[:n]) == h2Preface[:n] {
			// Wait for the rest of what may be an HTTP/2 preface (only then: a short HTTP/1
			// request must not wait for bytes that will never come).
			if b, err := hc.br.Peek(len(h2Preface)); err == nil && string(b) == h2Preface {
				hc.hijacked = p.serveH2C(c, hc.br)
				return
			}
			buf, _ = hc.br.Peek(hc.br.Buffered())
		}
		// A head already buffered whole needs no more reads; otherwise net/http reads the rest
		// within the header timeout.
		req, n := hc.rs.parseRequest(buf)
		if req != nil {
			hc.br.Discard(n)
		} else {
			if cfg.readHeader > 0 {
				c.SetReadDeadline(time.Now().Add(cfg.readHeader))
			}
			// Bytes already buffered count against the limit (net/http's slack of 4096 included).
			hc.lr.remain = max(int64(cfg.maxHeaderBytes)+4096-int64(hc.br.Buffered()), 0)
			// The head's bytes are kept (those buffered, then those read) for framedTwice:
			// http.ReadRequest drops a Content-Length that Transfer-Encoding overrides.
			b, _ := hc.br.Peek(hc.br.Buffered())
			hc.head = append(hc.head[:0], b...)
			hc.lr.rec = &hc.head
			var err error
			req, err = http.ReadRequest(hc.br)
			hc.lr.remain, hc.lr.rec = 1<<62, nil
			if err == nil {
				err = checkHead(req)
			}
			if err == nil && framedTwice(hc.head) {
				req.Close = true
			}
			if cap(hc.head) > 64<<10 {
				hc.head = nil // a rare large head is not kept with the pooled connection state
			}
			if err != nil {
				hc.badRequest(err)
				return
			}
		}
		h := http.HandlerFunc(p.ServeHTTP)
		if resume != nil {
			h, resume = resume, nil
		}
		if !hc.serveOne(ctx, req, h) {
			return
		}
	}
}

var (
	errHeaderName = errors.New("invalid header field name")
	errHost       = errors.New("malformed Host header")
)

// checkHead rejects what http.ReadRequest lets through and net/http's Server does not: a field
// name that is not a token (textproto keeps "Name : value" with the space in the name; RFC 9112,
// 5.1: a server must answer it 400, as a proxy that forwards it lets the endpoint frame the
// body otherwise) and a Host that is no host.
func checkHead(req *http.Request) error {
	for k := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return errHeaderName
		}
	}
	if !httpguts.ValidHostHeader(req.Host) {
		return errHost
	}
	return nil
}

// framedTwice reports whether the request head at the start of b (lines up to an empty one) has
// a Transfer-Encoding field and a Content-Length field, or a Transfer-Encoding in HTTP/1.0. RFC
// 9112, 6.1: the body is then read as Transfer-Encoding frames it (http.ReadRequest does), and
// the connection must close after the answer, for what follows the body may have been framed
// otherwise by the client: a smuggled request.
func framedTwice(b []byte) bool {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return false
	}
	http10 := bytes.HasSuffix(bytes.TrimRight(b[:i], "\r"), []byte("HTTP/1.0"))
	var te, cl bool
	for b = b[i+1:]; len(b) > 0; {
		line := b
		if i = bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // the end of the head
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		te = te || eqFold(string(name), "Transfer-Encoding")
		cl = cl || eqFold(string(name), "Content-Length")
	}
	return te && (cl || http10)
}

// badRequest answers a request that could not be parsed (when there is anything to answer).
func (hc *h1Conn) badRequest(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.As(err, &ne) && ne.Timeout():
		return
	case errors.Is(err, errHeaderTooLarge):
		hc.rawError(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
	default:
		hc.rawError(http.StatusBadRequest, err.Error())
	}
}

func (hc *h1Conn) rawError(status int, reason string) {
	hc.setWriteDeadline()
	hc.bw.Write(appendError(hc.bw.AvailableBuffer(), status, reason, connClose, false))
	hc.bw.Flush()
}

// connHeader is the Connection header an answer carries.
type connHeader uint8

const (
	connNone      connHeader = iota // none: an HTTP/1.1 connection that stays open
	connClose                       // Connection: close
	connKeepAlive                   // Connection: keep-alive: an HTTP/1.0 connection that stays open
)

// connHeaderFor returns the Connection header of an answer after which the connection closes
// (closeAfter) or stays open, to a request that asked for keep-alive on HTTP/1.0 (keepAlive10) or
// not.
func connHeaderFor(closeAfter, keepAlive10 bool) connHeader {
	switch {
	case closeAfter:
		return connClose
	case keepAlive10:
		return connKeepAlive
	}
	return connNone
}

// line returns the header line of h ("" for connNone).
func (h connHeader) line() string {
	switch h {
	case connClose:
		return "Connection: close\r\n"
	case connKeepAlive:
		return "Connection: keep-alive\r\n"
	}
	return ""
}

// appendError appends a whole error answer (see errorBody) to dst with the Connection header conn;
// head leaves out the body (an answer to HEAD).
func appendError(dst []byte, status int, reason string, conn connHeader, head bool) []byte {
	body := errorBody(status, reason)
	dst = append(dst, statusLine(status)...)
	dst = append(dst, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	dst = append(dst, conn.line()...)
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	if !head {
		dst = append(dst, body...)
	}
	return dst
}

// setWriteDeadline keeps a write deadline between writeTimeout/2 and writeTimeout ahead, touching
// the socket only when it is more than half used.
func (hc *h1Conn) setWriteDeadline() {
	wt := hc.p.cfg.writeTimeout
	if wt <= 0 {
		return
	}
	now := time.Now()
	if hc.wdl.Sub(now) < wt/2 {
		hc.wdl = now.Add(wt)
		hc.c.SetWriteDeadline(hc.wdl)
	}
}

// serveOne proxies one parsed request; false means the connection must close.
func (hc *h1Conn) serveOne(ctx context.Context, req *http.Request, h http.HandlerFunc) (keep bool) {
	cfg := &hc.p.cfg
	if req.ProtoMajor != 1 {
		hc.rawError(http.StatusHTTPVersionNotSupported, "unsupported protocol version")
		return false
	}
	if req.ProtoAtLeast(1, 1) && len(req.Header["Host"]) == 0 && req.Host == "" {
		hc.rawError(http.StatusBadRequest, "missing required Host header")
		return false
	}
	if len(req.Header["Host"]) > 1 {
		hc.rawError(http.StatusBadRequest, "too many Host headers")
		return false
	}
	req.RemoteAddr = hc.remote
	if req != &hc.rs.req { // the fast parser's request already carries ctx
		req = req.WithContext(ctx)
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && cfg.readTimeout > 0 {
		hc.c.SetReadDeadline(time.Now().Add(cfg.readTimeout))
	}
	// RFC 9110, 10.1.1: a server ignores 100-continue in an HTTP/1.0 request.
	if hasBody && req.ProtoAtLeast(1, 1) && strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		hc.setWriteDeadline()
		hc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		hc.bw.Flush()
	}
	delete(req.Header, "Expect")

	clear(hc.hdr)
	hc.req, hc.wroteHdr, hc.status, hc.chunked, hc.noBody, hc.clen, hc.written = req, false, 0, false, false, -1, 0
	// req.Close says whether the client asked to close, for either parser (an HTTP/1.0 request
	// without a keep-alive token does).
	hc.keepAlive10 = keepAlive10(req)
	hc.closeAfter = req.Close || (req.ProtoMinor == 0 && !hc.keepAlive10)
	hc.setWriteDeadline()

	if !hc.serveHTTP(req, h) {
		return false
	}
	if hc.hijacked {
		return false
	}
	if !hc.wroteHdr {
		hc.WriteHeader(http.StatusOK)
	}
	if hc.chunked {
		hc.bw.WriteString("0\r\n")
		for _, k := range hc.trailers {
			for _, v := range hc.hdr[k] {
				hc.bw.WriteString(k)
				hc.bw.WriteString(": ")
				hc.bw.WriteString(v)
				hc.bw.WriteString("\r\n")
			}
		}
		hc.bw.WriteString("\r\n")
	}
	if err := hc.bw.Flush(); err != nil {
		return false
	}
	if hc.clen >= 0 && hc.written != hc.clen && !hc.noBody {
		return false
	}
	if hasBody {
		// Drain what the handler left of the body, within reason, to reuse the connection.
		if n, _ := io.CopyN(io.Discard, req.Body, 256<<10); n == 256<<10 {
			return false
		}
		if err := req.Body.Close(); err != nil {
			return false
		}
	}
	return !hc.closeAfter
}

// serveHTTP runs h (the proxy's handler), turning a panic (http.ErrAbortHandler for a response cut
// short, or a bug) into a closed connection.
func (hc *h1Conn) serveHTTP(req *http.Request, h http.HandlerFunc) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler {
				hc.p.log.Error("handler panic", zap.Any("panic", r))
			}
			ok = false
		}
	}()
	h(hc, req)
	return true
}

// Header implements http.ResponseWriter.
func (hc *h1Conn) Header() http.Header { return hc.hdr }

// statusLines holds "HTTP/1.1 200 OK\r\n" and the like for every status code net/http names.
var statusLines = func() []string {
	l := make([]string, 600)
	for code := range l {
		if text := http.StatusText(code); text != "" {
			l[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
		}
	}
	return l
}()

// statusLine returns "HTTP/1.1 200 OK\r\n" and the like for code.
func statusLine(code int) string {
	if code >= 0 && code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n"
}

// WriteHeader implements http.ResponseWriter: it writes the status line and headers, framing the
// body by Content-Length when set and chunked otherwise.
func (hc *h1Conn) WriteHeader(code int) {
	if hc.wroteHdr || hc.hijacked {
		return
	}
	if code < 200 {
		return // 1xx informational answers are not relayed
	}
	hc.wroteHdr, hc.status = true, code
	bw := hc.bw
	bw.WriteString(statusLine(code))
	hc.noBody = hc.req.Method == http.MethodHead || noBodyStatus(code)
	if v := hc.hdr["Content-Length"]; len(v) == 1 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			hc.clen = n
		}
	}
	if hc.clen < 0 && !hc.noBody {
		delete(hc.hdr, "Content-Length")
		if hc.req.ProtoAtLeast(1, 1) {
			hc.chunked = true
		} else {
			hc.closeAfter = true
		}
	}
	hc.trailers = hc.trailers[:0]
	if hc.chunked {
		// Trailers announced before the body are sent after the last chunk.
		for _, v := range hc.hdr["Trailer"] {
			for name := range strings.SplitSeq(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					hc.trailers = append(hc.trailers, http.CanonicalHeaderKey(name))
				}
			}
		}
	}
	for k, vv := range hc.hdr {
		if k == "Transfer-Encoding" || k == "Connection" || (k == "Trailer" && !hc.chunked) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if hc.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if hc.p.conns.closing.Load() && hc.br.Buffered() == 0 {
		// The proxy is shutting down and the client sent nothing after this request: the
		// connection closes after this answer, which says so, lest the client send its next
		// request into a connection about to close. Requests it pipelined are served first.
		hc.closeAfter = true
	}
	bw.WriteString(connHeaderFor(hc.closeAfter, hc.keepAlive10).line())
	bw.WriteString("\r\n")
}

// Write implements http.ResponseWriter.
func (hc *h1Conn) Write(b []byte) (int, error) {
	if hc.hijacked {
		return 0, http.ErrHijacked
	}
	if !hc.wroteHdr {
		hc.WriteHeader(http.StatusOK)
	}
	if hc.noBody || len(b) == 0 {
		return len(b), nil
	}
	if hc.clen >= 0 && hc.written+int64(len(b)) > hc.clen {
		return 0, http.ErrContentLength
	}
	hc.written += int64(len(b))
	if hc.chunked {
		hc.bw.WriteString(strconv.FormatInt(int64(len(b)), 16))
		hc.bw.WriteString("\r\n")
		n, err := hc.bw.Write(b)
		if err == nil {
			_, err = hc.bw.WriteString("\r\n")
		}
		return n, err
	}
	return hc.bw.Write(b)
}

// Flush implements http.Flusher.
func (hc *h1Conn) Flush() {
	if !hc.wroteHdr {
		hc.WriteHeader(http.StatusOK)
	}
	hc.setWriteDeadline()
	hc.bw.Flush()
}

// Hijack implements http.Hijacker (for upgrades).
func (hc *h1Conn) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if hc.wroteHdr {
		return nil, nil, errors.New("ambassador: hijack after the response started")
	}
	hc.hijacked = true
	// The connection outlives this h1Conn, so it gets buffers of its own.
	br := bufio.NewReader(io.MultiReader(readBuffered(hc.br), hc.c))
	return hc.c, bufio.NewReadWriter(br, bufio.NewWriter(hc.c)), nil
}

// readBuffered returns a reader of the bytes buffered in br.
func readBuffered(br *bufio.Reader) io.Reader {
	b, _ := br.Peek(br.Buffered())
	return strings.NewReader(string(b))
}

// prefacedConn is a connection whose first bytes come from a bufio.Reader that peeked them.
type prefacedConn struct {
	net.Conn
	r io.Reader
}

func (c *prefacedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connListener is a net.Listener fed by the proxy: connections found to speak h2c go to a
// net/http Server (with unencrypted HTTP/2 on) through it.
type connListener struct {
	addr   net.Addr
	conns  chan net.Conn // unbuffered: a hand-off waits for the Server to accept
	closed chan struct{}
	once   sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// handOff passes c to the Server; false means the listener is closed (c is not taken).
func (l *connListener) handOff(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

// serveH2C hands an HTTP/2 connection with prior knowledge to the proxy's net/http Server; it
// reports whether the Server took it (and now owns it).
func (p *HTTPProxy) serveH2C(c net.Conn, br *bufio.Reader) bool {
	c.SetReadDeadline(time.Time{})
	// The reader is pooled with the h1Conn: copy what it holds.
	pc := &prefacedConn{Conn: c, r: io.MultiReader(readBuffered(br), c)}
	return p.h2ln.handOff(pc)
}
