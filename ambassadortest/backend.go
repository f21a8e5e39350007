package ambassadortest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador"
)

// Behavior programs how a backend answers.
type Behavior struct {
	// Latency delays every answer (HTTP) or the start of echoing (TCP).
	Latency time.Duration
	// Status is the HTTP status to answer (0 means 200).
	Status int
	// Close drops the connection instead of answering (HTTP: without a response; TCP: at once).
	Close bool
}

// Request is what an HTTP backend saw of one request.
type Request struct {
	Method string
	Path   string
	Header http.Header
}

// maxRecorded bounds the requests an HTTP backend keeps.
const maxRecorded = 1000

// HTTPBackend is a real HTTP/1.1 server on 127.0.0.1 that answers "<name>\n" (or echoes Upgrade
// requests byte for byte after a 101), as programmed by Set, and records what it saw.
type HTTPBackend struct {
	Name string
	Addr string

	count atomic.Int64
	mu    sync.Mutex
	beh   Behavior
	seen  []Request
	srv   *http.Server
	done  chan struct{}
	conns map[net.Conn]struct{} // hijacked
}

// NewHTTPBackend starts a backend named name on a free loopback port; it stops at t's cleanup.
func NewHTTPBackend(t testing.TB, name string) *HTTPBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	b := &HTTPBackend{Name: name, Addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	b.serve(ln)
	t.Cleanup(b.Stop)
	return b
}

// Endpoint returns the backend as an ambassador endpoint.
func (b *HTTPBackend) Endpoint() ambassador.Endpoint { return ambassador.Endpoint{Addr: b.Addr} }

// Set changes how the backend answers from now on.
func (b *HTTPBackend) Set(beh Behavior) {
	b.mu.Lock()
	b.beh = beh
	b.mu.Unlock()
}

// Count returns the number of requests the backend has received.
func (b *HTTPBackend) Count() int { return int(b.count.Load()) }

// Requests returns the last requests seen (at most 1000), oldest first.
func (b *HTTPBackend) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.seen...)
}

func (b *HTTPBackend) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(b.handle), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	b.mu.Lock()
	b.srv, b.done = srv, done
	b.mu.Unlock()
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
}

// Stop kills the backend: the listener and every connection close at once. It is idempotent.
func (b *HTTPBackend) Stop() {
	b.mu.Lock()
	srv, done := b.srv, b.done
	b.srv = nil
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	<-done
}

// Start brings a stopped backend back on the same address.
func (b *HTTPBackend) Start() error {
	b.mu.Lock()
	running := b.srv != nil
	b.mu.Unlock()
	if running {
		return nil
	}
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", b.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("restart %s: %w", b.Name, err)
	}
	b.serve(ln)
	return nil
}

func (b *HTTPBackend) handle(w http.ResponseWriter, r *http.Request) {
	b.count.Add(1)
	b.mu.Lock()
	beh := b.beh
	if len(b.seen) == maxRecorded {
		copy(b.seen, b.seen[1:])
		b.seen = b.seen[:maxRecorded-1]
	}
	b.seen = append(b.seen, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
	b.mu.Unlock()
	io.Copy(io.Discard, r.Body)
	if beh.Latency > 0 {
		t := time.NewTimer(beh.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if beh.Close {
		panic(http.ErrAbortHandler)
	}
	if strings.EqualFold(r.Header.Get("Connection"), "upgrade") && r.Header.Get("Upgrade") != "" {
		b.echoUpgrade(w, r)
		return
	}
	status := beh.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("X-Backend", b.Name)
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s\n", b.Name)
}

func (b *HTTPBackend) echoUpgrade(w http.ResponseWriter, r *http.Request) {
	c, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	b.mu.Lock()
	if b.srv == nil {
		b.mu.Unlock()
		c.Close()
		return
	}
	b.conns[c] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.Close()
	}()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\nX-Backend: %s\r\n\r\n",
		r.Header.Get("Upgrade"), b.Name)
	rw.Flush()
	echo(c, rw.Reader)
}

// echo copies r back to c until EOF.
func echo(c net.Conn, r *bufio.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := c.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				tc.CloseWrite()
			}
			return
		}
	}
}

// TCPBackend is a real TCP echo server on 127.0.0.1, programmable with Set, that counts
// connections and bytes.
type TCPBackend struct {
	Name string
	Addr string

	conns atomic.Int64
	bytes atomic.Int64
	mu    sync.Mutex
	beh   Behavior
	ln    net.Listener
	open  map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewTCPBackend starts an echo backend on a free loopback port; it stops at t's cleanup.
func NewTCPBackend(t testing.TB, name string) *TCPBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	b := &TCPBackend{Name: name, Addr: ln.Addr().String(), open: map[net.Conn]struct{}{}}
	b.serve(ln)
	t.Cleanup(b.Stop)
	return b
}

// Endpoint returns the backend as an ambassador endpoint.
func (b *TCPBackend) Endpoint() ambassador.Endpoint { return ambassador.Endpoint{Addr: b.Addr} }

// Set changes how the backend treats new connections.
func (b *TCPBackend) Set(beh Behavior) {
	b.mu.Lock()
	b.beh = beh
	b.mu.Unlock()
}

// Conns returns the number of connections accepted.
func (b *TCPBackend) Conns() int { return int(b.conns.Load()) }

// Bytes returns the number of bytes echoed.
func (b *TCPBackend) Bytes() int64 { return b.bytes.Load() }

func (b *TCPBackend) serve(ln net.Listener) {
	b.mu.Lock()
	b.ln = ln
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			b.mu.Lock()
			if b.ln != ln {
				b.mu.Unlock()
				c.Close()
				return
			}
			beh := b.beh
			b.open[c] = struct{}{}
			b.wg.Add(1)
			b.mu.Unlock()
			go func() {
				defer b.wg.Done()
				defer func() {
					b.mu.Lock()
					delete(b.open, c)
					b.mu.Unlock()
					c.Close()
				}()
				if beh.Close {
					return
				}
				if beh.Latency > 0 {
					time.Sleep(beh.Latency)
				}
				n, _ := io.Copy(countingWriter{c, &b.bytes}, c)
				_ = n
				if tc, ok := c.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}()
		}
	}()
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// Stop kills the backend: the listener and every connection close at once. It is idempotent.
func (b *TCPBackend) Stop() {
	b.mu.Lock()
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
	for c := range b.open {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Start brings a stopped backend back on the same address.
func (b *TCPBackend) Start() error {
	b.mu.Lock()
	running := b.ln != nil
	b.mu.Unlock()
	if running {
		return nil
	}
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", b.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("restart %s: %w", b.Name, err)
	}
	b.serve(ln)
	return nil
}

// WaitFor polls cond every 10ms until it is true or timeout passes; it reports whether cond held.
// Tests use it instead of fixed sleeps.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
