package ambassador_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
	"github.com/podblocks/podblocks/internal/loopback"
)

func newHTTPProxy(t *testing.T, src ambassador.Source, opts ...ambassador.Option) (*ambassador.HTTPProxy, *ambassador.Cluster, string) {
	t.Helper()
	c, err := ambassador.NewCluster(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ambassador.NewHTTPProxy("127.0.0.1:0", c, withPath(opts)...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	return p, c, "http://" + p.Addr().String()
}

// TestHTTPProxyReadyAfterClusterLoaded checks the proxy is Ready only once its cluster's Run has
// taken the source's endpoints.
func TestHTTPProxyReadyAfterClusterLoaded(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	checkReadyAfterCluster(t, b.Endpoint(), func(c *ambassador.Cluster) (component, error) {
		return ambassador.NewHTTPProxy("127.0.0.1:0", c, withPath(nil)...)
	})
}

func client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPProxyForwards(t *testing.T) {
	b1, b2 := ambassadortest.NewHTTPBackend(t, "b1"), ambassadortest.NewHTTPBackend(t, "b2")
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(b1.Endpoint(), b2.Endpoint()))
	c := client(t)
	var bodies []string
	for range 4 {
		req, _ := http.NewRequest(http.MethodGet, url+"/path?q=1", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		req.Header.Set("Connection", "X-Drop-Me")
		req.Header.Set("X-Drop-Me", "secret")
		req.Header.Set("X-Keep", "yes")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		bodies = append(bodies, strings.TrimSpace(string(b)))
	}
	other := map[string]string{"b1": "b2", "b2": "b1"}
	if want := []string{bodies[0], other[bodies[0]], bodies[0], other[bodies[0]]}; !cmp.Equal(want, bodies) {
		t.Errorf("round robin (-want +got):\n%s", cmp.Diff(want, bodies))
	}
	r := b1.Requests()[0]
	host := strings.TrimPrefix(url, "http://")
	want := map[string]string{"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "http",
		"X-Forwarded-Host": host, "X-Keep": "yes", "X-Drop-Me": "", "Connection": ""}
	got := map[string]string{}
	for k := range want {
		got[k] = r.Header.Get(k)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("forwarded headers (-want +got):\n%s", diff)
	}
	if r.Path != "/path" {
		t.Errorf("path %q, want /path", r.Path)
	}
}

func TestHTTPProxyBodies(t *testing.T) {
	// An echo server for bodies, fixed length and chunked.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %s", r.Method, r.ContentLength, b)
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: ln.Addr().String()}))
	c := client(t)
	for _, tc := range []struct {
		name string
		body io.Reader
		want string
	}{
		{"fixed", strings.NewReader("hello"), "POST 5 hello"},
		{"chunked", io.MultiReader(strings.NewReader("hel"), strings.NewReader("lo")), "POST -1 hello"},
		{"empty", nil, "POST 0 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Post(url, "text/plain", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if diff := cmp.Diff(tc.want, string(b)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestHTTPProxyRetriesAndErrors(t *testing.T) {
	good := ambassadortest.NewHTTPBackend(t, "good")
	bad := ambassadortest.NewHTTPBackend(t, "bad")
	bad.Set(ambassadortest.Behavior{Close: true})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(good.Endpoint(), bad.Endpoint()),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: -1}))
	c := client(t)
	for range 10 {
		if code, body := get(t, c, url); code != 200 || body != "good\n" {
			t.Fatalf("GET = %d %q, want 200 from good (retried)", code, body)
		}
	}
	// A POST is not idempotent: it is not retried, and the failure is a clear 502.
	codes := map[int]int{}
	for range 6 {
		resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == 502 && !strings.HasPrefix(string(b), "ambassador: 502 Bad Gateway: ") {
			t.Errorf("502 body %q, want a clear reason", b)
		}
	}
	if codes[502] != 3 || codes[200] != 3 {
		t.Errorf("POST outcomes %v, want 3x200 and 3x502", codes)
	}
}

func TestHTTPProxyRetryBudget(t *testing.T) {
	bad1, bad2 := ambassadortest.NewHTTPBackend(t, "bad1"), ambassadortest.NewHTTPBackend(t, "bad2")
	bad1.Set(ambassadortest.Behavior{Status: 503})
	bad2.Set(ambassadortest.Behavior{Status: 503})
	// No budget: one try only, the endpoint's 503 is relayed.
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(bad1.Endpoint(), bad2.Endpoint()),
		ambassador.WithRetryBudget(ambassador.RetryBudget{Percent: 0, MinConcurrent: 0}),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: -1}))
	c := client(t)
	for range 4 {
		if code, _ := get(t, c, url); code != 503 {
			t.Fatalf("GET = %d, want 503", code)
		}
	}
	if got := bad1.Count() + bad2.Count(); got != 4 {
		t.Errorf("endpoints saw %d requests, want 4 (no retries without budget)", got)
	}
}

func TestHTTPProxyTimeoutsAndNoEndpoints(t *testing.T) {
	slow := ambassadortest.NewHTTPBackend(t, "slow")
	slow.Set(ambassadortest.Behavior{Latency: 5 * time.Second})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(slow.Endpoint()), ambassador.WithPerTryTimeout(100*time.Millisecond),
		ambassador.WithRetries(0))
	c := client(t)
	if code, body := get(t, c, url); code != 504 || !strings.HasPrefix(body, "ambassador: 504 Gateway Timeout") {
		t.Errorf("GET = %d %q, want 504 with a reason", code, body)
	}
	_, _, empty := newHTTPProxy(t, ambassador.NewStatic(), ambassador.WithName("empty"))
	if code, body := get(t, c, empty); code != 503 || !strings.Contains(body, "no endpoint available") {
		t.Errorf("GET with no endpoints = %d %q, want 503 no endpoint available", code, body)
	}
}

func TestHTTPProxyCircuitBreaking(t *testing.T) {
	slow := ambassadortest.NewHTTPBackend(t, "slow")
	slow.Set(ambassadortest.Behavior{Latency: 300 * time.Millisecond})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(slow.Endpoint()), ambassador.WithCircuitBreaker(1, 1))
	c := client(t)
	var wg sync.WaitGroup
	codes := make(chan int, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(url)
			if err != nil {
				codes <- -1
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	// One in flight, one pending, two rejected at once.
	if diff := cmp.Diff(map[int]int{200: 2, 503: 2}, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

// splitBackends starts backends answering "prod" and "exp" and returns the first's source and a
// cluster "experiment" over the second.
func splitBackends(t *testing.T) (prod ambassador.Source, exp *ambassador.Cluster) {
	prodB := ambassadortest.NewHTTPBackend(t, "prod")
	expB := ambassadortest.NewHTTPBackend(t, "exp")
	exp, err := ambassador.NewCluster(ambassador.NewStatic(expB.Endpoint()), ambassador.WithName("experiment"))
	if err != nil {
		t.Fatal(err)
	}
	return ambassador.NewStatic(prodB.Endpoint()), exp
}

func TestHTTPProxySplits(t *testing.T) {
	prod, expCluster := splitBackends(t)
	p, _, url := newHTTPProxy(t, prod,
		ambassador.WithSplits(ambassador.Split{Cluster: expCluster, Header: "X-Experiment", HeaderValue: "on"}))
	c := client(t)
	if _, body := get(t, c, url, "X-Experiment", "on"); body != "exp\n" {
		t.Errorf("matching header went to %q, want exp", body)
	}
	if _, body := get(t, c, url); body != "prod\n" {
		t.Errorf("plain request went to %q, want prod", body)
	}
	// Hot reconfiguration: 30% of traffic to the experiment.
	if err := p.SetSplits(ambassador.Split{Cluster: expCluster, Percent: 30}); err != nil {
		t.Fatal(err)
	}
	n := 1000
	counts := map[string]int{}
	for range n {
		_, body := get(t, c, url)
		counts[strings.TrimSpace(body)]++
	}
	if counts["exp"] < 220 || counts["exp"] > 380 {
		t.Errorf("experiment got %d of %d, want about 30%%", counts["exp"], n)
	}
	if err := p.SetSplits(ambassador.Split{Cluster: nil}); err == nil {
		t.Error("SetSplits with a nil cluster succeeded")
	}
}

func TestHTTPProxyUpgrade(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "ws")
	p, _, _ := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()))
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("X-Backend") != "ws" {
		t.Fatalf("upgrade answer %d %v, want 101 from ws", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"hello", "world"} {
		c.Write([]byte(msg))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q, %v; want %q", buf, err, msg)
		}
	}
}

func TestHTTPProxyH2C(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "b\n" {
		t.Errorf("h2c answer proto %s body %q, want HTTP/2 and b", resp.Proto, body)
	}
}

// TestHTTPProxyBadInput: oversized headers, malformed requests and slowloris clients get a 4xx
// or a timeout, and the proxy keeps serving a well-behaved client meanwhile.
func TestHTTPProxyBadInput(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	p, _, url := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()),
		ambassador.WithServerTimeouts(300*time.Millisecond, time.Second, time.Second, 4<<10))
	addr := p.Addr().String()
	raw := func(req string) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	for _, tc := range []struct{ name, req, want string }{
		{"oversized header", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
		{"malformed request line", "GARBAGE\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"bad header", "GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"},
	} {
		if got := raw(tc.req); got != tc.want {
			t.Errorf("%s: status line %q, want %q", tc.name, got, tc.want)
		}
	}
	// Slowloris: headers dribbled slower than the header timeout; the proxy closes the connection.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "GET / HTTP/1.1\r\nHost: x\r\n")
	closed := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		slow.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, err := slow.Write([]byte("X-A: b\r\n")); err != nil {
				break
			}
			if _, err := slow.Read(make([]byte, 1)); err != nil {
				break
			}
		}
		closed <- time.Since(start)
	}()
	// Meanwhile a normal client is served.
	c := client(t)
	if code, _ := get(t, c, url); code != 200 {
		t.Errorf("normal request during slowloris = %d, want 200", code)
	}
	if d := <-closed; d > 5*time.Second {
		t.Errorf("slowloris connection lived %v, want closed near the 300ms header timeout", d)
	}
}

// TestHTTPProxyShortFirstRequest: a first request shorter than the HTTP/2 preface is answered at
// once, not after the header timeout (the h2c check must not wait for bytes that never come).
func TestHTTPProxyShortFirstRequest(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	p, _, _ := newHTTPProxy(t, ambassador.NewStatic(b.Endpoint()))
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(10 * time.Second))
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n") // 18 bytes
	line, err := bufio.NewReader(c).ReadString('\n')
	if d := time.Since(start); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200 ") || d > 3*time.Second {
		t.Errorf("status line %q (%v) after %v, want 200 at once", line, err, d)
	}
}

// load runs workers doing GETs until stop is closed, and counts outcomes.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, url string, workers int, stop <-chan struct{}) *load {
	l := &load{}
	c := client(t)
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						if err != nil {
							l.errs = append(l.errs, err.Error())
						} else {
							l.errs = append(l.errs, resp.Status)
						}
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// TestHTTPProxyKillBackendUnderLoad: one of three backends dies under load; idempotent requests
// see no errors (retried on others), the dead one is ejected, and readmitted once it is back.
func TestHTTPProxyKillBackendUnderLoad(t *testing.T) {
	bs := []*ambassadortest.HTTPBackend{ambassadortest.NewHTTPBackend(t, "b0"), ambassadortest.NewHTTPBackend(t, "b1"),
		ambassadortest.NewHTTPBackend(t, "b2")}
	_, cluster, url := newHTTPProxy(t, ambassador.NewStatic(bs[0].Endpoint(), bs[1].Endpoint(), bs[2].Endpoint()),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 3, BaseEjection: 300 * time.Millisecond}),
		ambassador.WithConnectTimeout(time.Second))
	stop := make(chan struct{})
	l := startLoad(t, url, 8, stop)
	waitOK := func(n int64, what string) {
		t.Helper()
		target := l.ok.Load() + n
		if !ambassadortest.WaitFor(t.Context(), 30*time.Second, func() bool { return l.ok.Load() >= target }) {
			t.Fatalf("%s: load stalled at %d ok", what, l.ok.Load())
		}
	}
	waitOK(300, "warm-up")
	bs[1].Stop()
	ejected := ambassadortest.WaitFor(t.Context(), 30*time.Second, func() bool {
		st, _ := cluster.Status()
		for _, e := range st {
			if e.Addr == bs[1].Addr {
				return e.Ejections > 0
			}
		}
		return false
	})
	waitOK(300, "with a dead backend")
	before := bs[1].Count()
	if err := bs[1].Start(); err != nil {
		t.Fatal(err)
	}
	readmitted := ambassadortest.WaitFor(t.Context(), 30*time.Second, func() bool { return bs[1].Count() > before+10 })
	close(stop)
	l.wg.Wait()
	if !ejected {
		t.Error("the dead backend was never ejected")
	}
	if !readmitted {
		t.Error("the restarted backend never got traffic again")
	}
	if f := l.failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed (%v), want 0", f, f+l.ok.Load(), l.errs)
	}
}

// TestHTTPProxyEndpointChangesUnderLoad: the endpoint set changes repeatedly under load, with
// zero failed requests.
func TestHTTPProxyEndpointChangesUnderLoad(t *testing.T) {
	bs := []*ambassadortest.HTTPBackend{ambassadortest.NewHTTPBackend(t, "b0"), ambassadortest.NewHTTPBackend(t, "b1"),
		ambassadortest.NewHTTPBackend(t, "b2")}
	for _, b := range bs {
		b.Set(ambassadortest.Behavior{Latency: time.Millisecond})
	}
	src := ambassador.NewStatic(bs[0].Endpoint())
	_, _, url := newHTTPProxy(t, src, ambassador.WithBalancer(ambassador.NewP2C))
	stop := make(chan struct{})
	l := startLoad(t, url, 8, stop)
	sets := [][]int{{0, 1}, {1, 2}, {2}, {0, 2}, {0, 1, 2}, {1}, {0}}
	for round := range 3 {
		for _, set := range sets {
			var eps []ambassador.Endpoint
			for i, idx := range set {
				eps = append(eps, ambassador.Endpoint{Addr: bs[idx].Addr, Weight: 1 + (i+round)%3})
			}
			src.Set(eps...)
			target := l.ok.Load() + 30
			if !ambassadortest.WaitFor(t.Context(), 30*time.Second, func() bool { return l.ok.Load() >= target }) {
				close(stop)
				l.wg.Wait()
				t.Fatalf("load stalled at %d ok", l.ok.Load())
			}
		}
	}
	close(stop)
	l.wg.Wait()
	if f := l.failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed (%v), want 0", f, f+l.ok.Load(), l.errs)
	}
}

// FuzzHTTPProxyRequest sends arbitrary bytes as a request to the proxy's HTTP/1 server: whatever
// they are, the proxy must not crash, and a well-formed request afterwards is served.
func FuzzHTTPProxyRequest(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n",
		"GARBAGE\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\nHost: y\r\n\r\n",
		"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhello",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	b := ambassadortest.NewHTTPBackend(f, "b")
	c, err := ambassador.NewCluster(ambassador.NewStatic(b.Endpoint()))
	if err != nil {
		f.Fatal(err)
	}
	p, err := ambassador.NewHTTPProxy("127.0.0.1:0", c,
		withPath([]ambassador.Option{ambassador.WithServerTimeouts(200*time.Millisecond, time.Second, time.Second, 4<<10)})...)
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	f.Cleanup(func() {
		cancel()
		<-done
	})
	<-p.Ready()
	addr := p.Addr().String()
	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		conn.Write(data)
		conn.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, conn)
		conn.Close()
		check, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("proxy stopped accepting: %v", err)
		}
		defer check.Close()
		check.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(check, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		line, _ := bufio.NewReader(check).ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("after %q the proxy answered %q, want 200", data, line)
		}
	})
}

func TestHTTPProxyTrailersAndStreaming(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(200)
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc")
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: ln.Addr().String()}))
	resp, err := client(t).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "part0;part1;part2;" || resp.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("body %q trailer %v, want the three parts and X-Checksum: abc", body, resp.Trailer)
	}
}

func TestHTTPProxyHashAffinity(t *testing.T) {
	bs := []*ambassadortest.HTTPBackend{ambassadortest.NewHTTPBackend(t, "b0"), ambassadortest.NewHTTPBackend(t, "b1"),
		ambassadortest.NewHTTPBackend(t, "b2")}
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(bs[0].Endpoint(), bs[1].Endpoint(), bs[2].Endpoint()),
		ambassador.WithBalancer(ambassador.NewRingHash), ambassador.WithKey(ambassador.HeaderKey("X-User")))
	c := client(t)
	users := map[string]string{}
	spread := map[string]bool{}
	for round := range 3 {
		for u := range 30 {
			user := fmt.Sprintf("user-%d", u)
			_, body := get(t, c, url, "X-User", user)
			if round == 0 {
				users[user] = body
				spread[body] = true
			} else if users[user] != body {
				t.Fatalf("%s went to %q then %q, want the same backend", user, users[user], body)
			}
		}
	}
	if len(spread) != 3 {
		t.Errorf("30 users landed on %d backends, want all 3", len(spread))
	}
}

// TestHTTPProxyDialFailureRetriedForFree: an attempt whose dial failed never reached a backend, so
// even a POST is retried on another endpoint, and without charging the retry budget.
func TestHTTPProxyDialFailureRetriedForFree(t *testing.T) {
	down, up := ambassadortest.NewHTTPBackend(t, "down"), ambassadortest.NewHTTPBackend(t, "up")
	down.Stop()
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(down.Endpoint(), up.Endpoint()),
		ambassador.WithRetryBudget(ambassador.RetryBudget{Percent: 0, MinConcurrent: 0}),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: -1}))
	c := client(t)
	for i := range 6 {
		resp, err := c.Post(url, "text/plain", strings.NewReader("order"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %d = %d, want 200 (the refused dial is retried on the live endpoint)", i, resp.StatusCode)
		}
	}
	if got := up.Count(); got != 6 {
		t.Errorf("live endpoint saw %d requests, want 6", got)
	}
}

// TestHTTPProxyStaleKeepAliveReplayedOnNewConnection: an endpoint closes every connection after
// one answer (as any server does to keep-alive connections idle past its timeout), so every pooled
// connection is stale. A request that finds its pooled connection closed is replayed once on a
// newly dialed connection, not on the next pooled one, which is just as stale.
func TestHTTPProxyStaleKeepAliveReplayedOnNewConnection(t *testing.T) {
	var dials atomic.Int64
	addr := loopback.Serve(t, func(_ int, c net.Conn) {
		dials.Add(1)
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond) // let the warm-up requests overlap
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
	})
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: addr}),
		ambassador.WithRetryBudget(ambassador.RetryBudget{Percent: 0, MinConcurrent: 0}),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: -1}))
	c := client(t)
	// Two overlapping requests leave two pooled connections, both closed by the endpoint.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := c.Get(url)
			if err != nil {
				t.Errorf("warm-up GET: %v", err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("warm-up GET = %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range 3 {
		if code, body := get(t, c, url); code != 200 {
			t.Fatalf("GET %d after the endpoint closed its pooled connections = %d %q, want 200", i, code, body)
		}
	}
	if got := dials.Load(); got != 5 {
		t.Errorf("endpoint accepted %d connections, want 5 (2 warm-up, then one new per request)", got)
	}
}

// TestHTTPProxySplitHeaderPresence: a split on a header with no value matches the requests that
// carry the header, whatever its value, and no others.
func TestHTTPProxySplitHeaderPresence(t *testing.T) {
	prod, expCluster := splitBackends(t)
	_, _, url := newHTTPProxy(t, prod,
		ambassador.WithSplits(ambassador.Split{Cluster: expCluster, Header: "X-Canary", Cookie: "canary"}))
	c := client(t)
	for _, tc := range []struct {
		hdr  []string
		want string
	}{
		{nil, "prod\n"},
		{[]string{"X-Other", "1"}, "prod\n"},
		{[]string{"Cookie", "other=1"}, "prod\n"},
		{[]string{"X-Canary", "1"}, "exp\n"},
		{[]string{"X-Canary", "anything"}, "exp\n"},
		{[]string{"Cookie", "canary=yes"}, "exp\n"},
	} {
		if _, body := get(t, c, url, tc.hdr...); body != tc.want {
			t.Errorf("request with %q went to %q, want %q", tc.hdr, body, tc.want)
		}
	}
}

// TestHTTPProxyH2CCancelNotCharged: h2c requests their clients cancel before the endpoint answers
// are not the endpoint's failures: it is not ejected for them.
func TestHTTPProxyH2CCancelNotCharged(t *testing.T) {
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go slow.Serve(ln)
	defer slow.Close()
	p, cl, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: ln.Addr().String()}),
		ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: 2, BaseEjection: time.Minute}))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	for range 4 {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/slow", nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			t.Fatalf("cancelled request answered %s", resp.Status)
		}
	}
	// Each try ends once the proxy sees its stream reset; wait until none is in flight.
	for deadline := time.Now().Add(10 * time.Second); inFlight(p) != "0"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("requests in flight %s 10s after their clients cancelled them", inFlight(p))
		}
	}
	if st, _ := cl.Status(); st[0].Ejected {
		t.Errorf("endpoint ejected for its clients' cancellations: %+v", st[0])
	}
}

// inFlight is the proxy's count of requests in flight, from its Statusz table.
func inFlight(p *ambassador.HTTPProxy) string {
	_, _, rows := p.Statusz()
	for _, r := range rows {
		if r[0] == "requests in flight" {
			return r[1]
		}
	}
	return "?"
}

// TestHTTPProxyReadyAfterSourceLoaded: over a File or DNS source, the proxy is Ready only once the
// source's first load or lookup is in, so its first request finds the endpoint.
func TestHTTPProxyReadyAfterSourceLoaded(t *testing.T) {
	b := ambassadortest.NewHTTPBackend(t, "b")
	host, port, _ := net.SplitHostPort(b.Addr)
	dns := ambassadortest.NewDNSServer(t)
	dns.SetA("b.test", netip.MustParseAddr(host))
	path := filepath.Join(t.TempDir(), "endpoints.json")
	if err := os.WriteFile(path, []byte(`["`+b.Addr+`"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	portN, _ := strconv.Atoi(port)
	for _, tc := range []struct {
		name string
		src  ambassador.Source
	}{
		{"File", &ambassador.File{Path: path}},
		{"DNS", &ambassador.DNS{Name: "b.test.", Port: portN, Resolver: dns.Resolver()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cl, url := newHTTPProxy(t, tc.src) // returns once Ready
			if st, _ := cl.Status(); len(st) != 1 {
				t.Errorf("cluster status at Ready: %+v, want the one endpoint", st)
			}
			if code, body := get(t, client(t), url); code != http.StatusOK || body != "b\n" {
				t.Errorf("first request: %d %q, want 200 b", code, body)
			}
		})
	}
}

// TestHTTPProxyOverloadedTriesOthers: with a hashing balancer and a circuit breaker, a request
// whose key hashes to an endpoint at both its limits goes to another endpoint that has room, not
// answered 503, whichever way the balancer's further picks for it fall.
func TestHTTPProxyOverloadedTriesOthers(t *testing.T) {
	x := ambassadortest.NewHTTPBackend(t, "x")
	y := ambassadortest.NewHTTPBackend(t, "y")
	x.Set(ambassadortest.Behavior{Latency: time.Minute}) // holds x's one slot until cancelled
	sorted := []ambassador.Endpoint{x.Endpoint(), y.Endpoint()}
	if sorted[1].Addr < sorted[0].Addr {
		sorted[0], sorted[1] = sorted[1], sorted[0]
	}
	ring := ambassador.NewRingHash(sorted) // the cluster's ring: over its endpoints in address order
	onX := func(k uint64) bool { return sorted[ring.Pick(k)].Addr == x.Addr }
	// A key whose hash and whose first retry keys all land on x, so that a balancer asked again
	// and again keeps picking the full x.
	key := ""
	for i := 0; i < 100000 && key == ""; i++ {
		h := ambassador.HashString("k" + strconv.Itoa(i))
		all := onX(h)
		for a := 1; all && a < 8; a++ {
			all = onX(ambassador.RetryKey(h, a))
		}
		if all {
			key = "k" + strconv.Itoa(i)
		}
	}
	if key == "" {
		t.Fatal("no key of 100000 hashes to x eight times over")
	}
	_, _, url := newHTTPProxy(t, ambassador.NewStatic(x.Endpoint(), y.Endpoint()), ambassador.WithBalancer(ambassador.NewRingHash),
		ambassador.WithKey(ambassador.HeaderKey("X-Key")), ambassador.WithCircuitBreaker(1, 0))
	c := client(t)
	ctx, cancel := context.WithCancel(t.Context())
	held := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("X-Key", key)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	defer func() {
		cancel()
		x.Stop() // ends the held request upstream too: the proxy's shutdown need not wait for it
		<-held
	}()
	if !ambassadortest.WaitFor(t.Context(), 10*time.Second, func() bool { return x.Count() == 1 }) {
		t.Fatal("the first request did not reach x in 10s")
	}
	for range 3 {
		if code, body := get(t, c, url, "X-Key", key); code != http.StatusOK || body != "y\n" {
			t.Fatalf("with x full: %d %q, want 200 from y", code, body)
		}
	}
}

// TestHTTPProxyNotReadyWhenSourceFails: a proxy whose cluster's source fails at start is never
// Ready; its Run returns the source's error.
func TestHTTPProxyNotReadyWhenSourceFails(t *testing.T) {
	checkNotReadyWhenSourceFails(t, func(c *ambassador.Cluster) (component, error) {
		return ambassador.NewHTTPProxy("127.0.0.1:0", c, withPath(nil)...)
	})
}

// TestHTTPProxyRetriesOnTriedWhenOthersFull: a GET that an endpoint answers 503 is retried on that
// same endpoint, within the retry budget, when the other one is at both circuit-breaker limits,
// rather than answered 503 for the full one.
func TestHTTPProxyRetriesOnTriedWhenOthersFull(t *testing.T) {
	var answered atomic.Int64
	flaky := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if answered.Add(1)%2 == 1 {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "flaky\n")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go flaky.Serve(ln)
	t.Cleanup(func() { flaky.Close() })
	full := ambassadortest.NewHTTPBackend(t, "full")
	_, c, url := newHTTPProxy(t, ambassador.NewStatic(ambassador.Endpoint{Addr: ln.Addr().String()}, full.Endpoint()),
		ambassador.WithCircuitBreaker(1, 0), ambassador.WithOutlier(ambassador.Outlier{ConsecutiveFailures: -1}))
	held := backendOf(t, c, full.Addr)
	for {
		l, err := c.Acquire(t.Context(), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if l.Backend == held {
			defer l.Release() // full stays at its one slot
			break
		}
		l.Release()
	}
	cl := client(t)
	for i := range 4 {
		if code, body := get(t, cl, url); code != http.StatusOK || body != "flaky\n" {
			t.Fatalf("GET %d with full at its limit = %d %q, want 200 from flaky (retried on it)", i, code, body)
		}
	}
	if n := full.Count(); n != 0 {
		t.Errorf("full saw %d requests, want 0", n)
	}
}
