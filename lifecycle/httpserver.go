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

	handlersMu   sync.Mutex
	handlersCond *sync.Cond
	handlers     int // handler calls running
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

// Ready is closed once the server listens.
func (h *HTTPServer) Ready() <-chan struct{} { return h.ready }

// Addr returns the address the server listens on, or "" before it does.
func (h *HTTPServer) Addr() string { return h.boundAddr.Load().(string) }

// Run serves until ctx is done. If Shutdown has not run by then, Run closes the server at once
// (cancelling in-flight requests): graceful stopping is Shutdown's job, which an App calls first.
// Run returns only after every handler call has returned, so a handler that ignores its request's
// context keeps Run from returning.
func (h *HTTPServer) Run(ctx context.Context) error {
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
// running and closes their connections. It is idempotent; calls after the first wait for it and
// return its result.
func (h *HTTPServer) Shutdown(ctx context.Context) error {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.shutOnce.Do(func() {
		err := h.srv.Shutdown(ctx)
		if err != nil {
			h.cancelBase()
			h.srv.Close()
		}
		h.shutErr = err
		close(h.shutDone)
	})
	<-h.shutDone
	return h.shutErr
}
