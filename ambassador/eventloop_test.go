package ambassador_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
	"github.com/podblocks/podblocks/internal/loopback"
)

// pathEnv picks the HTTPProxy serving path the tests run on: unset, the event loops (the
// default); "0", the goroutine path alone (TestHTTPProxyGoroutinePath re-runs the HTTPProxy
// tests so).
const pathEnv = "AMBASSADOR_TEST_EVENT_LOOPS"

func goroutinePathOnly() bool { return os.Getenv(pathEnv) == "0" }

// withPath adds the option for the serving path under test to opts.
func withPath(opts []ambassador.Option) []ambassador.Option {
	if goroutinePathOnly() {
		return append(opts[:len(opts):len(opts)], ambassador.WithEventLoops(0))
	}
	return opts
}

// TestHTTPProxyGoroutinePath runs every HTTPProxy test again with the event loops off, so the
// goroutine path, which serves every request the loops hand over, is tested whole on its own.
func TestHTTPProxyGoroutinePath(t *testing.T) {
	if goroutinePathOnly() {
		t.Skip("this is the goroutine path run")
	}
	rerunOnGoroutinePath(t, pathEnv, "^(TestHTTPProxy|FuzzHTTPProxy)",
		"TestHTTPProxyForwards", "TestHTTPProxyServingPath", "FuzzHTTPProxyRequest")
}

// rerunOnGoroutinePath runs the tests matching pattern in a child test binary with env=0 (the
// event loops off) and fails unless the run passes, naming each test of want as passed.
func rerunOnGoroutinePath(t *testing.T, env, pattern string, want ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", pattern, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s on the goroutine path: %v\n%s", pattern, err, out)
	}
	for _, name := range want {
		if !strings.Contains(string(out), "--- PASS: "+name) {
			t.Errorf("goroutine path run lacks a pass of %s:\n%s", name, out)
		}
	}
}

// statusz returns a row of a proxy's Statusz table.
func statusz(t *testing.T, p interface {
	Statusz() (string, []string, [][]string)
}, key string) int64 {
	t.Helper()
	_, _, rows := p.Statusz()
	for _, r := range rows {
		if r[0] == key {
			n, err := strconv.ParseInt(r[1], 10, 64)
			if err != nil {
				t.Fatalf("statusz %q = %q", key, r[1])
			}
			return n
		}
	}
	t.Fatalf("statusz has no %q", key)
	return 0
}

// statuszReaches polls a row of the proxy's Statusz table until it is want or 5 seconds have
// passed, and returns its last value: a loop counts an answer after writing it, so the client can
// have it before the count moves.
func statuszReaches(t *testing.T, p *ambassador.HTTPProxy, key string, want int64) int64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := statusz(t, p, key)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(time.Millisecond)
	}
}

const (
	loopAnswered = "answered by event loops"
	loopHanded   = "handed to goroutines by event loops"
)

// TestHTTPProxyServingPath: the path under test is the one that serves.
func TestHTTPProxyServingPath(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	p, _, url := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()))
	c := client(t)
	for range 3 {
		if code, body := get(t, c, url); code != 200 || body != "b\n" {
			t.Fatalf("GET = %d %q", code, body)
		}
	}
	if goroutinePathOnly() || runtime.GOOS != "linux" {
		if got := statusz(t, p, loopAnswered); got != 0 {
			t.Errorf("event loops answered %d requests with the loops off", got)
		}
	} else if got := statuszReaches(t, p, loopAnswered, 3); got != 3 {
		t.Errorf("event loops answered %d requests, want 3", got)
	}
}

// TestHTTPProxyDefaultEventLoops: without WithEventLoops an HTTPProxy serves on one event loop per
// two Ps (at least one), so that each loop's thread finds a CPU when its connections have bytes.
func TestHTTPProxyDefaultEventLoops(t *testing.T) {
	if runtime.GOOS != "linux" || goroutinePathOnly() {
		t.Skip("event loops are Linux only, and off in this run")
	}
	b := ambassadortest.NewHTTPBackend(t, "b")
	for _, tc := range []struct{ procs, want int64 }{{1, 1}, {2, 1}, {3, 2}, {4, 2}} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", tc.procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(int(tc.procs))) // read when Run starts
			p, _, _ := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()))
			if got := statusz(t, p, "event loops"); got != tc.want {
				t.Errorf("event loops at GOMAXPROCS=%d: %d, want %d", tc.procs, got, tc.want)
			}
		})
	}
}

// TestEventLoopHandsOver: requests and answers of another shape than the loops serve are handed
// to the goroutine path, before the request is sent (a body) or after (a chunked answer), and the
// client gets the same answers.
func TestEventLoopHandsOver(t *testing.T) {
	if runtime.GOOS != "linux" || goroutinePathOnly() {
		t.Skip("event loops are off")
	}
	b := ambassadortest.NewHTTPBackend(t, "b")
	chunked := loopback.Serve(t, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		}
	})
	p, _, url := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()), ambassador.WithEventLoops(1))
	c := client(t)
	if code, body := get(t, c, url); code != 200 || body != "b\n" {
		t.Fatalf("GET = %d %q", code, body)
	}
	if got := statuszReaches(t, p, loopAnswered, 1); got != 1 {
		t.Errorf("loop answered %d, want 1", got)
	}
	// A body: the connection goes to the goroutine path before anything is sent.
	resp, err := c.Post(url, "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "b\n" {
		t.Errorf("POST = %d %q", resp.StatusCode, body)
	}
	if got := statuszReaches(t, p, loopHanded, 1); got != 1 {
		t.Errorf("handed over %d connections, want 1", got)
	}

	// A chunked answer: handed over with the try in flight; the next request on the same
	// connection is served by the goroutine path too.
	cp, _, curl := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: chunked}), ambassador.WithEventLoops(1),
		ambassador.WithName("chunked"))
	conn, err := net.Dial("tcp", cp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i := range 2 {
		io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || string(body) != "abcde" {
			t.Errorf("answer %d = %d %q (%v), want 200 abcde", i, resp.StatusCode, body, err)
		}
	}
	if got, want := statuszReaches(t, cp, loopHanded, 1), int64(1); got != want {
		t.Errorf("handed over %d connections, want %d", got, want)
	}
	if code, body := get(t, c, curl); code != 200 || body != "abcde" {
		t.Errorf("GET chunked = %d %q", code, body)
	}
}

// TestHTTPProxyShutdownFinishesInFlight: a request in flight when Run's context ends is answered
// before Run returns.
func TestHTTPProxyShutdownFinishesInFlight(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	b.Set(ambassadortest.Behavior{Latency: 300 * time.Millisecond})
	cl, err := ambassador.NewCluster(ambassador.NewStatic(b.Endpoint()))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ambassador.NewHTTPProxy("127.0.0.1:0", cl, withPath(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	s := startStoppable(t, p)
	c := client(t)
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://" + p.Addr().String() + "/")
		if err != nil {
			res <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{resp.StatusCode, string(body), err}
	}()
	for deadline := time.Now().Add(10 * time.Second); b.Count() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request did not reach the backend")
		}
	}
	s.cancel() // Run's context ends while the request is in flight
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "b\n" {
		t.Errorf("request in flight at shutdown = %d %q (%v), want 200 b", r.code, r.body, r.err)
	}
	if !s.stop(t, 10*time.Second) {
		t.Fatal("Run did not return")
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(ents)
}

// TestHTTPProxyNoFDLeak: after serving requests of every path (answered by a loop, handed over
// before and during a try, failed) and stopping, the proxy holds no file descriptor.
func TestHTTPProxyNoFDLeak(t *testing.T) {
	before := openFDs(t)
	t.Run("traffic", func(t *testing.T) {
		b := ambassadortest.NewHTTPBackend(t, "b")
		down := ambassadortest.NewHTTPBackend(t, "down")
		down.Stop()
		chunked := loopback.Serve(t, func(_ int, c net.Conn) {
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")
			}
		})
		_, _, url := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint(), down.Endpoint()),
			ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: -1}))
		_, _, curl := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: chunked}), ambassador.WithName("chunked"))
		c := client(t)
		for range 10 {
			if code, _ := get(t, c, url); code != 200 {
				t.Errorf("GET = %d", code)
			}
		}
		resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if code, body := get(t, c, curl); code != 200 || body != "x" {
			t.Errorf("GET chunked = %d %q", code, body)
		}
	})
	fdsBackTo(t, before, func() {})
}

// TestHTTPProxyPipelinedSplitHead: a pipelined request whose head arrives in two parts, the second
// while the request before it is in flight, is answered at once, not after the header timeout.
func TestHTTPProxyPipelinedSplitHead(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	b.Set(ambassadortest.Behavior{Latency: 100 * time.Millisecond})
	p, _, _ := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()))
	conn, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetDeadline(start.Add(20 * time.Second))
	io.WriteString(conn, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HT")
	time.Sleep(30 * time.Millisecond)
	io.WriteString(conn, "TP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(conn)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "b\n" {
			t.Errorf("answer %d = %d %q", i, resp.StatusCode, body)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("two answers took %v, want about 200ms (not the 10s header timeout)", d)
	}
}

// TestHTTPProxyBareLFRequest: a request whose lines end in a bare LF (which net/http accepts) is
// answered at once, not dropped after the header timeout.
func TestHTTPProxyBareLFRequest(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	p, _, _ := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()))
	for _, head := range []string{"GET / HTTP/1.1\nHost: h\n\n", "GET / HTTP/1.1\r\nHost: h\r\n\n"} {
		conn, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		conn.SetDeadline(start.Add(20 * time.Second))
		io.WriteString(conn, head)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%q: no answer after %v: %v", head, time.Since(start).Round(time.Millisecond), err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != 200 || string(body) != "b\n" {
			t.Errorf("%q = %d %q, want 200 b", head, resp.StatusCode, body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%q answered after %v, want at once", head, d)
		}
	}
}

// TestHTTPProxyStopWithStalledStream: Run returns after its grace period even when an endpoint
// stalls in the middle of a streamed (chunked) answer that a client is reading.
func TestHTTPProxyStopWithStalledStream(t *testing.T) {
	upstream := make(chan net.Conn, 1)
	addr := loopback.Serve(t, func(_ int, c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		upstream <- c
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
		io.Copy(io.Discard, c) // stalls until the proxy (or the test) closes c
	})
	cl, err := ambassador.NewCluster(ambassador.NewStatic(ambassador.Endpoint{Addr: addr}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ambassador.NewHTTPProxy("127.0.0.1:0", cl, withPath(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	s := startStoppable(t, p)
	conn, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	io.WriteString(conn, "GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("first chunk = %q, %v", first, err)
	}
	up := <-upstream
	if !s.stop(t, 15*time.Second) {
		t.Error("Run did not return 15s after its context ended (grace period 10s)")
		up.Close() // the endpoint gives up, which lets Run return
		<-s.done
	}
}

// TestHTTPProxyEndpointClosesAfterAnswer: an endpoint that closes its connection right after an
// answer without saying so (no Connection: close) does not make the next, non-idempotent request
// fail with 502 when the proxy has seen the close.
func TestHTTPProxyEndpointClosesAfterAnswer(t *testing.T) {
	addr := loopback.Serve(t, func(_ int, c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
		c.(*net.TCPConn).CloseWrite()
		time.Sleep(20 * time.Millisecond) // the proxy has seen the FIN by now
	})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: addr}),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: -1}))
	c := client(t)
	bad := 0
	for range 20 {
		if code, _ := get(t, c, url); code != 200 {
			t.Fatalf("GET = %d", code)
		}
		time.Sleep(30 * time.Millisecond)
		resp, err := c.Post(url, "text/plain", strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of 20 POSTs after an answer whose connection the endpoint closed got an error, want 0", bad)
	}
}

// TestHTTPProxyBareLFResponse: an endpoint answer whose lines end in a bare LF (which net/http
// accepts) is relayed at once, not timed out.
func TestHTTPProxyBareLFResponse(t *testing.T) {
	addr := loopback.Serve(t, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\nContent-Length: 3\n\nok\n")
		}
	})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: addr}),
		ambassador.WithPerTryTimeout(3*time.Second), ambassador.WithRetries(0))
	start := time.Now()
	code, body := get(t, client(t), url)
	if code != 200 || body != "ok\n" {
		t.Errorf("GET = %d %q after %v, want 200 ok", code, body, time.Since(start).Round(time.Millisecond))
	}
}

// TestHTTPProxyKeyPanicKeepsServing: a KeyFunc that panics on one request costs that request its
// connection; the proxy keeps serving everyone else (as it does for a panicking handler).
func TestHTTPProxyKeyPanicKeepsServing(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	key := func(r *http.Request) uint64 {
		if r.Header.Get("X-Boom") != "" {
			panic("boom")
		}
		return 0
	}
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()), ambassador.WithKey(key))
	c := client(t)
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-Boom", "1")
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
	}
	if code, body := get(t, c, url); code != 200 || body != "b\n" {
		t.Errorf("GET after a KeyFunc panic = %d %q, want 200 b", code, body)
	}
}

// TestEventLoopBodyDepthAndFairness: relaying a large body does not nest a call per buffer read,
// and the loop answers another client meanwhile (the body flows at most passCap bytes a pass).
func TestEventLoopBodyDepthAndFairness(t *testing.T) {
	if runtime.GOOS != "linux" || goroutinePathOnly() {
		t.Skip("event loops are off")
	}
	const size = 512 << 20
	addr := loopback.Serve(t, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		chunk := make([]byte, 256<<10)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
		for n := 0; n < size; n += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	small := ambassadortest.NewHTTPBackend(t, "s")
	split := ambassador.Split{Header: "X-Small", HeaderValue: "1"}
	sc, err := ambassador.NewCluster(ambassador.NewStatic(small.Endpoint()), ambassador.WithName("small"))
	if err != nil {
		t.Fatal(err)
	}
	split.Cluster = sc
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: addr}), ambassador.WithEventLoops(1),
		ambassador.WithSplits(split))
	c := client(t)
	get(t, c, url+"/warm", "X-Small", "1")
	big, err := c.Get(url + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer big.Body.Close()
	done := make(chan int64)
	go func() { n, _ := io.Copy(io.Discard, big.Body); done <- n }()
	maxDepth, worst := 0, time.Duration(0)
	buf := make([]byte, 1<<20)
	for running := true; running; {
		select {
		case n := <-done:
			if n != size {
				t.Errorf("big body: %d bytes", n)
			}
			running = false
			continue
		default:
		}
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if d := strings.Count(g, "(*loop).readUp("); d > maxDepth {
				maxDepth = d
			}
		}
		start := time.Now()
		get(t, c, url+"/small", "X-Small", "1")
		worst = max(worst, time.Since(start))
	}
	// The small GETs' latency is logged, not bounded: it depends on the machine's load.
	t.Logf("deepest readUp nesting seen: %d; slowest small GET during the transfer: %v", maxDepth, worst)
	if maxDepth > 2 {
		t.Errorf("readUp nested %d deep while relaying a body", maxDepth)
	}
}
