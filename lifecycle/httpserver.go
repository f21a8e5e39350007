package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults HTTPServer applies to an http.Server whose fields are zero.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
)

// CancelAnswerTime is how long HTTPServer.Shutdown, at its deadline, lets the handlers whose request
// context it has just cancelled write their answer before it closes their connections. An App takes
// it from the safety margin, and gives its servers at most half the margin (less than
// CancelAnswerTime when the margin is under 500ms), so that the drain never overruns the grace
// period.
const CancelAnswerTime = 250 * time.Millisecond

// HTTPServer runs an *http.Server as a Component that an App can drain: Shutdown stops accepting,
// waits for in-flight requests until its ctx ends, then cancels the requests' base context and closes
// what is left.
type HTTPServer struct {
	srv  *http.Server
	addr string
	ln   net.Listener

	ready      chan struct{}
	boundAddr  atomic.Value // string
	base       context.Context
	cancelBase context.CancelFunc
	shutOnce   sync.Once
	shutErr    error
	shutDone   chan struct{}

	startMu sync.Mutex
	started bool // Run has begun; once Shutdown ran first, Run does not serve

	handlersMu   sync.Mutex
	handlersCond *sync.Cond
	handlers     int                   // handler calls running
	active       map[net.Conn]struct{} // connections in http.StateActive: a request being served or answered

	answerTime atomic.Int64 // Shutdown's answer window after its deadline: CancelAnswerTime or less
}

// NewHTTPServer returns a component serving srv on addr (or on ln, if addr is "" and ln is given
// through NewHTTPServerListener). Zero ReadHeaderTimeout and IdleTimeout get the defaults above;
// srv.BaseContext is replaced so that Shutdown can cancel stragglers, and srv.Handler is wrapped so
// that Run can wait for the handler calls still running when it stops.
func NewHTTPServer(srv *http.Server, addr string) (*HTTPServer, error) {
	if srv == nil || srv.Handler == nil {
		return nil, errors.New("lifecycle: http server: nil server or handler")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("lifecycle: http server address %q: %w", addr, err)
	}
	return newHTTPServer(srv, addr, nil), nil
}

// NewHTTPServerListener is NewHTTPServer serving on an existing listener, which it closes.
func NewHTTPServerListener(srv *http.Server, ln net.Listener) (*HTTPServer, error) {
	if srv == nil || srv.Handler == nil || ln == nil {
		return nil, errors.New("lifecycle: http server: nil server, handler or listener")
	}
	return newHTTPServer(srv, "", ln), nil
}

func newHTTPServer(srv *http.Server, addr string, ln net.Listener) *HTTPServer {
	if srv.ReadHeaderTimeout == 0 {
		srv.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if srv.IdleTimeout == 0 {
		srv.IdleTimeout = DefaultIdleTimeout
	}
	h := &HTTPServer{srv: srv, addr: addr, ln: ln, ready: make(chan struct{}), shutDone: make(chan struct{})}
	h.handlersCond = sync.NewCond(&h.handlersMu)
	h.answerTime.Store(int64(CancelAnswerTime))
	h.active = map[net.Conn]struct{}{}
	userConnState := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		h.handlersMu.Lock()
		if st == http.StateActive {
			h.active[c] = struct{}{}
		} else if _, ok := h.active[c]; ok {
			delete(h.active, c) // its answer is written
			h.handlersCond.Broadcast()
		}
		h.handlersMu.Unlock()
		if userConnState != nil {
			userConnState(c, st)
		}
	}
	inner := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.handlersMu.Lock()
		h.handlers++
		h.handlersMu.Unlock()
		defer func() {
			h.handlersMu.Lock()
			if h.handlers--; h.handlers == 0 {
				h.handlersCond.Broadcast()
			}
			h.handlersMu.Unlock()
		}()
		inner.ServeHTTP(w, r)
	})
	h.boundAddr.Store("")
	return h
}

// waitHandlers blocks until no handler call is running. After Close no new request is read, so once
// the count reaches zero it stays there.
func (h *HTTPServer) waitHandlers() {
	h.handlersMu.Lock()
	for h.handlers > 0 {
		h.handlersCond.Wait()
	}
	h.handlersMu.Unlock()
}

// waitAnswersFor waits at most d for every handler call to return and every connection to have
// written its answer (left http.StateActive).
func (h *HTTPServer) waitAnswersFor(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	h.waitAnswers(ctx)
}

// waitAnswers waits until every handler call has returned and every connection has written its
// answer (left http.StateActive), or ctx ends. Idle connections, and connections that have not sent
// a request yet, are not waited for.
func (h *HTTPServer) waitAnswers(ctx context.Context) {
	h.handlersMu.Lock()
	defer h.handlersMu.Unlock()
	waitCond(ctx, h.handlersCond, func() bool { return h.handlers == 0 && len(h.active) == 0 })
}

// Ready is closed once the server listens.
func (h *HTTPServer) Ready() <-chan struct{} { return h.ready }

// Addr returns the address the server listens on, or "" before it does.
func (h *HTTPServer) Addr() string { return h.boundAddr.Load().(string) }

// Run serves until ctx is done. If Shutdown has not run by then, Run closes the server at once
// (cancelling in-flight requests): graceful stopping is Shutdown's job, which an App calls first.
// Run returns only after every handler call has returned, so a handler that ignores its request's
// context keeps Run from returning.
func (h *HTTPServer) Run(ctx context.Context) error {
	h.startMu.Lock()
	h.started = true
	h.startMu.Unlock()
	select {
	case <-h.shutDone: // shut down before it started: nothing to serve, nothing to drain
		<-ctx.Done()
		return nil
	default:
	}
	ln := h.ln
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", h.addr); err != nil {
			return fmt.Errorf("lifecycle: http server: %w", err)
		}
	}
	h.base, h.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	defer h.cancelBase()
	h.srv.BaseContext = func(net.Listener) context.Context { return h.base }
	h.boundAddr.Store(ln.Addr().String())
	serveErr := make(chan error, 1)
	go func() { serveErr <- h.srv.Serve(ln) }()
	close(h.ready)

	select {
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			h.cancelBase()
			h.srv.Close()
			h.waitHandlers()
			return fmt.Errorf("lifecycle: http server: %w", err)
		}
		// Shut down by Shutdown: stay until the group stops us, so stop order is kept.
		<-h.shutDone
		<-ctx.Done()
		h.waitHandlers()
		return nil
	case <-ctx.Done():
		h.shutOnce.Do(func() {
			h.cancelBase()
			h.shutErr = h.srv.Close()
			close(h.shutDone)
		})
		<-h.shutDone
		<-serveErr
		h.waitHandlers()
		return nil
	}
}

// Shutdown stops accepting connections, closes idle ones and waits for in-flight requests (HTTP/1.1
// and HTTP/2, which get a GOAWAY) until ctx ends; then it cancels the context of the requests still
// running, waits up to CancelAnswerTime past ctx's deadline (or past its cancellation) for their
// handlers to return (less in an App whose
// safety margin is under twice CancelAnswerTime: see CancelAnswerTime), and closes the connections
// still open. It calls the http.Server's Shutdown once, so functions registered with
// RegisterOnShutdown run once. It is idempotent; calls after the first wait for it and
// return its result. Shutdown of a server whose Run has not begun (an App drained while an earlier
// component is still starting) returns nil at once, and that server's Run then never serves: it
// waits for its context and returns nil.
func (h *HTTPServer) Shutdown(ctx context.Context) error {
	h.startMu.Lock()
	if !h.started {
		h.shutOnce.Do(func() {
			if h.ln != nil {
				h.ln.Close() // NewHTTPServerListener's: Run will not serve on it
			}
			close(h.shutDone)
		})
	}
	h.startMu.Unlock()
	select {
	case <-h.shutDone:
		return h.shutErr
	case <-h.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.shutOnce.Do(func() {
		err := h.srv.Shutdown(ctx)
		if err != nil {
			// Handlers that watch their request's context get a moment to answer (a 503, say)
			// before their connections are closed under them.
			// The window runs from ctx's deadline, not from when this goroutine noticed it: on a
			// loaded machine the two timers' delays would add up past the grace period.
			h.cancelBase()
			end := time.Now()
			if dl, ok := ctx.Deadline(); ok && errors.Is(err, context.DeadlineExceeded) {
				end = dl
			}
			h.waitAnswersFor(time.Until(end.Add(time.Duration(h.answerTime.Load()))))
			h.srv.Close()
		}
		h.shutErr = err
		close(h.shutDone)
	})
	<-h.shutDone
	return h.shutErr
}
