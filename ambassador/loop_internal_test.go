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

	"go.uber.org/zap"

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
			answered := statuszCount("answered by event loops", p)
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
