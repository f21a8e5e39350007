//go:build linux

package ambassador

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/podblocks/podblocks/internal/uring/uringtest"
	"go.uber.org/zap/zaptest/observer"
)

// echoServer accepts on a loopback port and echoes each connection until its EOF, then closes it.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestTCPLoopShortReadRule: a loop does not read a socket again after a copy read returned fewer
// bytes than asked, and waits for the next edge. Bytes (and the end of the stream) that arrive
// right after that read, before the loop waits, are still relayed: the hook that runs after the
// short read of the client's first message writes more from the client then, and the echo must
// bring everything back. "and EOF" fails (the relay stalls until the deadline) if an end whose
// event reported EPOLLRDHUP were read under the rule: the rest and the FIN come in one edge.
func TestTCPLoopShortReadRule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close bool // CloseWrite right after the second write, in the hook
	}{{"data", false}, {"data and EOF", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := NewCluster(NewStatic(Endpoint{Addr: echoServer(t)}))
			if err != nil {
				t.Fatal(err)
			}
			// The hook is set before the loop runs and reads the connection under test from cur.
			type conn struct {
				c        net.Conn
				port     int
				fired    atomic.Bool
				injected atomic.Bool
			}
			var cur atomic.Pointer[conn]
			afterShortRead = func(fd int) {
				k := cur.Load()
				sa, err := syscall.Getpeername(fd)
				if a, ok := sa.(*syscall.SockaddrInet4); k == nil || err != nil || !ok || a.Port != k.port || k.fired.Swap(true) {
					return // not this connection's client socket, or done already
				}
				if _, err := k.c.Write([]byte("more")); err == nil {
					k.injected.Store(true)
					if tc.close {
						k.c.(*net.TCPConn).CloseWrite()
					}
				}
			}
			t.Cleanup(func() { afterShortRead = nil }) // after the proxy stops (cleanups run last first)
			p := runTCPProxy(t, cl)
			for i := range 20 {
				c, err := net.Dial("tcp", p.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				k := &conn{c: c, port: c.LocalAddr().(*net.TCPAddr).Port}
				cur.Store(k)
				if _, err := c.Write([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, 8)
				if _, err := io.ReadFull(c, got); err != nil || string(got) != "pingmore" {
					t.Fatalf("connection %d: echo %q, %v; want \"pingmore\" (the hook ran: %v)", i, got, err, k.injected.Load())
				}
				if !k.injected.Load() {
					t.Fatalf("connection %d: the hook did not write after a short read", i)
				}
				if tc.close {
					if n, err := c.Read(make([]byte, 1)); err != io.EOF {
						t.Fatalf("connection %d: read after the half-close = %d, %v; want EOF (the FIN relayed)", i, n, err)
					}
				}
				c.Close()
			}
		})
	}
}

// TestTCPLoopSendRing relays with the pass's sends batched through io_uring and with sendto(2)
// alone: eight connections each echo 200 messages of varied sizes, then half-close; and a backend
// that writes faster than its client reads fills the client's socket buffers, so sends come back
// with EAGAIN and wait for EPOLLOUT. Every byte must arrive in order either way, and the counters
// must show which path the sends took.
func TestTCPLoopSendRing(t *testing.T) {
	for _, tc := range sendRingCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			log := tc.setup(t)
			flood := floodServer(t)
			cl, err := NewCluster(NewStatic(Endpoint{Addr: echoServer(t)}))
			if err != nil {
				t.Fatal(err)
			}
			fcl, err := NewCluster(NewStatic(Endpoint{Addr: flood}))
			if err != nil {
				t.Fatal(err)
			}
			p := runTCPProxy(t, cl, log)
			fp := runTCPProxy(t, fcl, log)

			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for i := range 8 {
				wg.Go(func() {
					c, err := net.Dial("tcp", p.Addr().String())
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					for j := range 200 {
						msg := bytes.Repeat([]byte{byte('a' + (i+j)%26)}, 1+(i*37+j*101)%3000)
						if _, err := c.Write(msg); err != nil {
							errs <- err
							return
						}
						got := make([]byte, len(msg))
						if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
							errs <- fmt.Errorf("connection %d, message %d: echo differs (%v)", i, j, err)
							return
						}
					}
					c.(*net.TCPConn).CloseWrite()
					if n, err := c.Read(make([]byte, 1)); err != io.EOF {
						errs <- fmt.Errorf("connection %d: read after the half-close = %d, %v; want EOF", i, n, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}

			// The flood: the client reads nothing for a while, then checks every byte.
			c, err := net.Dial("tcp", fp.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			time.Sleep(300 * time.Millisecond)
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, floodBytes()) {
				t.Errorf("flood: %d bytes, %v; want %d bytes, in order", len(got), err, len(floodBytes()))
			}

			batched := statuszCount("sends through io_uring on event loops", p, fp)
			enters := statuszCount("io_uring_enter calls on event loops", p, fp)
			tc.check(t, batched, enters, 8*200, 2)
		})
	}
}

// TestTCPLoopSendRingUnknownOutcome: should io_uring_enter fail after the kernel took a pass's
// sends, with their completions lost, whether their bytes went out is unknown: the relays of those
// sends are closed, not sent again (the peer would read bytes twice) nor left waiting, and the loop
// sends with sendto(2) from then on. The hook makes its 21st call's sends, drops their completions
// and fails; the connection relayed then must end (its client reads EOF or a reset, not a timeout,
// and no echo differs), and a new connection must be relayed whole.
func TestTCPLoopSendRingUnknownOutcome(t *testing.T) {
	if why := uringtest.Probe(); why != "" {
		t.Skip("io_uring unavailable: " + why)
	}
	const ok = 20
	calls, _ := uringtest.LoseCompletions(t, ok, func([]int) bool { return true })
	core, logs := observer.New(zap.InfoLevel)
	cl, err := NewCluster(NewStatic(Endpoint{Addr: echoServer(t)}))
	if err != nil {
		t.Fatal(err)
	}
	p := runTCPProxy(t, cl, WithLogger(zap.New(core)))
	echo := func(n int) (int, error) {
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		for j := range n {
			msg := fmt.Appendf(nil, "message %03d", j)
			if _, err := c.Write(msg); err != nil {
				return j, err
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				return j, err
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("message %d: echo %q; want %q", j, got, msg)
			}
		}
		return n, nil
	}
	j, err := echo(100)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || calls.Load() != ok+1 {
		t.Fatalf("the relay when io_uring_enter failed: %d messages echoed, then %v, %d io_uring_enter calls; want an error that is not a timeout, %d calls",
			j, err, calls.Load(), ok+1)
	}
	t.Logf("the relay ended after %d messages: %v", j, err)
	if j, err := echo(50); err != nil {
		t.Fatalf("a new connection after the failure: %d messages echoed, then %v", j, err)
	}
	if n := logs.FilterMessageSnippet("io_uring_enter failed").Len(); n != 1 || calls.Load() != ok+1 {
		t.Errorf("%d failures logged, %d io_uring_enter calls; want 1, %d (sendto(2) from the failure on)", n, calls.Load(), ok+1)
	}
}

// sendRingCase is one way a test's loops send: through io_uring; with one system call per send
// because io_uring_setup is refused with EPERM (as the default seccomp profiles of Docker >= 25 and
// containerd 2.0 refuse it); or through io_uring until io_uring_enter is refused, after enterOK
// calls, from when on every loop must send with one system call per send, no byte lost or repeated.
type sendRingCase struct {
	name      string
	ring      bool  // the case needs a working io_uring
	failSetup bool  // io_uring_setup is refused
	enterOK   int64 // > 0: io_uring_enter calls allowed before every later one is refused

	unavailable string // why io_uring does not work here ("" if it does)
	logs        *observer.ObservedLogs
	counts      *uringtest.Counts
}

// sendRingCases are the cases. The io_uring cases are skipped where a ring cannot make one send
// (a seccomp filter may allow io_uring_setup and refuse io_uring_enter).
func sendRingCases(t *testing.T) []*sendRingCase {
	why := uringtest.Probe()
	if why != "" {
		t.Logf("io_uring unavailable (%s): only the cases without it run", why)
	}
	cases := []*sendRingCase{
		{name: "io_uring", ring: true},
		{name: "io_uring_setup refused", failSetup: true},
		{name: "io_uring_enter refused mid-run", ring: true, enterOK: 50},
	}
	for _, c := range cases {
		c.unavailable = why
	}
	return cases
}

// setup installs the case's io_uring system calls until the test ends (after its proxies stop:
// cleanups run last first, so setup comes before the proxies are made) and returns the option that
// has a proxy log to c.logs.
func (c *sendRingCase) setup(t *testing.T) Option {
	if c.ring && c.unavailable != "" {
		t.Skip("io_uring unavailable: " + c.unavailable)
	}
	f := uringtest.Faults{EnterOK: c.enterOK}
	if c.failSetup {
		f.SetupErr = syscall.EPERM
	}
	c.counts = uringtest.Inject(t, f)
	core, logs := observer.New(zap.InfoLevel)
	c.logs = logs
	return WithLogger(zap.New(core))
}

// check tells whether the counters and the logs show the case's path: sends of at least want
// through io_uring in enters io_uring_enter calls, made by loops event loops (each its proxy's
// only one). A refused io_uring_setup is asked for once in the process, whatever loops is.
func (c *sendRingCase) check(t *testing.T, sends, enters, want, loops int64) {
	t.Helper()
	setupLogs := int64(c.logs.FilterMessageSnippet("io_uring_setup: operation not permitted").Len())
	enterLogs := int64(c.logs.FilterMessageSnippet("io_uring_enter failed").Len())
	t.Logf("%d sends through io_uring in %d io_uring_enter calls (%d refused); logged %d setup and %d enter failures",
		sends, enters, c.counts.Refused.Load(), setupLogs, enterLogs)
	switch {
	case c.failSetup:
		// The process asks once (uring.New remembers the refusal); each proxy logs it once.
		if sends != 0 || enters != 0 || c.counts.Setups.Load() != 1 || setupLogs != loops {
			t.Errorf("io_uring_setup refused: %d sends through io_uring, %d io_uring_enter calls, %d setups, %d logged; want 0, 0, 1, %d",
				sends, enters, c.counts.Setups.Load(), setupLogs, loops)
		}
	case c.enterOK > 0:
		// Each loop is refused once, then sends without the ring: no later call is refused.
		if c.counts.Refused.Load() != loops || enters != c.enterOK+loops || enterLogs != loops || sends == 0 {
			t.Errorf("io_uring_enter refused after %d calls: %d refused, %d calls, %d logged, %d sends through io_uring; want %d, %d, %d, > 0",
				c.enterOK, c.counts.Refused.Load(), enters, enterLogs, sends, loops, c.enterOK+loops, loops)
		}
	default:
		if sends < want || enters == 0 || setupLogs+enterLogs != 0 {
			t.Errorf("io_uring path: %d sends through io_uring in %d calls, %d failures logged; want at least %d, and none",
				sends, enters, setupLogs+enterLogs, want)
		}
	}
}

// floodBytes is what floodServer writes to each connection: 2000 numbered lines of about 1 KiB.
func floodBytes() []byte {
	var b bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&b, "%06d %s\n", i, bytes.Repeat([]byte{byte('a' + i%26)}, 1000))
	}
	return b.Bytes()
}

// floodServer accepts on a loopback port and writes floodBytes to each connection, a line at a
// time with a pause every 50 lines (so the proxy's reads stay short and copied), then closes it.
func floodServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b := floodBytes()
				for i := 0; len(b) > 0; i++ {
					line := b[:bytes.IndexByte(b, '\n')+1]
					if _, err := c.Write(line); err != nil {
						return
					}
					b = b[len(line):]
					if i%50 == 49 {
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// runTCPProxy runs a TCPProxy on one event loop over cl until the test ends.
func runTCPProxy(t *testing.T, cl *Cluster, opts ...Option) *TCPProxy {
	t.Helper()
	p, err := NewTCPProxy("127.0.0.1:0", cl, append([]Option{WithEventLoops(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return runProxy(t, p)
}

// runProxy runs p until the test ends and returns it once Ready.
func runProxy[P interface {
	Run(context.Context) error
	Ready() <-chan struct{}
}](t *testing.T, p P) P {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	<-p.Ready()
	return p
}

// statuszCount sums key's values in the Statusz tables of ps.
func statuszCount(key string, ps ...interface {
	Statusz() (string, []string, [][]string)
}) (n int64) {
	for _, p := range ps {
		_, _, rows := p.Statusz()
		for _, r := range rows {
			if r[0] == key {
				v, _ := strconv.ParseInt(r[1], 10, 64)
				n += v
			}
		}
	}
	return n
}
