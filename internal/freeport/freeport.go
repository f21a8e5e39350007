// Package freeport picks loopback addresses that were free a moment ago, for tests that must pass
// an address to a process or server before it listens (flags, config files).
//
// The address is released before it is returned, so another process may take it first; tests that
// can hand over a listener should do that instead.
package freeport

import (
	"net"
	"testing"
)

// Port returns a loopback TCP port no listener had a moment ago, for callers without a testing.TB
// (benchmark harnesses, helpers that return errors).
func Port() (int, error) { return On("127.0.0.1:0") }

// On returns a TCP port no listener had a moment ago on the host of addr (whose port is 0: "[::1]:0",
// "[::]:0" for every address), or the error of listening there (a host this machine lacks).
func On(addr string) (int, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// TCP returns a 127.0.0.1:port address no TCP listener had a moment ago.
func TCP(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("freeport: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// UDP returns a 127.0.0.1:port address no UDP socket had a moment ago.
func UDP(t testing.TB) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("freeport: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}
