//go:build linux

package ambassador

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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
			tc.setup(t)
			flood := floodServer(t)
			cl, err := NewCluster(NewStatic(Endpoint{Addr: echoServer(t)}))
			if err != nil {
				t.Fatal(err)
			}
			fcl, err := NewCluster(NewStatic(Endpoint{Addr: flood}))
			if err != nil {
				t.Fatal(err)
			}
			p := runTCPProxy(t, cl)
			fp := runTCPProxy(t, fcl)

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
			t.Logf("%d sends through io_uring in %d io_uring_enter calls", batched, enters)
			if tc.off && (batched != 0 || enters != 0) {
				t.Errorf("sendto path: %d sends through io_uring, %d io_uring_enter calls; want 0", batched, enters)
			}
			if !tc.off && (batched < 8*200 || enters == 0) {
				t.Errorf("io_uring path: %d sends through io_uring in %d calls; want at least %d", batched, enters, 8*200)
			}
		})
	}
}

// sendRingCases are the two ways a loop sends: through io_uring (skipped where the kernel refuses
// it) and with a system call per send. setup picks the case's way for the loops the test makes.
func sendRingCases(t *testing.T) []struct {
	name  string
	off   bool
	setup func(*testing.T)
} {
	ring, err := newSendRing(sendRingSize)
	if err != nil {
		t.Logf("io_uring unavailable (%v): only the one-call-per-send path runs", err)
	} else {
		ring.close()
	}
	set := func(off bool) func(*testing.T) {
		return func(t *testing.T) {
			if !off && ring == nil {
				t.Skip("io_uring unavailable")
			}
			noSendRing = off
			t.Cleanup(func() { noSendRing = false })
		}
	}
	return []struct {
		name  string
		off   bool
		setup func(*testing.T)
	}{{"io_uring", false, set(false)}, {"one call per send", true, set(true)}}
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
func runTCPProxy(t *testing.T, cl *Cluster) *TCPProxy {
	t.Helper()
	p, err := NewTCPProxy("127.0.0.1:0", cl, WithEventLoops(1))
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
