package ambassador_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
	"github.com/podblocks/podblocks/internal/loopback"
)

// Tests of HTTP/1.1 framing at both ends of the proxy, over real sockets, with endpoints that
// write their answers byte for byte (rawEndpoint).

// rawEndpoint serves each request head it reads on a connection (bodies are not read: the tests'
// requests sent to it have none, or an empty chunked one) with answer(path), written as the pieces it returns, pause
// apart. It records the heads it got, and tells on written when it has written an answer whole.
type rawEndpoint struct {
	addr    string
	written chan struct{}
	mu      sync.Mutex
	got     strings.Builder
}

func newRawEndpoint(t *testing.T, pause time.Duration, answer func(path string) []string) *rawEndpoint {
	t.Helper()
	e := &rawEndpoint{written: make(chan struct{}, 64)}
	e.addr = loopback.Serve(t, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			e.record(line)
			f := strings.Fields(line)
			if len(f) != 3 {
				continue // not a request line: the end of an empty chunked body
			}
			for line != "\r\n" {
				if line, err = br.ReadString('\n'); err != nil {
					return
				}
				e.record(line)
			}
			for i, piece := range answer(f[1]) {
				if i > 0 {
					time.Sleep(pause)
				}
				if _, err := io.WriteString(c, piece); err != nil {
					return
				}
			}
			select {
			case e.written <- struct{}{}:
			default:
			}
		}
	})
	return e
}

func (e *rawEndpoint) record(s string) {
	e.mu.Lock()
	e.got.WriteString(s)
	e.mu.Unlock()
}

// heads returns what the endpoint has read so far.
func (e *rawEndpoint) heads() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.got.String()
}

// okAnswer is a 200 answer with body s.
func okAnswer(s string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(s), s)
}

// getOnce makes a GET on a connection of its own (so each one is a new client) with the headers
// hdr (name, value, ...) and returns the status and body.
func getOnce(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	return get(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, url, hdr...)
}

// pragmaHdr is the header list of get that sets Pragma to v, or sets none when v is "". A request
// with Pragma is handed from the event loop to the goroutine path.
func pragmaHdr(v string) []string {
	if v == "" {
		return nil
	}
	return []string{"Pragma", v}
}

// TestHTTPProxyInterimResponses: interim answers (103 Early Hints, an unasked 100 Continue)
// before the final one are dropped, on the event loop and on the goroutine path (Pragma), whether
// they come in the final answer's packet or apart from it: the client gets the final answer,
// and the next client on the pooled upstream connection its own, not the one before. More than
// five interim answers fail the try (502), as net/http's Transport fails them.
func TestHTTPProxyInterimResponses(t *testing.T) {
	for _, pause := range []time.Duration{0, 20 * time.Millisecond} {
		e := newRawEndpoint(t, pause, func(path string) []string {
			n := 1
			if path == "/many" {
				n = 6
			}
			var out []string
			for i := range n {
				if i%2 == 0 {
					out = append(out, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
				} else {
					out = append(out, "HTTP/1.1 100 Continue\r\n\r\n")
				}
			}
			return append(out, okAnswer("answer for "+path))
		})
		_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: e.addr}))
		for _, pragma := range []string{"", "no-cache"} { // Pragma goes to the goroutine path
			for _, path := range []string{"/alice", "/bob", "/carol"} {
				code, body := getOnce(t, url+path, pragmaHdr(pragma)...)
				if want := "answer for " + path; code != 200 || body != want {
					t.Errorf("pause %v, Pragma %q: GET %s = %d %q, want 200 %q", pause, pragma, path, code, body, want)
				}
			}
			if code, body := getOnce(t, url+"/many", pragmaHdr(pragma)...); code != http.StatusBadGateway {
				t.Errorf("pause %v, Pragma %q: GET /many (6 interim answers) = %d %q, want 502", pause, pragma, code, body)
			}
		}
	}
}

// TestHTTPProxyUnaskedAnswerNotRelayed: an endpoint that answers every request twice leaves an
// answer nobody asked for on its connection, in the same packet as the first or apart from it;
// the proxy must not pool that connection, nor reuse it, or the next client gets the extra answer
// in place of its own. On the event loop and on the goroutine path (Pragma).
func TestHTTPProxyUnaskedAnswerNotRelayed(t *testing.T) {
	for _, pause := range []time.Duration{0, 20 * time.Millisecond} {
		e := newRawEndpoint(t, pause, func(path string) []string {
			return []string{okAnswer("answer for " + path), okAnswer("extra answer for " + path)}
		})
		_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: e.addr}))
		for _, pragma := range []string{"", "no-cache"} {
			for _, path := range []string{"/alice", "/bob", "/carol"} {
				code, body := getOnce(t, url+path, pragmaHdr(pragma)...)
				if want := "answer for " + path; code != 200 || body != want {
					t.Errorf("pause %v, Pragma %q: GET %s = %d %q, want 200 %q", pause, pragma, path, code, body, want)
				}
				<-e.written // the extra answer is in the pooled connection's socket
			}
		}
	}
}

// TestHTTPProxyClientBodyFaultsNotCharged: a client that sends a malformed chunked body, or
// gives up mid-body, fails its own request (400, and the connection closes), not the endpoint's:
// with outlier detection ejecting an endpoint at its first failure (and no panic mode to route to
// it ejected), the endpoint still serves the next request.
func TestHTTPProxyClientBodyFaultsNotCharged(t *testing.T) {
	be := ambassadortest.NewHTTPBackend(t, "a")
	p, _, url := newHTTPProxy(t, ambassador.NewStatic(be.Endpoint()),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 1, BaseEjection: time.Minute,
			MaxEjection: time.Minute, MaxEjectionPercent: 100}), ambassador.WithPanicThreshold(0))
	for _, tc := range []struct{ name, req string }{
		{"malformed chunked body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc\r\nzz\r\n\r\n"},
		{"body cut short", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789"},
		{"chunked body cut short", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n0123456789"},
	} {
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, tc.req)
		c.(*net.TCPConn).CloseWrite() // the client gives up: the proxy reads the end of its body
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != http.StatusBadRequest || !resp.Close {
			t.Errorf("%s: answered %d (close %v), want 400 and the connection closed", tc.name, resp.StatusCode, resp.Close)
		}
		if code, body := getOnce(t, url+"/"); code != 200 || body != "a\n" {
			t.Fatalf("after a client's %s, GET = %d %q, want the endpoint's 200", tc.name, code, body)
		}
	}
}

// rawAnswer writes req on a new connection to addr and returns all the proxy sends back until it
// closes the connection or a second passes quiet.
func rawAnswer(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, req)
	var got strings.Builder
	buf := make([]byte, 4<<10)
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return got.String()
		}
	}
}

// TestHTTPProxyFieldNameWhitespace: RFC 9112, 5.1. A request field name with whitespace before
// its colon, or a Host that is no host, is answered 400 and not forwarded (on the event loop's
// parser and on net/http's, Pragma); a response field name with whitespace before its colon is
// relayed without it, and one that would frame the body (Content-Length) fails the response.
func TestHTTPProxyFieldNameWhitespace(t *testing.T) {
	e := newRawEndpoint(t, 0, func(path string) []string {
		switch path {
		case "/space":
			return []string{"HTTP/1.1 200 OK\r\nX-Spaced : yes\r\nContent-Length: 2\r\n\r\nok"}
		case "/length":
			return []string{"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"}
		}
		return []string{okAnswer("ok")}
	})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: e.addr}))
	addr := strings.TrimPrefix(url, "http://")
	for _, pragma := range []string{"", "Pragma: no-cache\r\n"} {
		before := e.heads()
		for _, req := range []string{
			"POST /te HTTP/1.1\r\nHost: x\r\n" + pragma + "Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\nabcd",
			"GET /name HTTP/1.1\r\nHost: x\r\n" + pragma + "X-Name\t: v\r\n\r\n",
			"GET /host HTTP/1.1\r\nHost: a b\r\n" + pragma + "\r\n",
		} {
			if got := rawAnswer(t, addr, req); !strings.HasPrefix(got, "HTTP/1.1 400 ") {
				t.Errorf("%q answered %q, want 400", req, got)
			}
		}
		if heads := e.heads(); heads != before {
			t.Fatalf("the endpoint got %q, want nothing", heads[len(before):])
		}
		got := rawAnswer(t, addr, "GET /space HTTP/1.1\r\nHost: x\r\n"+pragma+"Connection: close\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 200 ") || !strings.Contains(got, "\r\nX-Spaced: yes\r\n") {
			t.Errorf("answer with X-Spaced : yes relayed as %q, want 200 with X-Spaced: yes", got)
		}
		got = rawAnswer(t, addr, "GET /length HTTP/1.1\r\nHost: x\r\n"+pragma+"Connection: close\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 502 ") {
			t.Errorf("answer with Content-Length : 2 relayed as %q, want 502", got)
		}
	}
}

// TestHTTPProxyContentLengthAndChunked: RFC 9112, 6.1. A request with both Transfer-Encoding and
// Content-Length (or Transfer-Encoding in HTTP/1.0) has its body read as chunked, and its
// connection closes after the answer (which says so): a request smuggled after the body, as a
// client that framed it by Content-Length sees it, is not served.
func TestHTTPProxyContentLengthAndChunked(t *testing.T) {
	e := newRawEndpoint(t, 0, func(path string) []string { return []string{okAnswer("answer for " + path)} })
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: e.addr}))
	addr := strings.TrimPrefix(url, "http://")
	for _, req := range []string{
		"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
		"POST /body HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
	} {
		got := rawAnswer(t, addr, req+"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
		if n := strings.Count(got, "HTTP/1.1 "); n != 1 || !strings.Contains(got, "\r\nConnection: close\r\n") ||
			strings.Contains(got, "smuggled") {
			t.Errorf("%q answered %q; want one answer with Connection: close, then the end of the connection", req, got)
		}
	}
	// Either alone keeps the connection.
	got := rawAnswer(t, addr, "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.Contains(got, "answer for /next") {
		t.Errorf("a chunked request and the next one answered %q, want both answered", got)
	}
}

// drainProxy runs an HTTPProxy with one event loop (or none, on the goroutine path run) in front
// of the endpoint at addr, until cancel; done tells how Run ended. dial connects a client to it.
func drainProxy(t *testing.T, addr string) (dial func() (net.Conn, *bufio.Reader), cancel func(), done <-chan error) {
	t.Helper()
	c, err := ambassador.NewCluster(ambassador.NewStatic(ambassador.Endpoint{Addr: addr}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ambassador.NewHTTPProxy("127.0.0.1:0", c, withPath([]ambassador.Option{ambassador.WithEventLoops(1)})...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- p.Run(ctx) }()
	<-p.Ready()
	return func() (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		return conn, bufio.NewReader(conn)
	}, cancel, ended
}

// TestHTTPProxyDrainSaysClose: an answer written once shutdown has begun says Connection: close,
// and its connection closes after it, so that a keep-alive client does not send its next request
// into a connection about to close; idle keep-alive connections are closed. On the event loop
// and on the goroutine path (Pragma).
func TestHTTPProxyDrainSaysClose(t *testing.T) {
	for _, pragma := range []string{"", "Pragma: no-cache\r\n"} {
		arrived, release := make(chan struct{}, 1), make(chan struct{})
		e := newRawEndpoint(t, 0, func(path string) []string {
			if path == "/slow" {
				arrived <- struct{}{}
				<-release
			}
			return []string{okAnswer("answer for " + path)}
		})
		var once sync.Once
		unblock := func() { once.Do(func() { close(release) }) }
		t.Cleanup(unblock) // before the endpoint's cleanup waits for its connections
		dial, cancel, done := drainProxy(t, e.addr)
		idle, idleBR := dial()
		busy, busyBR := dial()
		fmt.Fprintf(idle, "GET /fast HTTP/1.1\r\nHost: x\r\n%s\r\n", pragma)
		if resp, err := http.ReadResponse(idleBR, nil); err != nil || resp.Close {
			t.Fatalf("before shutdown: %v, close %v; want a keep-alive answer", err, resp != nil && resp.Close)
		} else {
			io.Copy(io.Discard, resp.Body)
		}
		fmt.Fprintf(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n%s\r\n", pragma)
		<-arrived
		cancel()
		if n, err := idleBR.Read(make([]byte, 1)); err == nil {
			t.Errorf("Pragma %q: the idle connection read %d bytes during shutdown, want it closed", pragma, n)
		}
		unblock() // shutdown has begun: the idle connection is closed
		resp, err := http.ReadResponse(busyBR, nil)
		if err != nil {
			t.Fatalf("Pragma %q: the answer in flight at shutdown: %v", pragma, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !resp.Close || string(body) != "answer for /slow" {
			t.Errorf("Pragma %q: the answer in flight at shutdown = %q, Connection %q; want its body and Connection: close",
				pragma, body, resp.Header.Get("Connection"))
		}
		if n, err := busyBR.Read(make([]byte, 1)); err == nil {
			t.Errorf("Pragma %q: read %d bytes after the last answer, want the connection closed", pragma, n)
		}
		idle.Close()
		busy.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestHTTPProxyStalledBodyCut: an endpoint that stops sending mid-body (3 bytes of 100, then
// nothing) has its answer cut after the body idle timeout (the per-try timeout, 15s here, bounds
// only the wait for the head): the client gets what came and then the end of its connection, not
// a wait forever. On the event loop and on the goroutine path.
func TestHTTPProxyStalledBodyCut(t *testing.T) {
	e := newRawEndpoint(t, 0, func(string) []string { // then it waits for the next request
		return []string{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"}
	})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: e.addr}),
		ambassador.WithBodyIdleTimeout(300*time.Millisecond))
	for _, pragma := range []string{"", "Pragma: no-cache\r\n"} {
		got, took, err := rawGet(t, url, "GET /stall HTTP/1.1\r\nHost: x\r\n"+pragma+"\r\n")
		if err != nil || !strings.HasPrefix(got, "HTTP/1.1 200 ") || !strings.HasSuffix(got, "\r\n\r\nabc") {
			t.Errorf("Pragma %q: read %q, %v after %v; want the head and abc, then the end of the connection", pragma, got, err, took)
		}
	}
}

// TestHTTPProxyStreamGapServed: a stream whose endpoint pauses 1s between parts, longer than the
// per-try timeout (0.5s) but within the body idle timeout (default 60s), reaches the client
// whole, with a Content-Length body and a chunked one, on the event loop and on the goroutine
// path: the per-try timeout bounds the wait for the head, not the gaps of a server-sent events
// stream or a long poll.
func TestHTTPProxyStreamGapServed(t *testing.T) {
	e := newRawEndpoint(t, time.Second, func(path string) []string {
		if path == "/chunked" {
			return []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "3\r\ndef\r\n0\r\n\r\n"}
		}
		return []string{"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nabc", "def"}
	})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: e.addr}),
		ambassador.WithPerTryTimeout(500*time.Millisecond))
	for _, path := range []string{"/length", "/chunked"} {
		for _, pragma := range []string{"", "Pragma: no-cache\r\n"} {
			got, took, err := rawGet(t, url, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"+pragma+"\r\n")
			var body []byte
			resp, rerr := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if rerr == nil {
				body, rerr = io.ReadAll(resp.Body)
			}
			if err != nil || rerr != nil || resp.StatusCode != 200 || string(body) != "abcdef" {
				t.Errorf("%s, Pragma %q: read %q (%v) after %v, body %q (%v); want a 200 with the body abcdef", path, pragma, got, err, took, body, rerr)
			}
		}
	}
}

// rawGet sends req on a connection of its own to the proxy at url and reads until the proxy
// closes it (or 5s pass); it returns what it read, how long it took and the read's error.
func rawGet(t *testing.T, url, req string) (string, time.Duration, error) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	return string(got), time.Since(start), err
}

// TestHTTPProxySlowClientNotCut: a client that takes its answer slowly (it reads nothing for 1s,
// while the endpoint has sent the whole 8 MiB body at once) gets it whole under a body idle
// timeout of 0.3s: the bound is for the endpoint's silence, and this endpoint has said all. With
// a Content-Length body and a chunked one of small chunks, on the event loop and on the
// goroutine path.
func TestHTTPProxySlowClientNotCut(t *testing.T) {
	const size = 8 << 20
	want := strings.Repeat("0123456789", size/10)
	var chunked strings.Builder
	chunked.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
	for i := 0; i < len(want); i += 10 {
		chunked.WriteString("a\r\n" + want[i:i+10] + "\r\n")
	}
	chunked.WriteString("0\r\n\r\n")
	e := newRawEndpoint(t, 0, func(path string) []string {
		if path == "/chunked" {
			return []string{chunked.String()}
		}
		return []string{okAnswer(want)}
	})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: e.addr}),
		ambassador.WithBodyIdleTimeout(300*time.Millisecond))
	for _, path := range []string{"/length", "/chunked"} {
		for _, pragma := range []string{"", "Pragma: no-cache\r\n"} {
			c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n", path, pragma)
			time.Sleep(time.Second) // the client's slowness under test, not a wait for the proxy
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var body []byte
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				body, err = io.ReadAll(resp.Body)
			}
			c.Close()
			if err != nil || len(body) != len(want) || string(body) != want {
				t.Errorf("%s, Pragma %q: read %d bytes of %d, %v; want the body whole", path, pragma, len(body), len(want), err)
			}
		}
	}
}

// TestHTTPProxyDrainServesPipelined: requests a client pipelined before shutdown began are all
// answered, and only the answer to the last of them says Connection: close; then the connection
// closes. Three requests in one write, the first held at the endpoint when shutdown begins: GETs
// on the event loop, POSTs with a body (which the client cannot safely retry) on the goroutine path
// (Pragma).
func TestHTTPProxyDrainServesPipelined(t *testing.T) {
	for _, tc := range []struct{ method, body, pragma string }{
		{"GET", "", ""},
		{"POST", "payload", "Pragma: no-cache\r\n"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			arrived, release := make(chan struct{}, 1), make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if r.URL.Path == "/r0" {
					arrived <- struct{}{}
					<-release
				}
				io.WriteString(w, "answer for "+r.URL.Path+" "+string(body))
			}))
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			t.Cleanup(backend.Close)
			t.Cleanup(unblock) // before the backend's Close waits for its handlers
			dial, cancel, done := drainProxy(t, backend.Listener.Addr().String())
			// An idle connection on the same path, whose closing shows that shutdown has begun there.
			idle, idleBR := dial()
			fmt.Fprintf(idle, "GET /idle HTTP/1.1\r\nHost: x\r\n%s\r\n", tc.pragma)
			if resp, err := http.ReadResponse(idleBR, nil); err != nil {
				t.Fatal(err)
			} else {
				io.Copy(io.Discard, resp.Body)
			}
			busy, busyBR := dial()
			var reqs strings.Builder
			for i := range 3 {
				fmt.Fprintf(&reqs, "%s /r%d HTTP/1.1\r\nHost: x\r\n%s", tc.method, i, tc.pragma)
				if tc.body != "" {
					fmt.Fprintf(&reqs, "Content-Length: %d\r\n\r\n%s", len(tc.body), tc.body)
				} else {
					reqs.WriteString("\r\n")
				}
			}
			io.WriteString(busy, reqs.String()) // one write: all three are buffered at the proxy
			<-arrived
			cancel()
			if n, err := idleBR.Read(make([]byte, 1)); err == nil {
				t.Errorf("%s: the idle connection read %d bytes during shutdown, want it closed", tc.method, n)
			}
			unblock()
			for i := range 3 {
				resp, err := http.ReadResponse(busyBR, nil)
				if err != nil {
					t.Fatalf("%s: answer %d of 3 pipelined before shutdown: %v", tc.method, i, err)
				}
				body, _ := io.ReadAll(resp.Body)
				if want := fmt.Sprintf("answer for /r%d %s", i, tc.body); string(body) != want || resp.Close != (i == 2) {
					t.Errorf("%s: answer %d = %q, close %v; want %q, close only on the last",
						tc.method, i, body, resp.Close, want)
				}
			}
			if n, err := busyBR.Read(make([]byte, 1)); err == nil {
				t.Errorf("%s: read %d bytes after the last answer, want the connection closed", tc.method, n)
			}
			idle.Close()
			busy.Close()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
}
