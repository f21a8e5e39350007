package ambassador_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

// stoppable is a component started by startStoppable, for tests that stop it themselves.
type stoppable struct {
	cancel context.CancelFunc
	done   chan error // Run's result
}

// startStoppable starts c and waits until it is ready.
func startStoppable(t testing.TB, c component) *stoppable {
	t.Helper()
	s := startUnready(c)
	t.Cleanup(s.cancel)
	<-c.Ready()
	return s
}

// startUnready starts c without waiting for it to be ready.
func startUnready(c component) *stoppable {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stoppable{cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- c.Run(ctx) }()
	return s
}

// stop ends Run's context and waits up to within for Run to return, reporting an error it returns;
// false means Run had not returned by then (s.done has its result later).
func (s *stoppable) stop(t testing.TB, within time.Duration) bool {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
		return true
	case <-time.After(within):
		return false
	}
}

// fdsBackTo waits up to 5 s, calling settle before each count, for the process's open files to be
// no more than before, and reports it when they are not.
func fdsBackTo(t *testing.T, before int, settle func()) {
	t.Helper()
	var after int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		settle()
		if after = openFDs(t); after <= before || time.Now().After(deadline) {
			break
		}
	}
	if after > before {
		t.Errorf("%d open files after the proxy stopped, %d before", after, before)
	}
}

// tcpPathEnv picks the TCPProxy relay path the tests run on: unset, the event loops (the
// default); "0", the goroutine path (TestTCPProxyGoroutinePath re-runs the TCPProxy tests so).
const tcpPathEnv = "AMBASSADOR_TEST_TCP_EVENT_LOOPS"

func tcpGoroutinePath() bool { return os.Getenv(tcpPathEnv) == "0" }

func newTCPProxy(t *testing.T, src ambassador.Source, opts ...ambassador.Option) *ambassador.TCPProxy {
	t.Helper()
	p, _ := newTCPProxyCluster(t, src, opts...)
	return p
}

// newTCPProxyCluster runs a TCPProxy over a new cluster of src on the relay path under test.
func newTCPProxyCluster(t *testing.T, src ambassador.Source, opts ...ambassador.Option) (*ambassador.TCPProxy, *ambassador.Cluster) {
	t.Helper()
	if tcpGoroutinePath() {
		opts = append(opts[:len(opts):len(opts)], ambassador.WithEventLoops(0))
	}
	c, err := ambassador.NewCluster(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ambassador.NewTCPProxy("127.0.0.1:0", c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	return p, c
}

// TestTCPProxyGoroutinePath runs every TCPProxy test again with the event loops off, so the
// goroutine path (ReadFrom splices) stays tested whole.
func TestTCPProxyGoroutinePath(t *testing.T) {
	if tcpGoroutinePath() {
		t.Skip("this is the goroutine path run")
	}
	rerunOnGoroutinePath(t, tcpPathEnv, "^TestTCPProxy", "TestTCPProxyEchoAndHalfClose", "TestTCPProxySplices",
		"TestTCPProxyNoFDLeak", "TestTCPProxyStopClosesRelays")
}

func TestTCPProxyEchoAndHalfClose(t *testing.T) {
	b1, b2 := ambassadortest.NewTCPBackend(t, "b1"), ambassadortest.NewTCPBackend(t, "b2")
	p, _ := newTCPProxyCluster(t, ambassador.NewStatic(b1.Endpoint(), b2.Endpoint()))
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

// gatedSource is a source whose Endpoints, after its first call (NewCluster's), waits until open
// is closed: a cluster's Run takes its set only then.
type gatedSource struct {
	ambassador.Source
	calls atomic.Int32
	open  chan struct{}
}

func (s *gatedSource) Endpoints() ([]ambassador.Endpoint, <-chan struct{}) {
	if s.calls.Add(1) > 1 {
		<-s.open
	}
	return s.Source.Endpoints()
}

// TestTCPProxyReadyAfterClusterLoaded checks the proxy is Ready only once its cluster's Run has
// taken the source's endpoints (a connection balanced before that would be balanced again from
// the start: the round robin starts over with the set Run takes).
func TestTCPProxyReadyAfterClusterLoaded(t *testing.T) {
	var opts []ambassador.Option
	if tcpGoroutinePath() {
		opts = append(opts, ambassador.WithEventLoops(0))
	}
	checkReadyAfterCluster(t, ambassadortest.NewTCPBackend(t, "b").Endpoint(), func(c *ambassador.Cluster) (component, error) {
		return ambassador.NewTCPProxy("127.0.0.1:0", c, opts...)
	})
}

// startProxy starts the proxy newProxy makes over a new cluster over src, without waiting for it
// to be ready.
func startProxy(t *testing.T, src ambassador.Source, newProxy func(*ambassador.Cluster) (component, error)) (*ambassador.Cluster, component, *stoppable) {
	t.Helper()
	cl, err := ambassador.NewCluster(src)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newProxy(cl)
	if err != nil {
		t.Fatal(err)
	}
	return cl, p, startUnready(p)
}

// checkReadyAfterCluster starts the proxy newProxy makes over a cluster of ep whose source holds
// its set back from the cluster's Run, and checks the proxy is Ready only once the cluster is.
func checkReadyAfterCluster(t *testing.T, ep ambassador.Endpoint, newProxy func(*ambassador.Cluster) (component, error)) {
	t.Helper()
	src := &gatedSource{Source: ambassador.NewStatic(ep), open: make(chan struct{})}
	cl, p, s := startProxy(t, src, newProxy)
	defer func() {
		if !s.stop(t, 10*time.Second) {
			t.Error("Run did not return 10s after its context ended")
		}
	}()
	release := sync.OnceFunc(func() { close(src.open) })
	defer release() // before the stop: the cluster's Run waits for it
	select {
	case <-p.Ready():
		t.Fatal("proxy Ready while its cluster's Run waits for the source's endpoints")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("proxy not Ready 10s after the source gave its endpoints")
	}
	select {
	case <-cl.Ready():
	default:
		t.Fatal("proxy Ready before its cluster")
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

// TestTCPProxySplices proves the copy takes the splice(2) path for bulk. Go's net package
// splices through a kernel pipe only when (*net.TCPConn).ReadFrom gets a *net.TCPConn (or an
// io.LimitedReader over one), so on the goroutine path pipes appear in this process while data
// flows (a wrapped connection would copy through user-space buffers and create no pipe). On an
// event loop, each direction copies a read of up to 16 KiB through the loop's buffer and
// splices once a read fills it (tcploop_linux.go): small messages are copied and make no pipe,
// bulk is spliced through the relay's pipes, which Statusz's byte counts show.
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
	echo := func(msg []byte) {
		t.Helper()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
			t.Fatal(err)
		}
	}
	counts := func() (splices, spliced, copied int64) {
		return statusz(t, p, "splice calls on event loops"), statusz(t, p, "bytes spliced on event loops"),
			statusz(t, p, "bytes copied on event loops")
	}
	if !tcpGoroutinePath() {
		// Small messages: copied both ways, no splice, no pipe.
		for range 10 {
			echo([]byte("ping"))
		}
		splices, spliced, copied := counts()
		if splices != 0 || spliced != 0 || copied != 2*10*4 || pipes(t) != before {
			t.Errorf("10 echoes of 4 bytes: %d splice calls, %d bytes spliced, %d copied, %d pipes (%d before); want 0, 0, 80 and no new pipe",
				splices, spliced, copied, pipes(t), before)
		}
	}
	msg := bytes.Repeat([]byte("x"), 64<<10)
	echo(msg)
	// Both directions hold a pipe each now: on the goroutine path inside a splice call (waiting
	// for more data), on a loop the relay's own.
	during := pipes(t)
	if during <= before {
		t.Errorf("pipes before %d, during the transfer %d: the proxy did not splice", before, during)
	}
	relayed := statusz(t, p, "relayed on event loops")
	splices, spliced, copied := counts()
	if tcpGoroutinePath() {
		if relayed != 0 || splices != 0 || spliced != 0 || copied != 0 {
			t.Errorf("goroutine path: %d relayed, %d splice calls, %d bytes spliced and %d copied on event loops, want 0",
				relayed, splices, spliced, copied)
		}
		return
	}
	if relayed != 1 || splices < 4 {
		t.Fatalf("loop path: %d relayed, %d splice calls; want 1 and >= 4 (into the pipe and out of it, each way)", relayed, splices)
	}
	// Bulk: 8 echoes of 1 MiB. Each switch to splice copies at most one 16 KiB read, so most
	// bytes are spliced.
	big := bytes.Repeat([]byte("y"), 1<<20)
	for range 8 {
		echo(big)
	}
	splices2, spliced2, copied2 := counts()
	moved := int64(2 * 8 * len(big))
	if got := (spliced2 - spliced) + (copied2 - copied); got != moved {
		t.Errorf("8 echoes of 1 MiB: %d bytes spliced and copied, want %d", got, moved)
	}
	if spliced2-spliced < moved/2 || splices2-splices < 2*2*8 {
		t.Errorf("8 echoes of 1 MiB: %d of %d bytes spliced in %d splice calls, want more than half and >= 32 calls",
			spliced2-spliced, moved, splices2-splices)
	}
	t.Logf("8 echoes of 1 MiB: %d bytes spliced, %d copied, %d splice calls", spliced2-spliced, copied2-copied, splices2-splices)
}

// TestTCPProxyNoFDLeak: after relaying connections that ended every way (both sides closed in
// turn, a half-close, the idle timeout, the limit, a failed dial, open at stop) and stopping, the
// proxy holds no file descriptor and every endpoint's active count is back to zero.
func TestTCPProxyNoFDLeak(t *testing.T) {
	before := openFDs(t)
	t.Run("traffic", func(t *testing.T) {
		b := ambassadortest.NewTCPBackend(t, "b")
		dead := ambassadortest.NewTCPBackend(t, "dead")
		dead.Stop()
		p, cl := newTCPProxyCluster(t, ambassador.NewStatic(b.Endpoint(), dead.Endpoint()),
			ambassador.WithIdleTimeout(time.Second), ambassador.WithMaxConns(3), ambassador.WithRetries(1))
		// drained waits until the proxy counts n connections (a closed one ends asynchronously).
		drained := func(n int64) {
			t.Helper()
			if !ambassadortest.WaitFor(t.Context(), 10*time.Second, func() bool { return statusz(t, p, "active connections") == n }) {
				t.Fatalf("active connections %d, want %d", statusz(t, p, "active connections"), n)
			}
		}
		echo := func() net.Conn {
			c, err := net.Dial("tcp", p.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				t.Fatalf("echo: %v", err)
			}
			return c
		}
		for range 4 {
			echo().Close()
			drained(0)
		}
		hc := echo()
		hc.(*net.TCPConn).CloseWrite()
		if _, err := hc.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("read after half-close = %v, want EOF (the backend's close relayed)", err)
		}
		hc.Close()
		drained(0)
		idle := echo()
		defer idle.Close()
		held := echo() // open when the proxy stops
		defer held.Close()
		third := echo()
		over, err := net.Dial("tcp", p.Addr().String()) // over the limit of 3
		if err != nil {
			t.Fatal(err)
		}
		over.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := over.Read(make([]byte, 1)); err == nil {
			t.Error("a connection over the limit read data")
		}
		over.Close()
		third.Close()
		// The idle one is closed by the proxy; held is kept busy.
		deadline := time.Now().Add(5 * time.Second)
		for statusz(t, p, "active connections") > 1 && time.Now().Before(deadline) {
			held.Write([]byte("k"))
			io.ReadFull(held, make([]byte, 1))
			time.Sleep(20 * time.Millisecond)
		}
		if n := statusz(t, p, "active connections"); n != 1 {
			t.Errorf("active connections %d, want 1 (the held one)", n)
		}
		eps, _ := cl.Status()
		var active int64
		for _, e := range eps {
			active += e.Active
		}
		if active != 1 {
			t.Errorf("endpoints' active connections sum to %d, want 1", active)
		}
	})
	// The goroutine path's splices leave pipes in the net package's pool until a GC.
	fdsBackTo(t, before, runtime.GC)
}

// TestTCPProxyStopClosesRelays: stopping the proxy closes the connections it relays, and Run
// returns.
func TestTCPProxyStopClosesRelays(t *testing.T) {
	b := ambassadortest.NewTCPBackend(t, "b")
	cl, err := ambassador.NewCluster(ambassador.NewStatic(b.Endpoint()))
	if err != nil {
		t.Fatal(err)
	}
	var opts []ambassador.Option
	if tcpGoroutinePath() {
		opts = append(opts, ambassador.WithEventLoops(0))
	}
	p, err := ambassador.NewTCPProxy("127.0.0.1:0", cl, opts...)
	if err != nil {
		t.Fatal(err)
	}
	s := startStoppable(t, p)
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if !s.stop(t, 10*time.Second) {
		t.Fatal("Run did not return in 10s")
	}
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes after stop, want the connection closed", n)
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

// TestTCPProxyNotReadyWhenSourceFails: a proxy whose cluster's source fails at start is never
// Ready; its Run returns the source's error.
func TestTCPProxyNotReadyWhenSourceFails(t *testing.T) {
	var opts []ambassador.Option
	if tcpGoroutinePath() {
		opts = append(opts, ambassador.WithEventLoops(0))
	}
	checkNotReadyWhenSourceFails(t, func(c *ambassador.Cluster) (component, error) {
		return ambassador.NewTCPProxy("127.0.0.1:0", c, opts...)
	})
}

// checkNotReadyWhenSourceFails checks that the proxy newProxy makes is never Ready (so that a
// readiness probe gated on it keeps failing) when its Run ends before its cluster is ready: over a
// File source naming a missing file, Run returns the source's error; stopped while its cluster
// waits for its source's set, Run returns nil.
func checkNotReadyWhenSourceFails(t *testing.T, newProxy func(*ambassador.Cluster) (component, error)) {
	t.Helper()
	gated := &gatedSource{Source: ambassador.NewStatic(ambassador.Endpoint{Addr: "127.0.0.1:1"}), open: make(chan struct{})}
	for _, tc := range []struct {
		name    string
		src     ambassador.Source
		stop    func(s *stoppable) // what ends Run
		wantErr error
	}{
		{"missing endpoints file", &ambassador.File{Path: filepath.Join(t.TempDir(), "endpoints.json")},
			func(*stoppable) {}, os.ErrNotExist},
		{"stopped before its cluster is ready", gated, func(s *stoppable) {
			s.cancel()
			close(gated.open) // the cluster's Run takes the set only after its context has ended
		}, nil},
	} {
		_, p, s := startProxy(t, tc.src, newProxy)
		tc.stop(s)
		select {
		case err := <-s.done:
			if !errors.Is(err, tc.wantErr) { // nil wants nil
				t.Errorf("%s: Run = %v, want %v", tc.name, err, tc.wantErr)
			}
		case <-time.After(10 * time.Second):
			s.cancel()
			t.Fatalf("%s: Run has not returned in 10s", tc.name)
		}
		s.cancel()
		select {
		case <-p.Ready():
			t.Errorf("%s: proxy Ready", tc.name)
		default:
		}
	}
}

// TestSharedClusterFailureEndsEveryProxy: when the Run of a cluster that two proxies share fails
// (its File source's file is missing), the proxy that started it and the one that left it to the
// other both return its error, neither Ready: whether the second starts with the first or after
// the first has returned.
func TestSharedClusterFailureEndsEveryProxy(t *testing.T) {
	for _, order := range []string{"together", "after"} {
		t.Run(order, func(t *testing.T) {
			_, hp, tp := sharedCluster(t, &ambassador.File{Path: filepath.Join(t.TempDir(), "endpoints.json")})
			wait := func(name string, p component, s *stoppable) {
				t.Helper()
				select {
				case err := <-s.done:
					if !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s: Run = %v, want the source's %v", name, err, os.ErrNotExist)
					}
				case <-time.After(10 * time.Second):
					s.cancel()
					<-s.done
					t.Errorf("%s: Run has not returned in 10s", name)
				}
				s.cancel()
				select {
				case <-p.Ready():
					t.Errorf("%s: Ready", name)
				default:
				}
			}
			first := startUnready(hp)
			if order == "after" {
				wait("the proxy that ran the cluster", hp, first)
			}
			second := startUnready(tp)
			if order == "together" {
				wait("the HTTP proxy", hp, first)
			}
			wait("the TCP proxy", tp, second)
		})
	}
}
