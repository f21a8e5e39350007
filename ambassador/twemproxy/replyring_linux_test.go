//go:build linux

package twemproxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/uring/uringtest"
)

// ringTraffic runs clients clients through the pool at addr, each sending batches pipelined
// batches of 16 GETs of its own keys and reading the 16 replies ("v-" + key, as valueRedis
// answers), and returns for each client how many replies it read before the proxy closed it
// (batches*16: all). Every reply read must be the right one, in order: none lost, repeated or
// out of place.
func ringTraffic(t *testing.T, addr string, clients, batches int) []int {
	t.Helper()
	got := make([]int, clients)
	var wg sync.WaitGroup
	for ci := range clients {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			for b := range batches {
				var req strings.Builder
				var want []string
				for i := range 16 {
					k := fmt.Sprintf("k-%d-%d-%d", ci, b, i)
					req.WriteString(encodeCmd("GET", k))
					want = append(want, bulk("v-"+k))
				}
				if _, err := io.WriteString(c, req.String()); err != nil {
					return // closed by the proxy
				}
				for _, w := range want {
					buf := make([]byte, len(w))
					if _, err := io.ReadFull(br, buf); err != nil {
						if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
							t.Errorf("client %d: %v", ci, err)
						}
						return
					}
					if string(buf) != w {
						t.Errorf("client %d: reply %d is %q, want %q", ci, got[ci], buf, w)
						return
					}
					got[ci]++
				}
			}
		})
	}
	wg.Wait()
	return got
}

// valueRedis answers GET k with "v-" + k.
func valueRedis(t *testing.T) *fakeRedis {
	return startFakeRedis(t, func(_, _ int, args []string) string { return bulk("v-" + args[1]) })
}

// startRingPool starts a redis pool over two valueRedis servers, logging to the returned logs.
func startRingPool(t *testing.T) (string, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	addr, _, _ := twemproxytest.StartPool(t, "r", true, "", []string{valueRedis(t).addr(), valueRedis(t).addr()},
		twemproxy.Protocols{Redis: &redis.Protocol{}}, twemproxy.WithLogger(zap.New(core)))
	return addr, logs
}

func countLogs(logs *observer.ObservedLogs, prefix string) int {
	n := 0
	for _, e := range logs.All() {
		if strings.HasPrefix(e.Message, prefix) {
			n++
		}
	}
	return n
}

func checkAll(t *testing.T, got []int, want int) {
	t.Helper()
	for ci, n := range got {
		if n != want {
			t.Errorf("client %d read %d replies, want %d", ci, n, want)
		}
	}
}

// The poller writes its clients' replies through io_uring, all of a round's in one
// io_uring_enter, and every client gets every reply once and in order.
func TestReplyRingWritesRepliesInOrder(t *testing.T) {
	if why := uringtest.Probe(); why != "" {
		t.Skipf("io_uring unavailable here: %s", why)
	}
	counts := uringtest.Inject(t, uringtest.Faults{}) // before the pool makes its ring
	addr, logs := startRingPool(t)
	checkAll(t, ringTraffic(t, addr, 8, 50), 50*16)
	if counts.Setups.Load() == 0 || counts.Enters.Load() == 0 {
		t.Errorf("io_uring_setup called %d times, io_uring_enter %d: the replies were not written through the ring",
			counts.Setups.Load(), counts.Enters.Load())
	}
	if n := countLogs(logs, "io_uring"); n != 0 {
		t.Errorf("%d io_uring log entries, want none: %v", n, logs.All())
	}
}

// Where io_uring_setup is refused (a seccomp profile, kernel.io_uring_disabled), the replies are
// written with write(2), and the pool says so once.
func TestReplyRingSetupRefused(t *testing.T) {
	counts := uringtest.Inject(t, uringtest.Faults{SetupErr: syscall.EPERM})
	addr, logs := startRingPool(t)
	checkAll(t, ringTraffic(t, addr, 8, 50), 50*16)
	if counts.Setups.Load() != 1 || counts.Enters.Load() != 0 {
		t.Errorf("io_uring_setup called %d times, io_uring_enter %d; want 1 and 0", counts.Setups.Load(), counts.Enters.Load())
	}
	if n := countLogs(logs, "io_uring unavailable"); n != 1 {
		t.Errorf("%d \"io_uring unavailable\" log entries, want 1: %v", n, logs.All())
	}
}

// Where io_uring_enter starts failing mid-run (refused before the kernel took anything), the
// poller gives up its ring after the first failure, writes the replies it could not make with
// write(2), and says so once: every client still gets every reply once and in order.
func TestReplyRingEnterRefusedMidRun(t *testing.T) {
	if why := uringtest.Probe(); why != "" {
		t.Skipf("io_uring unavailable here: %s", why)
	}
	counts := uringtest.Inject(t, uringtest.Faults{EnterOK: 20})
	addr, logs := startRingPool(t)
	checkAll(t, ringTraffic(t, addr, 8, 50), 50*16)
	if r := counts.Refused.Load(); r != 1 {
		t.Errorf("%d io_uring_enter calls refused, want 1 (the ring is given up after the first)", r)
	}
	if n := countLogs(logs, "io_uring_enter failed"); n != 1 {
		t.Errorf("%d \"io_uring_enter failed\" log entries, want 1: %v", n, logs.All())
	}
}

// A write whose outcome is lost (the kernel took it, then io_uring_enter failed) may or may not
// have reached the client: its connection is closed rather than written again, which could repeat
// replies. The other clients go on, through write(2) from then on.
func TestReplyRingLostWriteClosesClient(t *testing.T) {
	if why := uringtest.Probe(); why != "" {
		t.Skipf("io_uring unavailable here: %s", why)
	}
	_, picked := uringtest.LoseCompletions(t, 10, func(fds []int) bool { return len(fds) == 1 })
	addr, logs := startRingPool(t)
	got := ringTraffic(t, addr, 8, 50)
	if picked.Load() != 1 {
		t.Fatalf("%d io_uring_enter calls lost their completions, want 1", picked.Load())
	}
	closed := 0
	for _, n := range got {
		if n != 50*16 {
			closed++
		}
	}
	if closed != 1 {
		t.Errorf("%d clients cut off (%v), want the 1 whose write was lost", closed, got)
	}
	if n := countLogs(logs, "io_uring_enter failed"); n != 1 {
		t.Errorf("%d \"io_uring_enter failed\" log entries, want 1: %v", n, logs.All())
	}
	// New clients are served, with write(2).
	checkAll(t, ringTraffic(t, addr, 2, 10), 10*16)
}
