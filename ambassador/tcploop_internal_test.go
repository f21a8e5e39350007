//go:build linux

package ambassador

import (
	"context"
	"io"
	"net"
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
			defer func() { afterShortRead = nil }()
			p, err := NewTCPProxy("127.0.0.1:0", cl, WithEventLoops(1))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run = %v", err)
				}
			}()
			<-p.Ready()
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
