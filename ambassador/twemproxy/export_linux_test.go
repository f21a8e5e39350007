//go:build linux

package twemproxy

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// SetRoundSessionHook makes the poller run f at the start of every server session's event in its
// rounds, until the returned function restores the hook. Set it only while no pool runs.
func SetRoundSessionHook(f func()) (restore func()) {
	old := testHookRoundSession
	testHookRoundSession = f
	return func() { testHookRoundSession = old }
}

// PollerClient is a client of a pool as the poller sees it (see PollerClients).
type PollerClient struct {
	InEpollSet bool // its socket is registered in the pool's epoll set
	Unwritten  int  // bytes of its replies not written yet
	Closed     bool // its connection is closed
}

// PollerClients returns the pool's clients, lingering ones included: whether the poller's epoll
// set holds each one's socket (read from /proc/self/fdinfo of the set), and how much of its
// replies waits unwritten.
func PollerClients(s *Server, pool string) ([]PollerClient, error) {
	p := runningPool(s, pool)
	if p == nil || p.poller == nil {
		return nil, errors.New("no poller")
	}
	var epfd uintptr
	if err := p.poller.raw.Control(func(fd uintptr) { epfd = fd }); err != nil {
		return nil, err
	}
	info, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", epfd))
	if err != nil {
		return nil, err
	}
	set := map[uintptr]bool{}
	for _, l := range strings.Split(string(info), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "tfd:" {
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("fdinfo line %q: %w", l, err)
			}
			set[uintptr(n)] = true
		}
	}
	p.clientMu.Lock()
	defer p.clientMu.Unlock()
	var out []PollerClient
	for c := range p.clients {
		var pc PollerClient
		sc, ok := c.conn.(syscall.Conn)
		if !ok {
			return nil, errors.New("a client connection without a descriptor")
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return nil, err
		}
		if raw.Control(func(fd uintptr) { pc.InEpollSet = set[fd] }) != nil {
			pc.Closed = true
		}
		pc.Unwritten = c.unwritten()
		out = append(out, pc)
	}
	return out, nil
}
