// Package freeport picks loopback addresses that were free a moment ago, for tests that must pass
// an address to a process or server before it listens (flags, config files).
//
// The address is released before it is returned, so another process may take it first; tests that
// can hand over a listener should do that instead. To make that rare, ports are drawn at random from
// below the kernel's ephemeral range (ip_local_port_range on Linux): a port there is not taken by
// the source port of some other test's outgoing connection, nor by another listener on port 0, in
// the seconds between the pick and the bind, or while a server that owns it is stopped for a
// restart. One process never hands out the same port twice.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the smallest port handed out; ports below it are left to well-known services.
const lowest = 15000

// ephemeralStart is where the kernel's ephemeral ports begin: Linux's ip_local_port_range, else the
// IANA dynamic range that the BSDs, macOS and Windows use.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				return n
			}
		}
	}
	return 49152
}

var (
	mu     sync.Mutex
	handed = map[int]bool{} // every port this process returned
)

// pick returns a port in [lowest, ephemeral start) that this process has not returned before and
// that open could bind (the listener or socket is closed again), or, when the range below the
// ephemeral ports is too small or full, a port the kernel assigns.
func pick(open func(port int) (net.Addr, func() error, error)) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	if top := ephemeralStart(); top-lowest >= 1000 {
		for range 200 {
			p := lowest + rand.IntN(top-lowest)
			if handed[p] {
				continue
			}
			_, closeFn, err := open(p)
			if err != nil {
				continue // taken, or not ours to take
			}
			closeFn()
			handed[p] = true
			return p, nil
		}
	}
	// Kernel-assigned: still never the same port twice, as far as the kernel's cycling allows.
	for range 100 {
		addr, closeFn, err := open(0)
		if err != nil {
			return 0, err
		}
		closeFn()
		p := port(addr)
		if !handed[p] {
			handed[p] = true
			return p, nil
		}
	}
	return 0, errors.New("freeport: the kernel keeps assigning ports this process already handed out")
}

func port(a net.Addr) int {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	return 0
}

// Port returns a loopback TCP port no listener had a moment ago, for callers without a testing.TB
// (benchmark harnesses, helpers that return errors).
func Port() (int, error) { return On("127.0.0.1:0") }

// On returns a TCP port no listener had a moment ago on the host of addr (whose port is 0: "[::1]:0",
// "[::]:0" for every address), or the error of listening there (a host this machine lacks).
func On(addr string) (int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	if p != "0" {
		return 0, fmt.Errorf("freeport: address %q: want port 0", addr)
	}
	return pick(func(port int) (net.Addr, func() error, error) {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, nil, err
		}
		return ln.Addr(), ln.Close, nil
	})
}

// TCP returns a 127.0.0.1:port address no TCP listener had a moment ago.
func TCP(t testing.TB) string {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatalf("freeport: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// UDP returns a 127.0.0.1:port address no UDP socket had a moment ago.
func UDP(t testing.TB) string {
	t.Helper()
	p, err := pick(func(port int) (net.Addr, func() error, error) {
		c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return nil, nil, err
		}
		return c.LocalAddr(), c.Close, nil
	})
	if err != nil {
		t.Fatalf("freeport: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}
