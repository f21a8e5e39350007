package twemproxy_test

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/lifecycletest"
)

// dualFreePort returns a port that no listener had a moment ago on any address, IPv4 or IPv6.
func dualFreePort(t *testing.T) string {
	t.Helper()
	port, err := freeport.On("[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(port)
}

// A pool on 0.0.0.0:P beside a pool on an IPv6 address on P (::1, this machine's other IPv6
// addresses, a link-local one with its zone) runs and serves both, as under nutcracker, whose
// 0.0.0.0 is IPv4 only. A client of [::1]:R, with a pool on 0.0.0.0:R alone, is refused, as
// nutcracker refuses it. The old
// code listened on 0.0.0.0 for IPv6 too: it refused such a config as colliding (before that, it
// failed to bind the second), and served [::1]:R.
func TestWildcardIPv4LeavesIPv6Free(t *testing.T) {
	hosts := []string{"::1"}
	for _, h := range twemproxy.MachineHosts(t) {
		if strings.Contains(h, ":") {
			hosts = append(hosts, h)
		}
	}
	for _, h := range hosts {
		t.Run(h, func(t *testing.T) {
			if ln, err := net.Listen("tcp", net.JoinHostPort(h, "0")); err != nil {
				t.Skipf("%s cannot be bound here: %v", h, err)
			} else {
				ln.Close()
			}
			p, r := dualFreePort(t), dualFreePort(t)
			c := "c:\n  listen: 0.0.0.0:" + r + "\n  servers:\n   - 127.0.0.1:1:1\n"
			cfg, err := twemproxy.Parse([]byte(kindsYAML("0.0.0.0:"+p, h+":"+p, c)))
			if err != nil {
				t.Fatalf("Parse of pools on 0.0.0.0:%s and %s:%s: %v", p, h, p, err)
			}
			srv, err := twemproxy.NewServer(cfg, bothProtocols)
			if err != nil {
				t.Fatal(err)
			}
			run := lifecycletest.StartReady(t, srv, 10*time.Second)
			checkKinds(t, srv, "tcp", map[string]string{
				"127.0.0.1:" + p: "memcache", net.JoinHostPort(h, p): "redis", "127.0.0.1:" + r: "memcache",
			}, "a", "b", "c")
			if c, err := net.DialTimeout("tcp", "[::1]:"+r, 5*time.Second); err == nil {
				c.Close()
				t.Errorf("[::1]:%s reached pool c on 0.0.0.0:%s; nutcracker's 0.0.0.0 is IPv4 only", r, r)
			}
			if err := run.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The stats listener on 0.0.0.0:P is bound as a pool's, IPv4 only, as nutcracker's: it runs beside
// a pool on ::1:P. The old code listened on 0.0.0.0 for IPv6 too, and Run failed to bind it.
func TestStatsWildcardIPv4LeavesIPv6Free(t *testing.T) {
	freeIPv6Port(t)
	p := dualFreePort(t)
	srv, err := twemproxy.NewServer(parseConfig(t, kindsYAML("::1:"+p, "127.0.0.1:"+dualFreePort(t), "")), bothProtocols,
		twemproxy.WithStatsAddr("0.0.0.0:"+p))
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	checkKinds(t, srv, "tcp", map[string]string{"[::1]:" + p: "memcache"}, "a", "b")
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+p, 5*time.Second)
	if err != nil {
		t.Fatalf("the stats listener on 0.0.0.0:%s: %v", p, err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if doc, err := io.ReadAll(c); err != nil || !strings.Contains(string(doc), `"a"`) {
		t.Errorf("the stats listener on 0.0.0.0:%s answered %q, %v; want a stats document", p, doc, err)
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// The error on two colliding listen addresses says what a wildcard host takes of the port only
// when one of them is a wildcard; the old code said it of any two.
func TestCollisionErrorExplainsWildcardOnly(t *testing.T) {
	for _, tc := range []struct{ a, b, why string }{
		{"127.0.0.1:22121", `"[::ffff:127.0.0.1]:22121"`, ""},
		{"0.0.0.0:22121", "127.0.0.2:22121", `(the wildcard host "0.0.0.0" takes the port on every IPv4 address)`},
	} {
		_, err := twemproxy.Parse([]byte(kindsYAML(tc.a, tc.b, "")))
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("Parse of pools on %s and %s: %v, want address in use", tc.a, tc.b, err)
			continue
		}
		if got := strings.Contains(err.Error(), "wildcard"); got != (tc.why != "") || tc.why != "" && !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Parse of pools on %s and %s: %v, want it to explain %q", tc.a, tc.b, err, tc.why)
		}
	}
}
