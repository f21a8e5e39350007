//go:build linux

package ambassador

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/internal/loopback"
	"github.com/podblocks/podblocks/internal/uring/uringtest"
	"go.uber.org/zap/zaptest/observer"
)

// TestHTTPLoopSendRing serves requests on an event loop writing through io_uring and with
// write(2) alone: four keep-alive clients each make 100 GETs of bodies of varied sizes, and a
// client that waits before it reads a 4 MiB answer fills its socket buffers, so writes come back
// with EAGAIN and wait for EPOLLOUT. Every answer must arrive whole either way, and the counters
// must show which path the writes took.
func TestHTTPLoopSendRing(t *testing.T) {
	for _, tc := range sendRingCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			log := tc.setup(t)
			cl, err := NewCluster(NewStatic(Endpoint{Addr: sizedBackend(t)}))
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewHTTPProxy("127.0.0.1:0", cl, WithEventLoops(1), log)
			if err != nil {
				t.Fatal(err)
			}
			runProxy(t, p)
			base := "http://" + p.Addr().String() + "/"
			tr := &http.Transport{MaxIdleConnsPerHost: 4}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}

			var wg sync.WaitGroup
			errs := make(chan error, 5)
			for i := range 4 {
				wg.Go(func() {
					for j := range 100 {
						n := (i*37 + j*101) % 5000
						resp, err := c.Get(base + strconv.Itoa(n))
						if err != nil {
							errs <- err
							return
						}
						body, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, bytes.Repeat([]byte{'a' + byte(n%26)}, n)) {
							errs <- fmt.Errorf("client %d, GET /%d: %d, %d bytes, %v", i, n, resp.StatusCode, len(body), err)
							return
						}
					}
				})
			}
			wg.Go(func() {
				const n = 4 << 20
				resp, err := c.Get(base + strconv.Itoa(n))
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				time.Sleep(300 * time.Millisecond)
				body, err := io.ReadAll(resp.Body)
				if err != nil || !bytes.Equal(body, bytes.Repeat([]byte{'a' + byte(n%26)}, n)) {
					errs <- fmt.Errorf("GET /%d after a wait: %d bytes, %v", n, len(body), err)
				}
			})
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			writes := statuszCount("writes through io_uring on event loops", p)
			enters := statuszCount("io_uring_enter calls on event loops", p)
			answered := answeredReaches(p, 4*100) // the last answers may be read before they are counted
			t.Logf("%d answered by the loop", answered)
			if answered < 4*100 {
				t.Errorf("%d requests answered by the event loop, want at least %d", answered, 4*100)
			}
			tc.check(t, writes, enters, 2*4*100, 1)
		})
	}
}

// TestHTTPLoopSendRingUnknownOutcome: should io_uring_enter fail after the kernel took a pass's
// writes, with their completions lost, whether their bytes went out is unknown: the sockets of
// those writes fail with EIO and are closed, not written again (the client would read an answer
// twice), and the loop writes with write(2) from then on. A client makes keep-alive GETs, each for
// a body of its own length; after 20 calls the hook makes the first call that writes to this
// client, drops the completions and fails. The client must read every answer it gets whole and
// once, then EOF, and a new connection must be served.
func TestHTTPLoopSendRingUnknownOutcome(t *testing.T) {
	if why := uringtest.Probe(); why != "" {
		t.Skip("io_uring unavailable: " + why)
	}
	var clientPort atomic.Int64 // the client's port: the hook fails a call that writes to it
	calls, failed := uringtest.LoseCompletions(t, 20, func(fds []int) bool {
		for _, fd := range fds {
			sa, _ := syscall.Getpeername(fd)
			if a, ok := sa.(*syscall.SockaddrInet4); ok && int64(a.Port) == clientPort.Load() {
				return true
			}
		}
		return false
	})
	core, logs := observer.New(zap.InfoLevel)
	cl, err := NewCluster(NewStatic(Endpoint{Addr: sizedBackend(t)}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewHTTPProxy("127.0.0.1:0", cl, WithEventLoops(1), WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	runProxy(t, p)
	get := func(n int) (int, error) {
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clientPort.Store(int64(c.LocalAddr().(*net.TCPAddr).Port))
		c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		for j := range n {
			size := 100 + j
			if _, err := fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", size); err != nil {
				return j, err
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return j, err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, bytes.Repeat([]byte{'a' + byte(size%26)}, size)) {
				t.Fatalf("GET /%d: %d, %d bytes %.10q, %v", size, resp.StatusCode, len(body), body, err)
			}
		}
		return n, nil
	}
	j, err := get(100)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || failed.Load() == 0 {
		t.Fatalf("the connection when io_uring_enter failed: %d answers, then %v (%d calls chosen to fail); want an error that is not a timeout, after a failure",
			j, err, failed.Load())
	}
	t.Logf("the connection ended after %d answers: %v", j, err)
	n := calls.Load()
	if j, err := get(50); err != nil {
		t.Fatalf("a new connection after the failure: %d answers, then %v", j, err)
	}
	if f := logs.FilterMessageSnippet("io_uring_enter failed").Len(); f != 1 || calls.Load() != n {
		t.Errorf("%d failures logged, %d io_uring_enter calls after the failure; want 1, 0 (write(2) from the failure on)", f, calls.Load()-n)
	}
}

// sizedBackend serves GET /n with n bytes, each 'a'+n%26, until the test ends, and returns its address.
func sizedBackend(t *testing.T) string {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(bytes.Repeat([]byte{'a' + byte(n%26)}, n))
	}))
	t.Cleanup(backend.Close)
	return strings.TrimPrefix(backend.URL, "http://")
}

// TestLoopsYieldBeforeBlocking: with a connection open, an event loop that finds nothing ready
// yields the CPU and polls again (pollYields times) before it blocks in epoll_wait, the HTTP loops
// as the TCP loops; with none open it blocks at once, so an idle proxy does not spin. A client makes
// 20 keep-alive exchanges through each proxy and stays connected: the loop, finding nothing more to
// do, must yield pollYields times (again after each timed wait for its sweep). Once the client has
// gone, the count must stay still.
func TestLoopsYieldBeforeBlocking(t *testing.T) {
	var yields atomic.Int64
	yield := schedYield
	t.Cleanup(func() { schedYield = yield })
	schedYield = func() {
		yields.Add(1)
		yield()
	}
	cl, err := NewCluster(NewStatic(Endpoint{Addr: sizedBackend(t)}))
	if err != nil {
		t.Fatal(err)
	}
	hp, err := NewHTTPProxy("127.0.0.1:0", cl, WithEventLoops(1))
	if err != nil {
		t.Fatal(err)
	}
	runProxy(t, hp)
	tcl, err := NewCluster(NewStatic(Endpoint{Addr: echoServer(t)}))
	if err != nil {
		t.Fatal(err)
	}
	tp := runTCPProxy(t, tcl)

	for _, tc := range []struct {
		name     string
		addr     string
		exchange func(c net.Conn, br *bufio.Reader) error
	}{
		{"HTTP", hp.Addr().String(), func(c net.Conn, br *bufio.Reader) error {
			if _, err := io.WriteString(c, "GET /10 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(io.Discard, resp.Body)
			return err
		}},
		{"TCP", tp.Addr().String(), func(c net.Conn, br *bufio.Reader) error {
			if _, err := io.WriteString(c, "ping\n"); err != nil {
				return err
			}
			_, err := br.ReadString('\n')
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			before := yields.Load()
			for range 20 {
				if err := tc.exchange(c, br); err != nil {
					t.Fatal(err)
				}
			}
			for deadline := time.Now().Add(5 * time.Second); yields.Load()-before < pollYields; {
				if time.Now().After(deadline) {
					t.Fatalf("%d yields in 5 s with a client connected, want at least %d", yields.Load()-before, pollYields)
				}
				time.Sleep(10 * time.Millisecond)
			}
			c.Close()
			// The loop sees the close, then its count stops; from then on it must stay still.
			last := yields.Load()
			for deadline := time.Now().Add(5 * time.Second); ; last = yields.Load() {
				time.Sleep(50 * time.Millisecond)
				if yields.Load() == last {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the loop still yields 5 s after its only client left (%d yields)", yields.Load())
				}
			}
			time.Sleep(200 * time.Millisecond)
			if n := yields.Load() - last; n != 0 {
				t.Errorf("%d yields in 200 ms with no client connected, want 0", n)
			}
		})
	}
}

// cannedHeads answers each request on a connection with the head its path names (the same bytes
// for GET and HEAD) and, but for HEAD, the 6-byte body "hello\n", after which it closes the
// connection if the head has no Content-Length. It reads requests raw and allocates nothing per
// request.
func cannedHeads(t *testing.T, heads map[string]string) string {
	addr, _ := cannedCounted(t, heads)
	return addr
}

// cannedCounted is cannedHeads that also returns the count of connections it accepted.
func cannedCounted(t *testing.T, heads map[string]string) (string, *atomic.Int64) {
	type answer struct {
		head, full []byte // to HEAD, to others
		closes     bool   // the body is delimited by the connection's close
	}
	answers := map[string]answer{}
	for path, h := range heads {
		answers[path] = answer{[]byte(h), []byte(h + "hello\n"), !strings.Contains(h, "Content-Length")}
	}
	accepted := new(atomic.Int64)
	return loopback.Serve(t, func(_ int, c net.Conn) {
		accepted.Add(1)
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadSlice('\n') // "METHOD /path[?query] HTTP/1.1"
			if err != nil {
				return
			}
			method, rest, _ := bytes.Cut(line, []byte(" "))
			target, _, _ := bytes.Cut(rest, []byte(" "))
			path, _, _ := bytes.Cut(target, []byte("?"))
			a, ok := answers[string(path)]
			for ok && len(line) != 2 { // the rest of the head, to its blank line
				if line, err = br.ReadSlice('\n'); err != nil {
					return
				}
			}
			if !ok {
				return
			}
			out, head := a.full, string(method) == http.MethodHead
			if head {
				out = a.head
			}
			if _, err := c.Write(out); err != nil || (!head && a.closes) {
				return
			}
		}
	}), accepted
}

// cannedClient runs an HTTPProxy on one event loop (unless opts say otherwise) over
// cannedHeads(heads) until the test ends, and returns it with a client connection to it (closed
// when the test ends, within 20 s from now) and the connection's reader.
func cannedClient(t *testing.T, heads map[string]string, opts ...Option) (*HTTPProxy, net.Conn, *bufio.Reader) {
	t.Helper()
	return proxyClient(t, cannedHeads(t, heads), opts...)
}

// proxyClient is cannedClient over the endpoint at addr.
func proxyClient(t *testing.T, addr string, opts ...Option) (*HTTPProxy, net.Conn, *bufio.Reader) {
	t.Helper()
	cl, err := NewCluster(NewStatic(Endpoint{Addr: addr}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewHTTPProxy("127.0.0.1:0", cl, append([]Option{WithEventLoops(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	runProxy(t, p)
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return p, c, bufio.NewReader(c)
}

// answeredReaches waits up to 5 s for p's event loops to count want answers (a loop counts an
// answer once it has written it: the client may have read it first) and returns the count.
func answeredReaches(p *HTTPProxy, want int64) int64 {
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := statuszCount("answered by event loops", p)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHTTPLoopAllocs pins what an event loop allocates for a request of the common shape on a
// keep-alive connection: nothing. The request head, the same bytes as the last on its client
// connection, is parsed from the last one's string (reqState.text); the response head, the same
// bytes as the last on its upstream connection, is not parsed again (parseHead).
func TestHTTPLoopAllocs(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nServer: canned\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n"
	p, c, br := cannedClient(t, map[string]string{"/index.html": head})
	req := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n")
	body := make([]byte, 6)
	var failed error
	get := func() { // reads raw, as BenchmarkHTTPProxyRequest: the client allocates nothing
		if failed != nil {
			return
		}
		if _, failed = c.Write(req); failed != nil {
			return
		}
		line, err := br.ReadSlice('\n')
		if err != nil || !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
			failed = fmt.Errorf("status line %q: %v", line, err)
			return
		}
		for len(line) != 2 {
			if line, failed = br.ReadSlice('\n'); failed != nil {
				return
			}
		}
		if _, err := io.ReadFull(br, body); err != nil || string(body) != "hello\n" {
			failed = fmt.Errorf("body %q: %v", body, err)
		}
	}
	for range 10 {
		get()
	}
	n := testing.AllocsPerRun(200, get)
	t.Logf("%v allocations per request", n)
	if failed != nil {
		t.Fatal(failed)
	}
	if answered := answeredReaches(p, 211); answered != 211 { // AllocsPerRun runs get once more
		t.Fatalf("%d requests answered by the event loop, want 211", answered)
	}
	if n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
}

// TestHTTPLoopResponseHeadReuse: a response head is parsed again unless its bytes and its
// request's method are the last one's on the upstream connection, and the head relayed is made
// again unless the client's wish to close is the same too. Clients make GETs and HEADs, one at a
// time (the loop keeps one upstream connection), for heads that differ in one header, each the
// same bytes for GET and HEAD: every answer must carry its own head's header, a HEAD's answer no
// body even after a GET's of the same head (and a GET's its body after a HEAD's), an answer to a
// "Connection: close" request that header (and then the end of the connection) though the last
// answer of the same head did not, and the next keep-alive answer not. Last, a head without
// Content-Length: simple for HEAD, but for GET a body delimited by the connection's close, which
// the loop hands to the goroutine path (were the HEAD's parse reused for the GET, the loop would
// take the body for one of length -1).
func TestHTTPLoopResponseHeadReuse(t *testing.T) {
	heads := map[string]string{
		"/a": "HTTP/1.1 200 OK\r\nX-Head: a\r\nContent-Length: 6\r\n\r\n",
		"/b": "HTTP/1.1 200 OK\r\nX-Head: b\r\nContent-Length: 6\r\n\r\n",
		"/c": "HTTP/1.1 200 OK\r\nX-Head: c\r\n\r\n",
	}
	p, c0, br0 := cannedClient(t, heads)
	conns := []net.Conn{c0, nil, nil}
	brs := []*bufio.Reader{br0, nil, nil}
	steps := []struct {
		conn         int
		method, path string
		close        bool
	}{
		{0, "GET", "/a", false}, {0, "GET", "/a", false}, {0, "HEAD", "/a", false}, {0, "HEAD", "/a", false},
		{0, "GET", "/a", false}, {0, "GET", "/b", false}, {0, "GET", "/a", false}, {0, "HEAD", "/b", false},
		{0, "GET", "/b", false}, {0, "GET", "/b", false},
		{1, "GET", "/b", true}, {2, "GET", "/b", false}, {2, "GET", "/b", false},
		{0, "HEAD", "/c", false}, {0, "GET", "/c", false},
	}
	for i, st := range steps {
		if conns[st.conn] == nil {
			c, err := net.Dial("tcp", p.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			c.SetDeadline(time.Now().Add(10 * time.Second))
			conns[st.conn], brs[st.conn] = c, bufio.NewReader(c)
		}
		c, br := conns[st.conn], brs[st.conn]
		req, err := http.NewRequest(st.method, "http://x"+st.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		closing := map[bool]string{true: "Connection: close\r\n"}[st.close]
		if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n", st.method, st.path, closing); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("step %d, %s %s: %v", i, st.method, st.path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := map[bool]string{true: "", false: "hello\n"}[st.method == "HEAD"]
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Head") != st.path[1:] || string(body) != want || resp.Close != st.close {
			t.Fatalf("step %d, %s %s: %d, X-Head %q, body %q, close %v, %v; want 200, %q, %q, close %v",
				i, st.method, st.path, resp.StatusCode, resp.Header.Get("X-Head"), body, resp.Close, err, st.path[1:], want, st.close)
		}
		if st.close {
			if n, err := br.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("step %d: read after the answer to a close = %d, %v; want EOF", i, n, err)
			}
		}
	}
	if answered := answeredReaches(p, int64(len(steps)-1)); answered != int64(len(steps)-1) {
		t.Errorf("%d requests answered by the event loop, want %d (all but the last)", answered, len(steps)-1)
	}
}

// TestHTTPLoopNoBodyStatusLength: an answer with no body by its status (204, 304) whose endpoint
// sent no Content-Length is relayed without one, on the event loop and on the goroutine path: a
// 204 must not carry the header (RFC 9110, 8.6), and a 304's, when sent, is the length of the
// representation the client has, not 0. One the endpoint sent is relayed as it is; HEAD's too.
func TestHTTPLoopNoBodyStatusLength(t *testing.T) {
	heads := map[string]string{
		"/204":    "HTTP/1.1 204 No Content\r\nX-Head: 204\r\n\r\n",
		"/304":    "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\n\r\n",
		"/304-cl": "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\nContent-Length: 6\r\n\r\n",
	}
	steps := []struct{ method, path, length string }{
		{"GET", "/204", ""}, {"GET", "/304", ""}, {"GET", "/304-cl", "6"},
		{"HEAD", "/204", ""}, {"HEAD", "/304", ""}, {"HEAD", "/304-cl", "6"},
	}
	for _, loops := range []int{1, 0} {
		t.Run(fmt.Sprintf("loops=%d", loops), func(t *testing.T) {
			p, c, br := cannedClient(t, heads, WithEventLoops(loops))
			for i, st := range steps {
				if _, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", st.method, st.path); err != nil {
					t.Fatal(err)
				}
				var length []string
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						t.Fatalf("step %d, %s %s: %v", i, st.method, st.path, err)
					}
					if line == "\r\n" {
						break
					}
					if k, v, _ := strings.Cut(line, ":"); strings.EqualFold(k, "Content-Length") {
						length = append(length, strings.TrimSpace(v))
					}
				}
				var want []string
				if st.length != "" {
					want = []string{st.length}
				}
				if strings.Join(length, ",") != strings.Join(want, ",") || len(length) != len(want) {
					t.Errorf("step %d, %s %s: Content-Length %q, want %q", i, st.method, st.path, length, want)
				}
			}
			want := int64(len(steps) * loops)
			if answered := answeredReaches(p, want); answered != want {
				t.Errorf("%d requests answered by the event loop, want %d", answered, want)
			}
		})
	}
}

// TestHTTPKeepAlive10: an HTTP/1.0 request with a keep-alive token in Connection (any case, among
// other tokens) is answered with Connection: keep-alive and its connection stays open, on the event
// loop and on the goroutine path alike, for relayed answers and the proxy's own errors; one
// without is answered with Connection: close and its connection closed; HTTP/1.1 answers carry no
// Connection header. The requests alternate between the kinds on one upstream connection, whose
// relayed head the event loop caches (one connection until /gone, which the endpoint closes): a
// head made for one kind of client never goes to another.
func TestHTTPKeepAlive10(t *testing.T) {
	const head = "HTTP/1.1 200 OK\r\nServer: canned\r\nContent-Length: 6\r\n\r\n"
	steps := []struct {
		path, proto, conn string // conn: the request's Connection header, if any
		status            int
		want              []string // the answer's Connection headers
		closes            bool     // the proxy closes the connection after the answer
	}{
		{"/a", "HTTP/1.1", "", 200, nil, false},
		{"/a", "HTTP/1.0", "keep-alive", 200, []string{"keep-alive"}, false},
		{"/a", "HTTP/1.1", "", 200, nil, false},
		{"/a", "HTTP/1.0", "Keep-Alive, foo", 200, []string{"keep-alive"}, false},
		{"/a", "HTTP/1.0", "foo ,KEEP-ALIVE", 200, []string{"keep-alive"}, false},
		{"/a", "HTTP/1.1", "keep-alive", 200, nil, false},
		{"/a", "HTTP/1.0", "keep-alive", 200, []string{"keep-alive"}, false},
		{"/gone", "HTTP/1.0", "keep-alive", http.StatusBadGateway, []string{"keep-alive"}, false},
		{"/a", "HTTP/1.0", "keep-alive", 200, []string{"keep-alive"}, false},
		{"/a", "HTTP/1.0", "", 200, []string{"close"}, true},
	}
	for _, loops := range []int{1, 0} {
		t.Run(fmt.Sprintf("loops=%d", loops), func(t *testing.T) {
			addr, accepted := cannedCounted(t, map[string]string{"/a": head})
			p, c, br := proxyClient(t, addr, WithEventLoops(loops), WithRetries(0))
			for i, st := range steps {
				if n := accepted.Load(); st.path == "/gone" && n != 1 {
					t.Fatalf("step %d: %d upstream connections so far, want 1", i, n)
				}
				req := "GET " + st.path + " " + st.proto + "\r\nHost: x\r\n"
				if st.conn != "" {
					req += "Connection: " + st.conn + "\r\n"
				}
				if _, err := io.WriteString(c, req+"\r\n"); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				status, conn, err := readTestAnswer(br)
				if err != nil {
					t.Fatalf("step %d, %s %s %q: %v", i, st.path, st.proto, st.conn, err)
				}
				if status != st.status {
					t.Errorf("step %d, %s %s %q: status %d, want %d", i, st.path, st.proto, st.conn, status, st.status)
				}
				if d := cmp.Diff(st.want, conn); d != "" {
					t.Errorf("step %d, %s %s %q: Connection (-want +got):\n%s", i, st.path, st.proto, st.conn, d)
				}
				if st.closes {
					if b, err := br.ReadByte(); err != io.EOF {
						t.Errorf("step %d: read %q, %v after the answer; want io.EOF", i, b, err)
					}
				}
			}
			want := int64(len(steps) * loops)
			if answered := answeredReaches(p, want); answered != want {
				t.Errorf("%d requests answered by the event loop, want %d", answered, want)
			}
		})
	}
}

// readTestAnswer reads an answer with a Content-Length from br and returns its status and Connection
// header values.
func readTestAnswer(br *bufio.Reader) (status int, conn []string, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, nil, err
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, nil, fmt.Errorf("status line %q", line)
	}
	if status, err = strconv.Atoi(f[1]); err != nil {
		return 0, nil, fmt.Errorf("status line %q", line)
	}
	length := -1
	for {
		if line, err = br.ReadString('\n'); err != nil {
			return 0, nil, err
		}
		if line == "\r\n" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch http.CanonicalHeaderKey(k) {
		case "Connection":
			conn = append(conn, v)
		case "Content-Length":
			if length, err = strconv.Atoi(v); err != nil {
				return 0, nil, fmt.Errorf("header %q", line)
			}
		}
	}
	if length < 0 {
		return 0, nil, errors.New("no Content-Length")
	}
	_, err = br.Discard(length)
	return status, conn, err
}

// ringlessLoop is a loop for makeLoops whose ring failed with err (nil: it has one).
type ringlessLoop struct{ err error }

func (l ringlessLoop) shut() []msg     { return nil }
func (l ringlessLoop) setupErr() error { return l.err }

// TestMakeLoopsLogsRingless: loops without a ring are logged once, with the first one's error,
// whichever loop it is: a ring may fail for a while (EMFILE) in a later loop only.
func TestMakeLoopsLogsRingless(t *testing.T) {
	emfile := errors.New("io_uring_setup: too many open files")
	for _, tc := range []struct {
		name string
		errs []error
		want []string
	}{
		{"all rings", []error{nil, nil, nil}, nil},
		{"no ring", []error{emfile, emfile, emfile}, []string{"fallback: " + emfile.Error()}},
		{"a later loop without", []error{nil, emfile, nil}, []string{"fallback: " + emfile.Error()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			i := 0
			all, err := makeLoops(len(tc.errs), func() (ringlessLoop, error) {
				i++
				return ringlessLoop{tc.errs[i-1]}, nil
			}, zap.New(core), "fallback: ")
			if err != nil || len(all) != len(tc.errs) {
				t.Fatalf("makeLoops: %d loops, %v; want %d", len(all), err, len(tc.errs))
			}
			var got []string
			for _, e := range logs.All() {
				got = append(got, e.Message)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("logged (-want +got):\n%s", d)
			}
		})
	}
}
