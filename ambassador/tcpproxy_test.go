package ambassador_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
)

// component is what run starts.
type component interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// run starts c until the test ends, and checks it returns nil.
func run(t testing.TB, c component) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready in 10s")
	}
}

func newTCPProxy(t *testing.T, src ambassador.Source, opts ...ambassador.Option) *ambassador.TCPProxy {
	t.Helper()
	c, err := ambassador.NewCluster(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ambassador.NewTCPProxy("127.0.0.1:0", c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	return p
}

func TestTCPProxyEchoAndHalfClose(t *testing.T) {
	b1, b2 := ambassadortest.NewTCPBackend(t, "b1"), ambassadortest.NewTCPBackend(t, "b2")
	p := newTCPProxy(t, ambassador.NewStatic(b1.Endpoint(), b2.Endpoint()))
	payload := make([]byte, 3<<20)
	rand.Read(payload)
	for range 4 {
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(payload)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite() // half-close: the echo must still come back
			}
			errc <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		c.Close()
		if !bytes.Equal(got, payload) {
			t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(payload))
		}
	}
	if b1.Conns() != 2 || b2.Conns() != 2 {
		t.Errorf("connections per backend %d/%d, want 2/2 (round robin)", b1.Conns(), b2.Conns())
	}
}

// pipes counts this process's open pipe file descriptors.
func pipes(t *testing.T) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// TestTCPProxySplices proves the copy takes the splice(2) path: Go's net package splices
// through a kernel pipe only when (*net.TCPConn).ReadFrom gets a *net.TCPConn (or an
// io.LimitedReader over one), so pipes appear in this process while data flows. A wrapped
// connection would copy through user-space buffers and create no pipe.
func TestTCPProxySplices(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("splice is Linux-only")
	}
	b := ambassadortest.NewTCPBackend(t, "b")
	p := newTCPProxy(t, ambassador.NewStatic(b.Endpoint()))
	runtime.GC() // drop pooled splice pipes from earlier tests
	runtime.GC()
	before := pipes(t)
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("x"), 64<<10)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	// Both directions are inside a splice call now (waiting for more data) and hold a pipe each.
	during := pipes(t)
	if during <= before {
		t.Errorf("pipes before %d, during the transfer %d: the proxy did not splice", before, during)
	}
}

func TestTCPProxyRetriesDialOnAnotherEndpoint(t *testing.T) {
	dead := ambassadortest.NewTCPBackend(t, "dead")
	live := ambassadortest.NewTCPBackend(t, "live")
	dead.Stop()
	p := newTCPProxy(t, ambassador.NewStatic(dead.Endpoint(), live.Endpoint()), ambassador.WithRetries(1))
	for range 6 {
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo = %q, %v; want ping (the dead endpoint must be skipped)", buf, err)
		}
		c.Close()
	}
}

func TestTCPProxyIdleTimeoutAndLimit(t *testing.T) {
	b := ambassadortest.NewTCPBackend(t, "b")
	p := newTCPProxy(t, ambassador.NewStatic(b.Endpoint()), ambassador.WithIdleTimeout(100*time.Millisecond), ambassador.WithMaxConns(1))
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hi"))
	c.Read(make([]byte, 2))
	// The limit is 1: a second connection is closed at once.
	c2, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c2.Read(make([]byte, 1)); err == nil {
		t.Errorf("second connection over the limit read %d bytes, want it closed", n)
	}
	c2.Close()
	// With no traffic the first is closed between 100 and 200ms (allow scheduling slack).
	start := time.Now()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection read data, want close")
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Errorf("idle connection closed after %v, want about 100-200ms", d)
	}
}

// TestTCPProxyEndpointChangesDrain: connections keep working after their endpoint leaves the set
// (it drains), and new connections go to the new set, with no failures.
func TestTCPProxyEndpointChangesDrain(t *testing.T) {
	b0, b1 := ambassadortest.NewTCPBackend(t, "b0"), ambassadortest.NewTCPBackend(t, "b1")
	src := ambassador.NewStatic(b0.Endpoint())
	p := newTCPProxy(t, src)
	echo := func(c net.Conn, msg string) error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	old, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := echo(old, "before"); err != nil {
		t.Fatal(err)
	}
	src.Set(b1.Endpoint())
	// New connections reach b1 once the cluster has the change; none fails meanwhile.
	if !ambassadortest.WaitFor(t.Context(), 10*time.Second, func() bool {
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		if err := echo(c, "x"); err != nil {
			t.Fatalf("a connection during the change failed: %v", err)
		}
		return b1.Conns() > 0
	}) {
		t.Fatal("new connections never reached the new endpoint")
	}
	// The old connection to b0 still works: removal drains, it does not cut.
	for range 3 {
		if err := echo(old, "still here"); err != nil {
			t.Fatalf("connection to the removed endpoint: %v", err)
		}
	}
}
