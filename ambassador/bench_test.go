package ambassador_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/internal/loopback"
)

// BenchmarkPick measures Balancer.Pick+Done for each balancer over 3 and 50 endpoints. The
// baseline is a uniform random index (rand.IntN), the least any balancer can do.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{3, 50} {
		eps := make([]ambassador.Endpoint, n)
		for i := range eps {
			eps[i] = ambassador.Endpoint{Addr: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250), Weight: 1 + i%3}
		}
		b.Run(fmt.Sprintf("baseline-rand/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			s := 0
			for b.Loop() {
				s += rand.IntN(n)
			}
			_ = s
		})
		for _, name := range []string{"rr", "p2c", "ring", "maglev"} {
			bal := ambassador.Balancers[name](eps)
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				var k uint64
				for b.Loop() {
					k += 0x9e3779b97f4a7c15
					bal.Done(bal.Pick(k))
				}
			})
		}
	}
}

// BenchmarkAcquire measures Cluster.Acquire+Release (snapshot load, pick, circuit breaker).
func BenchmarkAcquire(b *testing.B) {
	c, err := ambassador.NewCluster(ambassador.NewStatic(eps("a:1", "b:1", "c:1")...))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		l, err := c.Acquire(b.Context(), 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		l.Release()
	}
}

// cannedBackend answers every request head it reads with the same small response, so that a
// benchmark's allocations are the proxy's.
func cannedBackend(b *testing.B) string {
	resp := []byte("HTTP/1.1 200 OK\r\nServer: canned\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\nhello\n")
	return loopback.Serve(b, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) == 2 { // the blank line ending a head
				if _, err := c.Write(resp); err != nil {
					return
				}
			}
		}
	})
}

// BenchmarkHTTPProxyRequest measures one keep-alive GET through HTTPProxy to a canned backend,
// client and backend in the same process: allocs/op are the proxy's per request.
func BenchmarkHTTPProxyRequest(b *testing.B) {
	benchProxy(b, "GET /index.html?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
}

// BenchmarkHTTPProxyPost measures one keep-alive POST with a small body through the goroutine
// path (Pragma hands it over), as BenchmarkHTTPProxyRequest does a GET.
func BenchmarkHTTPProxyPost(b *testing.B) {
	benchProxy(b, "POST /form HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nPragma: no-cache\r\n"+
		"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
}

// benchProxy measures request, sent again and again on one keep-alive connection through
// HTTPProxy to a canned backend (which takes a body for part of the next request line).
func benchProxy(b *testing.B, request string) {
	c, err := ambassador.NewCluster(ambassador.NewStatic(ambassador.Endpoint{Addr: cannedBackend(b)}))
	if err != nil {
		b.Fatal(err)
	}
	p, err := ambassador.NewHTTPProxy("127.0.0.1:0", c)
	if err != nil {
		b.Fatal(err)
	}
	run(b, p)
	conn, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	body := make([]byte, 6)
	req := []byte(request)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		// The response head, then the canned 6-byte body (read raw: no client allocations).
		line, err := br.ReadSlice('\n')
		if err != nil || !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
			b.Fatalf("status line %q: %v", line, err)
		}
		for len(line) != 2 {
			if line, err = br.ReadSlice('\n'); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := io.ReadFull(br, body); err != nil || string(body) != "hello\n" {
			b.Fatalf("body %q: %v", body, err)
		}
	}
}

// BenchmarkNewBalancer measures building each balancer, as a Cluster does on every change of its
// available set (an ejection, a readmission, a health verdict): 100 endpoints of weight 1, and of
// weight 100, which gives a ring more points than it keeps.
func BenchmarkNewBalancer(b *testing.B) {
	for _, w := range []int{1, 100} {
		eps := make([]ambassador.Endpoint, 100)
		for i := range eps {
			eps[i] = ambassador.Endpoint{Addr: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250), Weight: w}
		}
		for _, name := range []string{"rr", "p2c", "ring", "maglev"} {
			b.Run(fmt.Sprintf("%s/n=100/weight=%d", name, w), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					ambassador.Balancers[name](eps)
				}
			})
		}
	}
}
