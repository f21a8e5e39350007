package ambassador

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Split sends some requests to an experiment cluster instead of the primary one (the experiment
// ambassador). A request matches when Header is set and the request carries that header with value
// HeaderValue (any value when HeaderValue is ""), when Cookie is set and the request carries that
// cookie with value CookieValue (any value when CookieValue is ""), or else with probability
// Percent/100. A request without the header or cookie never matches on it.
type Split struct {
	Cluster     *Cluster
	Percent     float64
	Header      string
	HeaderValue string
	Cookie      string
	CookieValue string
}

func (s *Split) match(r *http.Request) bool {
	if s.Header != "" {
		if vs := r.Header.Values(s.Header); len(vs) > 0 && (s.HeaderValue == "" || vs[0] == s.HeaderValue) {
			return true
		}
	}
	if s.Cookie != "" {
		if c, err := r.Cookie(s.Cookie); err == nil && (s.CookieValue == "" || c.Value == s.CookieValue) {
			return true
		}
	}
	return s.Percent > 0 && rand.Float64()*100 < s.Percent
}

// HTTPProxy is an HTTP/1.1 and h2c (prior knowledge) reverse proxy over a Cluster: retries of
// idempotent requests (on another endpoint when one can take them) within a retry budget,
// per-try timeouts, circuit breaking, request splitting, X-Forwarded-* headers and upgrade
// (WebSocket) pass-through. It speaks HTTP/1.1 to endpoints over its own keep-alive pools. It is
// an http.Handler, and Run serves it on its listen address.
//
// The per-try timeout (WithPerTryTimeout) bounds a try until its response headers; the body idle
// timeout (WithBodyIdleTimeout) then bounds each wait for more of the response body: an endpoint
// silent that long mid-body has its answer cut short, and the client's connection closes (as
// nginx's proxy_read_timeout does).
type HTTPProxy struct {
	addr    string
	cluster *Cluster
	cfg     config
	log     *zap.Logger
	splits  atomic.Pointer[[]Split]
	budget  budget
	dialer  net.Dialer
	bufs    sync.Pool
	key     KeyFunc

	running atomic.Bool
	ready   chan struct{}
	bound   net.Addr

	conns connSet
	h2ln  *connListener
	// sharedDone is the Done channel of the context all HTTP/1 requests of Run share.
	sharedDone atomic.Pointer[<-chan struct{}]
	reqCtx     atomic.Pointer[context.Context] // the context of Run's requests
	loopServed atomic.Int64                    // requests answered by an event loop
	ringCounts ringCounts                      // the event loops' writes through io_uring
	handedOff  atomic.Int64                    // connections an event loop gave to the goroutine path
	loopCount  atomic.Int32                    // the event loops Run serves on; 0: none
	h1wg       sync.WaitGroup                  // HTTP/1 connection goroutines and event loops
	upMu       sync.Mutex
	upgrades   map[net.Conn]struct{} // hijacked client connections, closed at shutdown
	upClosed   bool
	upWG       sync.WaitGroup
}

// ringCounts count event loops' sends through io_uring, for Statusz (mailbox_linux.go); they stay
// zero where there are no event loops.
type ringCounts struct {
	batched atomic.Int64 // sends made through a ring
	enters  atomic.Int64 // io_uring_enter calls made for them
}

// NewHTTPProxy returns a proxy that will listen on addr ("127.0.0.1:0" picks a port) and send
// requests to cluster. Options used: WithRetries, WithRetryBudget, WithPerTryTimeout,
// WithConnectTimeout, WithIdleTimeout, WithKey, WithSplits, WithServerTimeouts,
// WithMaxIdlePerEndpoint, WithEventLoops, WithLogger.
func NewHTTPProxy(addr string, cluster *Cluster, opts ...Option) (*HTTPProxy, error) {
	if cluster == nil {
		return nil, &ConfigError{Field: "cluster", Reason: "is nil"}
	}
	cfg := newConfig(opts)
	if cfg.retries < 0 {
		return nil, &ConfigError{Field: "retries", Reason: "must be >= 0"}
	}
	if cfg.budget.Percent < 0 || cfg.budget.MinConcurrent < 0 {
		return nil, &ConfigError{Field: "retry budget", Reason: "must be >= 0"}
	}
	if err := validSplits(cfg.splits); err != nil {
		return nil, err
	}
	p := &HTTPProxy{
		addr: addr, cluster: cluster, cfg: cfg,
		log:      cfg.logger.Named("ambassador").With(zap.String("proxy", "http")),
		dialer:   net.Dialer{Timeout: cfg.connectTimeout, KeepAlive: 30 * time.Second},
		key:      cfg.key,
		ready:    make(chan struct{}),
		upgrades: map[net.Conn]struct{}{},
	}
	if p.key == nil {
		p.key = ClientIPKey
	}
	p.budget.RetryBudget = cfg.budget
	p.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	splits := cfg.splits
	p.splits.Store(&splits)
	return p, nil
}

func validSplits(ss []Split) error {
	for i, s := range ss {
		if s.Cluster == nil {
			return &ConfigError{Field: fmt.Sprintf("splits[%d].cluster", i), Reason: "is nil"}
		}
		if s.Percent < 0 || s.Percent > 100 {
			return &ConfigError{Field: fmt.Sprintf("splits[%d].percent", i), Reason: "must be 0..100"}
		}
	}
	return nil
}

// SetSplits replaces the request splits atomically; requests in flight finish where they started.
// Clusters not given at construction must be run by the caller.
func (p *HTTPProxy) SetSplits(ss ...Split) error {
	if err := validSplits(ss); err != nil {
		return err
	}
	ss = append([]Split(nil), ss...)
	p.splits.Store(&ss)
	return nil
}

// Ready is closed once Run is listening and its clusters have taken their sources' endpoints. It
// is never closed when Run ends before that: a cluster's source failed at start (a File source's
// missing file; Run returns the error) or ctx ended first.
func (p *HTTPProxy) Ready() <-chan struct{} { return p.ready }

// Addr returns the listening address once Ready is closed (nil before).
func (p *HTTPProxy) Addr() net.Addr {
	select {
	case <-p.ready:
		return p.bound
	default:
		return nil
	}
}

// Run listens and serves until ctx ends, and runs the proxy's clusters (the primary one and those
// of WithSplits) and its event loops (WithEventLoops). Then it stops accepting, closes idle
// client connections, waits up to 10s for requests in flight, closes upgraded and remaining
// connections, and returns nil once every goroutine has exited. It ends so early, with the
// cluster's error, when one of its clusters' Run fails, here or, for a cluster another proxy
// runs, there. A cluster another proxy runs is taken over, and run here, when that proxy stops.
func (p *HTTPProxy) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	p.bound = ln.Addr()
	// h2c connections are handed to a net/http Server; HTTP/1 is served by serveH1.
	p.h2ln = newConnListener(ln.Addr())
	h2srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.cfg.readHeader,
		ReadTimeout:       p.cfg.readTimeout,
		WriteTimeout:      p.cfg.writeTimeout,
		IdleTimeout:       p.cfg.idleTimeout,
		MaxHeaderBytes:    p.cfg.maxHeaderBytes,
		ErrorLog:          zap.NewStdLog(p.log),
		Protocols:         new(http.Protocols),
	}
	h2srv.Protocols.SetUnencryptedHTTP2(true)
	h2done := make(chan struct{})
	go func() {
		defer close(h2done)
		h2srv.Serve(p.h2ln)
	}()

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Requests run under reqCtx: it outlives ctx by the shutdown grace period.
	reqCtx, reqCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer reqCancel()
	shared := reqCtx.Done()
	p.sharedDone.Store(&shared)
	p.reqCtx.Store(&reqCtx)
	var lps *loops
	if n := p.cfg.eventLoops; n != 0 && loopsSupported {
		if n < 0 {
			n = defaultHTTPLoops(runtime.GOMAXPROCS(0))
		}
		if lps, err = newLoops(p, n, reqCtx); err != nil {
			p.log.Warn("event loops unavailable; serving on goroutines", zap.Error(err))
			lps = nil
		} else {
			p.loopCount.Store(int32(n))
		}
	}
	clusters := []*Cluster{p.cluster}
	for _, s := range p.cfg.splits {
		clusters = append(clusters, s.Cluster)
	}
	errs := make(chan error, len(clusters)+1)
	var wg sync.WaitGroup
	for _, c := range clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runShared(cctx, c); err != nil {
				errs <- fmt.Errorf("cluster %s: %w", c.Name(), err)
			}
		}()
	}
	ready := awaitReady(cctx, errs, clusters...) // before connections are balanced
	if lps != nil {
		lps.start(&p.h1wg)
	}
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		if !ready {
			return // Run is ending: accept nothing
		}
		var backoff acceptBackoff
		for {
			c, err := acceptNext(cctx, p.log, &backoff, ln.Accept)
			if err != nil {
				return // ln closed, or cctx ended
			}
			if lps != nil && lps.take(c) {
				continue
			}
			st := p.conns.add(c)
			if st == nil {
				c.Close()
				continue
			}
			p.h1wg.Go(func() {
				defer p.conns.remove(c)
				p.serveH1(reqCtx, c, st, nil, true, nil)
			})
		}
	}()
	if ready {
		close(p.ready)
		p.log.Info("listening", zap.Stringer("addr", ln.Addr()))
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	ln.Close()
	<-acceptDone
	p.conns.closeIdle()
	if lps != nil {
		lps.broadcast(msgCloseIdle)
	}
	p.h2ln.Close()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	if err := h2srv.Shutdown(sctx); err != nil {
		h2srv.Close()
	}
	scancel()
	<-h2done
	allDone := make(chan struct{})
	go func() {
		p.h1wg.Wait()
		close(allDone)
	}()
	select {
	case <-allDone:
	case <-time.After(10 * time.Second):
		reqCancel()
		p.conns.closeAll()
		if lps != nil {
			lps.broadcast(msgCloseAll)
		}
		<-allDone
	}
	p.upMu.Lock()
	p.upClosed = true
	for c := range p.upgrades {
		c.Close()
	}
	p.upMu.Unlock()
	p.upWG.Wait()
	cancel()
	wg.Wait()
	for _, c := range clusters {
		c.drainIdle()
	}
	return runErr
}

// drainIdle closes every backend's idle upstream connections.
func (c *Cluster) drainIdle() {
	for _, b := range c.snap.Load().all {
		b.idle.drain()
	}
}

// isIdempotent reports whether a request can be retried: an idempotent method and no body.
func isRetriable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
}

// tryError is a failed try: status is what the client gets if it is the last one.
type tryError struct {
	status int
	err    error
	unsent bool // the request never reached the backend (the dial failed)
}

func (e *tryError) Error() string { return e.err.Error() }

// dialError is a failure to connect to a backend: the request was not sent.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return "dial " + e.addr + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// ServeHTTP proxies one request.
func (p *HTTPProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		httpError(w, http.StatusMethodNotAllowed, "CONNECT is not supported")
		return
	}
	cluster := p.clusterFor(r)
	if isUpgrade(r) {
		p.serveUpgrade(w, r, cluster)
		return
	}
	a := attempts{cluster: cluster, key: p.key(r), retriable: isRetriable(r)}
	p.budget.active.Add(1)
	defer p.budget.active.Add(-1)
	p.retry(w, r, &a)
}

// clusterFor is the cluster r goes to: the first split it matches, else the primary cluster.
func (p *HTTPProxy) clusterFor(r *http.Request) *Cluster {
	for _, s := range *p.splits.Load() {
		if s.match(r) {
			return s.Cluster
		}
	}
	return p.cluster
}

// attempts is one request's retry state: the goroutine path keeps it on its stack, the event loop
// in its connection, and a request the loop hands over mid-try takes it along.
type attempts struct {
	cluster   *Cluster
	key       uint64
	retriable bool
	next      int // the number of the next attempt (0 is the first try)
	failedOn  triedSet
	last      *tryError
}

func (a *attempts) tried() []*Backend { return a.failedOn.list() }

// begin decides whether attempt a.next may run; counted reports that it took a slot of the retry
// budget (give it back with doneRetry). A retry after an attempt that never reached a backend (the
// dial failed) is safe for any request and adds no load upstream, so it is not charged.
func (p *HTTPProxy) begin(a *attempts) (counted, ok bool) {
	if a.next == 0 {
		return false, true
	}
	unsent := a.last != nil && a.last.unsent
	if !a.retriable && !unsent {
		return false, false
	}
	if !unsent {
		if !p.budget.tryRetry() {
			return false, false
		}
		counted = true
	}
	a.cluster.metrics.retries.Inc()
	return counted, true
}

// acquireFailed records that no endpoint could be leased for an attempt.
func (a *attempts) acquireFailed(err error) {
	if a.last == nil || errors.Is(err, ErrOverloaded) {
		a.last = &tryError{status: http.StatusServiceUnavailable, err: err}
	}
}

// failed records a failed try on b and moves to the next attempt.
func (a *attempts) failed(terr *tryError, b *Backend) {
	a.last = terr
	a.failedOn.add(b)
	a.next++
}

// final is what the client gets when no attempt answered.
func (a *attempts) final() *tryError {
	if a.last == nil {
		return &tryError{status: http.StatusServiceUnavailable, err: ErrNoEndpoint}
	}
	return a.last
}

// mayRetry reports whether the try now starting may leave a 502/503/504 answer to a retry.
func (p *HTTPProxy) mayRetry(a *attempts) bool { return a.retriable && a.next < p.cfg.retries }

// retry runs the attempts of a request from a.next on, and answers with the last failure if none
// answered.
func (p *HTTPProxy) retry(w http.ResponseWriter, r *http.Request, a *attempts) {
	for a.next <= p.cfg.retries {
		counted, ok := p.begin(a)
		if !ok {
			break
		}
		lease, err := a.cluster.Acquire(r.Context(), a.key, a.tried())
		if err != nil {
			if counted {
				p.budget.doneRetry()
			}
			if r.Context().Err() != nil {
				return
			}
			a.acquireFailed(err)
			break
		}
		done, terr := p.try(w, r, lease.Backend, p.mayRetry(a))
		lease.Release()
		if counted {
			p.budget.doneRetry()
		}
		if done {
			return
		}
		a.failed(terr, lease.Backend)
		if r.Context().Err() != nil {
			return
		}
	}
	t := a.final()
	httpError(w, t.status, t.err.Error())
}

// errorBody is the text of the proxy's own error answers.
func errorBody(status int, reason string) string {
	return fmt.Sprintf("ambassador: %d %s: %s\n", status, http.StatusText(status), reason)
}

// httpError answers with the proxy's own error, as appendError does on the event loops: with a
// Content-Length, so an HTTP/1.0 connection that asked for keep-alive stays open after it.
func httpError(w http.ResponseWriter, status int, reason string) {
	body := errorBody(status, reason)
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// hopHeaders are connection-specific and never forwarded (RFC 9110 7.6.1).
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

var pastTime = time.Unix(1, 0)

// try sends r to b once. done reports that the client has its answer (a response was written or
// the client is gone); otherwise terr says what failed, and nothing was written to w. mayRetry
// lets try discard a 502/503/504 answer so the caller can retry it.
func (p *HTTPProxy) try(w http.ResponseWriter, r *http.Request, b *Backend, mayRetry bool) (done bool, terr *tryError) {
	start := time.Now()
	uc, resp, err := p.roundTrip(r, b, mayRetry || isRetriable(r))
	return p.answer(w, r, b, start, uc, resp, err, mayRetry)
}

// tryFailed is the outcome of a try that failed with err before an answer (502, or 504 for a
// timeout; unsent when the dial failed).
func tryFailed(err error) *tryError {
	var de *dialError
	unsent := errors.As(err, &de)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &tryError{status: http.StatusGatewayTimeout, err: err, unsent: unsent}
	}
	return &tryError{status: http.StatusBadGateway, err: err, unsent: unsent}
}

// answer ends a try that started at start: it relays resp (read from uc) to w, or reports err.
func (p *HTTPProxy) answer(w http.ResponseWriter, r *http.Request, b *Backend, start time.Time, uc *upConn,
	resp *http.Response, err error, mayRetry bool) (done bool, terr *tryError) {
	if cerr, ok := errors.AsType[*clientBodyError](err); ok {
		// The client failed: the endpoint is not charged, nor is the request tried again. The
		// rest of the body cannot be read: the connection closes after the answer.
		if hc, ok := w.(*h1Conn); ok {
			hc.closeAfter = true
		}
		if r.Context().Err() == nil {
			httpError(w, cerr.status(), cerr.Error())
		}
		return true, nil
	}
	if err != nil {
		if r.Context().Err() != nil {
			// The client went away (an h2c stream reset, a closed connection): the try failed
			// for that, so the endpoint is not charged.
			return true, nil
		}
		b.c.Report(b, false, time.Since(start))
		return false, tryFailed(err)
	}
	b.c.Report(b, resp.StatusCode < 500, time.Since(start))
	if mayRetry && (resp.StatusCode == 502 || resp.StatusCode == 503 || resp.StatusCode == 504) {
		// Discard the answer; keep the connection only if the body is short and whole.
		_, derr := io.CopyN(io.Discard, resp.Body, 4<<10)
		resp.Body.Close()
		if errors.Is(derr, io.EOF) && !resp.Close {
			b.idle.put(uc)
		} else {
			uc.nc.Close()
		}
		return false, &tryError{status: resp.StatusCode, err: fmt.Errorf("endpoint %s answered %d", b.Addr, resp.StatusCode)}
	}

	// The per-try deadline bounds the wait for response headers. A body already in the buffer
	// needs no socket read; otherwise the deadline is lifted so long bodies and streams can flow
	// (the client's write timeout and disconnects still bound them), and the body idle timeout
	// bounds each wait for more of the body instead (idleBody): a stalled endpoint cuts the
	// answer short rather than hold the client forever. Pooled connections keep whatever
	// deadline they have: exchange sets a fresh one before every use.
	//
	// Shutdown cancels the requests' context at the end of its grace period: then a stalled body
	// must not keep Run waiting, so the connection gets a past deadline.
	var stop func() bool
	var body io.Reader = resp.Body
	if resp.ContentLength < 0 || int64(uc.br.Buffered()) < resp.ContentLength {
		uc.nc.SetDeadline(time.Time{})
		stop = context.AfterFunc(r.Context(), func() { uc.nc.SetDeadline(pastTime) })
		if d := p.cfg.bodyIdle; d > 0 {
			fl, _ := w.(http.Flusher)
			body = &idleBody{r: resp.Body, uc: uc, idle: d, ctx: r.Context(), w: fl}
		}
	}

	// Write the response.
	h := w.Header()
	drop := connectionTokens(resp.Header)
	for k, vv := range resp.Header {
		if hopHeaders[k] || (drop != nil && drop[k]) {
			continue
		}
		h[k] = vv
	}
	if resp.ContentLength >= 0 && r.Method != http.MethodHead && !noBodyStatus(resp.StatusCode) &&
		!isDecimal(h["Content-Length"], resp.ContentLength) {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	bp := p.bufs.Get().(*[]byte)
	var copyErr error
	if resp.ContentLength < 0 {
		copyErr = copyFlushing(w, body, *bp)
	} else {
		_, copyErr = io.CopyBuffer(w, body, *bp)
	}
	p.bufs.Put(bp)
	for k, vv := range resp.Trailer {
		h[k] = vv
	}
	resp.Body.Close()
	if stop != nil && !stop() {
		copyErr = cmp.Or(copyErr, r.Context().Err()) // the deadline is past: the connection is spent
	}
	if copyErr != nil || resp.Close {
		uc.nc.Close()
	} else {
		b.idle.put(uc)
	}
	if copyErr != nil {
		if r.Context().Err() == nil {
			// The response is cut short and cannot be replaced: make the server drop the client
			// connection so the client sees a truncated response, not a complete one.
			panic(http.ErrAbortHandler)
		}
	}
	return true, nil
}

// idleBody reads a response body from uc with at most idle for each Read: the deadline is set
// anew before every Read, not only before those that find uc's buffer empty, since a chunked
// body's Read may go on to the socket for the rest of a chunk header whose start was buffered, and
// the time the client took over the writes since must not count. Before a Read that finds the
// buffer empty (it reads the socket, and may wait) it flushes w: the client has what came so far,
// even if the endpoint then stalls.
type idleBody struct {
	r    io.Reader
	uc   *upConn
	idle time.Duration
	ctx  context.Context // once it ends, answer's past deadline must stay
	w    http.Flusher    // nil: none
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.w != nil && b.uc.br.Buffered() == 0 {
		b.w.Flush()
	}
	b.uc.nc.SetReadDeadline(time.Now().Add(b.idle))
	if err := b.ctx.Err(); err != nil {
		// Checked after the deadline is set, so that this one cannot undo answer's past one.
		b.uc.nc.SetDeadline(pastTime)
		return 0, err
	}
	return b.r.Read(p)
}

// isDecimal reports whether vv is the single value n written in plain decimal digits.
func isDecimal(vv []string, n int64) bool {
	if len(vv) != 1 || vv[0] == "" || len(vv[0]) > 18 {
		return false
	}
	var m int64
	for _, c := range []byte(vv[0]) {
		if c < '0' || c > '9' {
			return false
		}
		m = m*10 + int64(c-'0')
	}
	return m == n
}

// copyFlushing copies a response of unknown length, flushing after every read so streams flow.
func copyFlushing(w http.ResponseWriter, body io.Reader, buf []byte) error {
	rc := http.NewResponseController(w)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if ferr := rc.Flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// roundTrip writes r to an upstream connection of b and reads the response headers. A reused
// keep-alive connection that turns out to be closed is replaced by a newly dialed one (not the
// next pooled one: that has been idle at least as long, so the endpoint has likely closed it too)
// when replay is allowed (the request was idempotent or nothing of it was read).
func (p *HTTPProxy) roundTrip(r *http.Request, b *Backend, replay bool) (*upConn, *http.Response, error) {
	for fresh := false; ; fresh = true {
		var uc *upConn
		if !fresh {
			uc = b.idle.get()
			// No request goes to a pooled connection that holds bytes nobody asked for (an
			// endpoint that answered twice): they would be read as this request's answer, another
			// client's answer handed to this one. Nor does a request that cannot be replayed go to
			// a connection the endpoint has closed since it was pooled: it would fail where a new
			// connection would not.
			for uc != nil && !uc.open() {
				uc.nc.Close()
				uc = b.idle.get()
			}
		}
		reused := uc != nil
		if !reused {
			nc, err := p.dialer.DialContext(r.Context(), "tcp", b.Addr)
			if err != nil {
				return nil, nil, &dialError{addr: b.Addr, err: err}
			}
			uc = newUpConn(nc)
		}
		resp, err := p.exchange(uc, r)
		if err == nil {
			return uc, resp, nil
		}
		uc.nc.Close()
		if _, ok := errors.AsType[*clientBodyError](err); ok {
			return nil, nil, err // not the connection's failure: no new one would do better
		}
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout()
		if reused && !fresh && replay && !timeout && r.Context().Err() == nil {
			continue // a stale keep-alive connection: try once more on a new one
		}
		return nil, nil, fmt.Errorf("endpoint %s: %w", b.Addr, err)
	}
}

// exchange writes the request and reads the response headers on uc, within the per-try timeout.
func (p *HTTPProxy) exchange(uc *upConn, r *http.Request) (*http.Response, error) {
	if p.cfg.perTryTimeout > 0 {
		uc.nc.SetDeadline(time.Now().Add(p.cfg.perTryTimeout))
	} else {
		uc.nc.SetDeadline(time.Time{})
	}
	// A client that goes away cancels the try at once. Requests of the proxy's own HTTP/1 server
	// share one long-lived context (the per-try timeout bounds them), so they skip this.
	if done := r.Context().Done(); done != nil && !p.isShared(done) {
		stop := context.AfterFunc(r.Context(), func() { uc.nc.SetDeadline(pastTime) })
		defer stop()
	}
	if err := writeRequest(uc.bw, &uc.body, r); err != nil {
		return nil, err
	}
	yieldBeforeRead(uc.br)
	return readAnswer(uc, r)
}

// maxInterim bounds the interim (1xx) responses read before a request's final one, as
// net/http's Transport bounds them.
const maxInterim = 5

// errTooManyInterim is an endpoint that sent more than maxInterim interim responses.
var errTooManyInterim = errors.New("too many 1xx informational responses")

// readAnswer reads the final response headers to r from uc. Interim responses (1xx: 100
// Continue, 103 Early Hints) before it are read and dropped, as net/http's Transport does: taken
// for the answer, one would leave the real answer on the connection for the next request.
func readAnswer(uc *upConn, r *http.Request) (*http.Response, error) {
	for interim := 0; ; interim++ {
		resp, err := uc.readResponse(r)
		if err != nil {
			return nil, err
		}
		switch code := resp.StatusCode; {
		case code == http.StatusSwitchingProtocols:
			resp.Body.Close()
			return nil, errors.New("unexpected 101 Switching Protocols")
		case code >= 100 && code < 200:
			resp.Body.Close() // no body: this reads nothing
			if interim == maxInterim {
				return nil, errTooManyInterim
			}
			continue
		}
		return resp, nil
	}
}

// yieldBeforeRead lets other goroutines run before a read that would otherwise find nothing yet
// (the endpoint's answer, the client's next request): by the time this one runs again the bytes
// are usually there, so the read succeeds at once instead of failing with EAGAIN and parking
// until the poller reports the socket. Under load that saves about one read syscall per request
// and its wake-up; when nothing else is runnable it returns at once.
func yieldBeforeRead(br *bufio.Reader) {
	if br.Buffered() == 0 {
		runtime.Gosched()
	}
}

func (p *HTTPProxy) isShared(done <-chan struct{}) bool {
	s := p.sharedDone.Load()
	return s != nil && *s == done
}

// connectionTokens returns the header names listed in Connection (canonical), or nil.
func connectionTokens(h http.Header) map[string]bool {
	vv := h["Connection"]
	if len(vv) == 0 {
		return nil
	}
	if len(vv) == 1 && (strings.EqualFold(vv[0], "keep-alive") || strings.EqualFold(vv[0], "close")) {
		return nil // the common case names no header
	}
	m := map[string]bool{}
	for _, v := range vv {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				m[http.CanonicalHeaderKey(tok)] = true
			}
		}
	}
	return m
}

// writeRequest writes r as an HTTP/1.1 request with X-Forwarded-* headers and flushes it. body
// reads r's body: the caller's, so that it is not allocated per request; nil for a request
// without one.
func writeRequest(bw *bufio.Writer, body *bodyReader, r *http.Request) error {
	uri := r.RequestURI
	if uri == "" || r.ProtoMajor == 2 {
		uri = r.URL.RequestURI()
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	drop := connectionTokens(r.Header)
	for k, vv := range r.Header {
		if hopHeaders[k] || (drop != nil && drop[k]) || k == "X-Forwarded-For" || k == "X-Forwarded-Proto" ||
			k == "X-Forwarded-Host" || k == "Content-Length" {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	writeForwarded(bw, r)
	if isUpgrade(r) {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(r.Header.Get("Upgrade"))
		bw.WriteString("\r\n")
	}
	hasBody := r.Body != nil && r.Body != http.NoBody
	if hasBody {
		if body == nil {
			body = new(bodyReader)
		}
		*body = bodyReader{r: r.Body}
		defer func() { *body = bodyReader{} }() // keeps no request's body
	}
	switch {
	case !hasBody || r.ContentLength == 0:
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
		bw.WriteString("\r\n")
	case r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
		bw.WriteString("\r\n\r\n")
		if _, err := io.CopyN(bw, body, r.ContentLength); err != nil {
			return body.failed(err)
		}
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(bw)
		if _, err := io.Copy(cw, body); err != nil {
			return body.failed(err)
		}
		cw.Close()
		bw.WriteString("\r\n")
	}
	return bw.Flush()
}

// clientBodyError is a request body that could not be read from the client: it went away or
// stalled mid-body, sent less than it declared, or sent a malformed chunked body. It is the
// client's failure, not the endpoint's: the endpoint is not charged for it, and the client gets
// 400 (408 for a stall), or nothing if it is gone.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// status is the answer to a request whose body failed so.
func (e *clientBodyError) status() int {
	var ne net.Error
	if errors.As(e.err, &ne) && ne.Timeout() {
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

// bodyReader reads a request body, keeping the error of a failed read, so that writeRequest tells
// a client's failure from the endpoint's (a failed write).
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// failed returns the error of a body copy that failed with err: a clientBodyError when the body's
// read failed or ended before its Content-Length (io.CopyN's io.EOF), else the endpoint's write
// error.
func (b *bodyReader) failed(err error) error {
	switch {
	case b.err != nil:
		return &clientBodyError{b.err}
	case err == io.EOF:
		return &clientBodyError{io.ErrUnexpectedEOF}
	}
	return fmt.Errorf("request body: %w", err)
}

func writeForwarded(bw *bufio.Writer, r *http.Request) {
	bw.WriteString("X-Forwarded-For: ")
	if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 {
		for _, v := range prior {
			bw.WriteString(v)
			bw.WriteString(", ")
		}
	}
	bw.WriteString(hostOnly(r.RemoteAddr))
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	if r.TLS != nil {
		bw.WriteString("https")
	} else {
		bw.WriteString("http")
	}
	bw.WriteString("\r\nX-Forwarded-Host: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
}

func isUpgrade(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// serveUpgrade passes an Upgrade request (WebSocket and the like) through on a fresh upstream
// connection, and once the endpoint answers 101, copies bytes both ways until either side closes.
func (p *HTTPProxy) serveUpgrade(w http.ResponseWriter, r *http.Request, cluster *Cluster) {
	lease, err := cluster.Acquire(r.Context(), p.key(r), nil)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer lease.Release()
	b := lease.Backend
	start := time.Now()
	nc, err := p.dialer.DialContext(r.Context(), "tcp", b.Addr)
	if err != nil {
		cluster.Report(b, false, time.Since(start))
		httpError(w, http.StatusBadGateway, fmt.Sprintf("dial %s: %v", b.Addr, err))
		return
	}
	uc := newUpConn(nc)
	if p.cfg.perTryTimeout > 0 {
		nc.SetDeadline(time.Now().Add(p.cfg.perTryTimeout))
	}
	var resp *http.Response
	if err = writeRequest(uc.bw, &uc.body, r); err == nil {
		resp, err = http.ReadResponse(uc.br, r)
	}
	// Interim answers before the 101 or the refusal are dropped, as readAnswer drops them.
	for interim := 0; err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 &&
		resp.StatusCode != http.StatusSwitchingProtocols; interim++ {
		if interim == maxInterim {
			err = errTooManyInterim
			break
		}
		resp, err = http.ReadResponse(uc.br, r)
	}
	if err != nil {
		nc.Close()
		cluster.Report(b, false, time.Since(start))
		httpError(w, http.StatusBadGateway, fmt.Sprintf("endpoint %s: %v", b.Addr, err))
		return
	}
	cluster.Report(b, resp.StatusCode < 500, time.Since(start))
	nc.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// The endpoint declined the upgrade: relay its answer and close.
		defer nc.Close()
		for k, vv := range resp.Header {
			if !hopHeaders[k] {
				w.Header()[k] = vv
			}
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	cc, crw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		nc.Close()
		httpError(w, http.StatusInternalServerError, "cannot take over the connection: "+err.Error())
		return
	}
	p.upMu.Lock()
	if p.upClosed {
		p.upMu.Unlock()
		cc.Close()
		nc.Close()
		return
	}
	p.upgrades[cc] = struct{}{}
	p.upWG.Add(1)
	p.upMu.Unlock()
	defer func() {
		p.upMu.Lock()
		delete(p.upgrades, cc)
		p.upMu.Unlock()
		p.upWG.Done()
	}()
	cc.SetDeadline(time.Time{})
	// Relay the 101 response as received.
	crw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	resp.Header.Write(crw)
	crw.WriteString("\r\n")
	if err := crw.Flush(); err != nil {
		cc.Close()
		nc.Close()
		return
	}
	// Bytes either side already buffered go first.
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(nc, crw.Reader)
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	io.Copy(cc, uc.br)
	cc.Close()
	nc.Close()
	<-done
}

// awaitReady waits until every cluster in cs is Ready (its Run has taken its source's set and
// balances over it), ctx ends or errs has a cluster's Run result, which it leaves in errs. It
// reports whether every cluster is Ready and ctx has not ended: whether the proxy is ready.
func awaitReady(ctx context.Context, errs chan error, cs ...*Cluster) bool {
	for _, c := range cs {
		select {
		case <-c.Ready():
		case err := <-errs:
			errs <- err
			return false
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

// runShared runs c until ctx ends. A cluster already run by someone else (a shared one) is left
// to them while their Run runs: when it fails, its error is returned here too (the proxy cannot
// serve without it), and when it returns nil (their ctx ended), the caller, still serving c, takes
// it over and runs it itself.
func runShared(ctx context.Context, c *Cluster) error {
	for {
		r, mine := c.begin()
		if mine {
			return c.run(ctx, r)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.stopped:
			if r.err != nil {
				return r.err
			}
			// Its runner stopped normally: this proxy still serves it, so runs it now (or
			// waits on a Run another sharer began first).
		}
	}
}

// defaultHTTPLoops is how many event loops an HTTPProxy serves on by default with procs Ps: one
// per two, at least one. A loop's connections wait whenever its thread waits for a CPU, and the
// proxy shares the machine with the app and the endpoints: with a loop per P on 2 CPUs under wrk
// and two nginx workers, each loop's thread ran under half the time, its connections waiting
// behind the other loop and the load, where one loop ran over 90% of the time for about the same
// throughput and a shorter tail (BENCHMARKS.md).
func defaultHTTPLoops(procs int) int { return max(1, (procs+1)/2) }

// Statusz is the proxy's key/value table for a /statusz page.
func (p *HTTPProxy) Statusz() (string, []string, [][]string) {
	addr := p.addr
	if a := p.Addr(); a != nil {
		addr = a.String()
	}
	rows := [][]string{
		{"listen", addr},
		{"cluster", p.cluster.Name()},
		{"requests in flight", strconv.FormatInt(p.budget.active.Load(), 10)},
		{"retries in flight", strconv.FormatInt(p.budget.retries.Load(), 10)},
		{"retry budget", fmt.Sprintf("%d%% (min %d)", p.budget.Percent, p.budget.MinConcurrent)},
		{"event loops", strconv.Itoa(int(p.loopCount.Load()))},
		{"answered by event loops", strconv.FormatInt(p.loopServed.Load(), 10)},
		{"handed to goroutines by event loops", strconv.FormatInt(p.handedOff.Load(), 10)},
		{"writes through io_uring on event loops", strconv.FormatInt(p.ringCounts.batched.Load(), 10)},
		{"io_uring_enter calls on event loops", strconv.FormatInt(p.ringCounts.enters.Load(), 10)},
	}
	for i, s := range *p.splits.Load() {
		rows = append(rows, []string{fmt.Sprintf("split %d", i), fmt.Sprintf("cluster=%s percent=%g header=%s cookie=%s",
			s.Cluster.Name(), s.Percent, s.Header, s.Cookie)})
	}
	return "ambassador http proxy", []string{"key", "value"}, rows
}
