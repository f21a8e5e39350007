// Package loopback runs throwaway TCP servers on 127.0.0.1 for tests and benchmarks: fake backends
// whose per-connection behaviour is a func.
package loopback

import (
	"net"
	"sync"
	"testing"
)

// Serve listens on a free loopback port and calls serve on its own goroutine for every accepted
// connection, i counting connections from 0; the connection is closed when serve returns. At the
// end of the test the listener and every connection are closed and Serve waits for the serve
// calls to return. It returns the listening address.
func Serve(tb testing.TB, serve func(i int, c net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); serve(i, c) }()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
