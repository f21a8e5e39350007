package ambassador_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
	"golang.org/x/net/dns/dnsmessage"
)

func TestDNSSource(t *testing.T) {
	srv := ambassadortest.NewDNSServer(t)
	srv.SetA("web.test", netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"))
	srv.SetA("a.web.test", netip.MustParseAddr("127.0.0.4"))
	srv.SetA("b.web.test", netip.MustParseAddr("127.0.0.5"))
	srv.SetSRV("_http._tcp.web.test", ambassadortest.SRV{Target: "a.web.test", Port: 8080, Weight: 3},
		ambassadortest.SRV{Target: "b.web.test", Port: 9090, Weight: 1})

	for _, tc := range []struct {
		name string
		src  *ambassador.DNS
		want []ambassador.Endpoint
	}{
		{"A", &ambassador.DNS{Name: "web.test.", Port: 80},
			[]ambassador.Endpoint{{Addr: "127.0.0.2:80", Weight: 1}, {Addr: "127.0.0.3:80", Weight: 1}}},
		{"SRV", &ambassador.DNS{Name: "_http._tcp.web.test.", SRV: true},
			[]ambassador.Endpoint{{Addr: "127.0.0.4:8080", Weight: 3}, {Addr: "127.0.0.5:9090", Weight: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.src.Resolver = srv.Resolver()
			tc.src.Interval = 50 * time.Millisecond
			errc := make(chan error, 1)
			ctx := t.Context()
			go func() { errc <- tc.src.Run(ctx) }()
			t.Cleanup(func() {
				if err := <-errc; err != nil {
					t.Errorf("Run: %v", err)
				}
			})
			waitEndpoints(t, tc.src, tc.want)
		})
	}

	// Re-resolution: an address disappears and another appears; a failed lookup keeps the set.
	src := &ambassador.DNS{Name: "web.test.", Port: 80, Resolver: srv.Resolver(), Interval: 50 * time.Millisecond}
	errc := make(chan error, 1)
	ctx := t.Context()
	go func() { errc <- src.Run(ctx) }()
	t.Cleanup(func() { <-errc })
	waitEndpoints(t, src, []ambassador.Endpoint{{Addr: "127.0.0.2:80", Weight: 1}, {Addr: "127.0.0.3:80", Weight: 1}})
	srv.SetA("web.test", netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.9"))
	waitEndpoints(t, src, []ambassador.Endpoint{{Addr: "127.0.0.3:80", Weight: 1}, {Addr: "127.0.0.9:80", Weight: 1}})
	srv.SetA("web.test") // NXDOMAIN: keep the last set
	time.Sleep(200 * time.Millisecond)
	got, _ := src.Endpoints()
	if diff := cmp.Diff([]ambassador.Endpoint{{Addr: "127.0.0.3:80", Weight: 1}, {Addr: "127.0.0.9:80", Weight: 1}}, got); diff != "" {
		t.Errorf("after a failed lookup (-want +got):\n%s", diff)
	}
}

func waitEndpoints(t *testing.T, src ambassador.Source, want []ambassador.Endpoint) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, ch := src.Endpoints()
		if cmp.Equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoints (-want +got):\n%s", cmp.Diff(want, got))
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestDNSSRVPriorityWeightsAndTargets: only the lowest priority whose targets resolve is used,
// weights are used as they are, weight 0 counting as 1 (a small share beside larger weights, an
// equal one when all are 0), and a target that does not resolve is left out while the others are
// taken.
func TestDNSSRVPriorityWeightsAndTargets(t *testing.T) {
	srv := ambassadortest.NewDNSServer(t)
	srv.SetA("a.web.test", netip.MustParseAddr("127.0.0.4"))
	srv.SetA("b.web.test", netip.MustParseAddr("127.0.0.5"))
	srv.SetA("backup.web.test", netip.MustParseAddr("127.0.0.6"))
	d := &ambassador.DNS{Name: "_http._tcp.web.test.", SRV: true, Resolver: srv.Resolver()}
	for _, tc := range []struct {
		name string
		recs []ambassadortest.SRV
		want []ambassador.Endpoint
	}{
		{"lowest priority only", []ambassadortest.SRV{
			{Target: "a.web.test", Port: 80, Weight: 3, Priority: 10},
			{Target: "b.web.test", Port: 80, Weight: 0, Priority: 10},
			{Target: "backup.web.test", Port: 80, Weight: 5, Priority: 20},
		}, []ambassador.Endpoint{{Addr: "127.0.0.4:80", Weight: 3}, {Addr: "127.0.0.5:80", Weight: 1}}},
		{"weights as they are", []ambassadortest.SRV{
			{Target: "a.web.test", Port: 80, Weight: 33}, {Target: "b.web.test", Port: 80, Weight: 33},
			{Target: "backup.web.test", Port: 80, Weight: 34},
		}, []ambassador.Endpoint{{Addr: "127.0.0.4:80", Weight: 33}, {Addr: "127.0.0.5:80", Weight: 33},
			{Addr: "127.0.0.6:80", Weight: 34}}},
		{"all weights 0", []ambassadortest.SRV{
			{Target: "a.web.test", Port: 80}, {Target: "b.web.test", Port: 80},
		}, []ambassador.Endpoint{{Addr: "127.0.0.4:80", Weight: 1}, {Addr: "127.0.0.5:80", Weight: 1}}},
		{"largest weight", []ambassadortest.SRV{
			{Target: "a.web.test", Port: 80, Weight: 65535}, {Target: "b.web.test", Port: 80, Weight: 1},
		}, []ambassador.Endpoint{{Addr: "127.0.0.4:80", Weight: 65535}, {Addr: "127.0.0.5:80", Weight: 1}}},
		{"unresolvable target left out", []ambassadortest.SRV{
			{Target: "a.web.test", Port: 80, Weight: 1},
			{Target: "gone.web.test", Port: 80, Weight: 1},
		}, []ambassador.Endpoint{{Addr: "127.0.0.4:80", Weight: 1}}},
		{"no target of the first priority resolves", []ambassadortest.SRV{
			{Target: "gone.web.test", Port: 80, Weight: 1, Priority: 1},
			{Target: "backup.web.test", Port: 8080, Weight: 1, Priority: 2},
		}, []ambassador.Endpoint{{Addr: "127.0.0.6:8080", Weight: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetSRV("_http._tcp.web.test", tc.recs...)
			got, err := d.Resolve(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(got, func(a, b ambassador.Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	srv.SetSRV("_http._tcp.web.test", ambassadortest.SRV{Target: "gone.web.test", Port: 80})
	if got, err := d.Resolve(t.Context()); err == nil {
		t.Errorf("Resolve with no target resolving = %v, want an error (the last set is kept)", got)
	}
}

// TestDNSSRVRingKeepsKeysOnEjection: three pods of SRV weight 33 (CoreDNS's share for a headless
// Service's records) balanced by a ring: ejecting one moves none of the others' keys.
func TestDNSSRVRingKeepsKeysOnEjection(t *testing.T) {
	srv := ambassadortest.NewDNSServer(t)
	var recs []ambassadortest.SRV
	for i := range 3 {
		name := fmt.Sprintf("pod%d.web.test", i)
		srv.SetA(name, netip.AddrFrom4([4]byte{10, 1, 0, byte(i + 1)}))
		recs = append(recs, ambassadortest.SRV{Target: name, Port: 8080, Weight: 33})
	}
	srv.SetSRV("_http._tcp.web.test", recs...)
	d := &ambassador.DNS{Name: "_http._tcp.web.test.", SRV: true, Resolver: srv.Resolver()}
	eps, err := d.Resolve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(eps, func(a, b ambassador.Endpoint) int { return strings.Compare(a.Addr, b.Addr) })
	for gone := range eps {
		if moved, kept := survivorMoves(eps, gone); moved != 0 {
			t.Errorf("weights %v: ejecting %s moved %d of the survivors' %d keys, want 0", eps, eps[gone].Addr, moved, kept)
		}
	}
}

// TestDNSSRVTargetLookupFailureKeepsSet: a target whose lookup fails for any reason but not found
// (here every read of its answers fails) fails the whole lookup, so a Run keeps the last set with
// that target in it, instead of dropping a live endpoint; nor does the lookup fall back to a
// backup priority.
func TestDNSSRVTargetLookupFailureKeepsSet(t *testing.T) {
	srv := ambassadortest.NewDNSServer(t)
	srv.SetA("a.web.test", netip.MustParseAddr("127.0.0.4"))
	srv.SetA("b.web.test", netip.MustParseAddr("127.0.0.5"))
	srv.SetA("backup.web.test", netip.MustParseAddr("127.0.0.6"))
	srv.SetSRV("_http._tcp.web.test", ambassadortest.SRV{Target: "a.web.test", Port: 80, Weight: 1, Priority: 1},
		ambassadortest.SRV{Target: "b.web.test", Port: 80, Weight: 1, Priority: 1},
		ambassadortest.SRV{Target: "backup.web.test", Port: 80, Weight: 1, Priority: 2})
	var failB atomic.Bool
	d := &ambassador.DNS{Name: "_http._tcp.web.test.", SRV: true, Interval: 50 * time.Millisecond,
		Resolver: failingResolver(srv.Addr, "b.web.test.", &failB)}
	errc := make(chan error, 1)
	ctx := t.Context()
	go func() { errc <- d.Run(ctx) }()
	t.Cleanup(func() { <-errc })
	both := []ambassador.Endpoint{{Addr: "127.0.0.4:80", Weight: 1}, {Addr: "127.0.0.5:80", Weight: 1}}
	waitEndpoints(t, d, both)

	failB.Store(true)
	if got, err := d.Resolve(t.Context()); err == nil {
		t.Errorf("Resolve with b.web.test's answers lost = %v, want an error", got)
	}
	time.Sleep(300 * time.Millisecond) // several lookups
	if got, _ := d.Endpoints(); !cmp.Equal(both, got) {
		t.Errorf("after lookups with b.web.test's answers lost (-want +got):\n%s", cmp.Diff(both, got))
	}

	// Not found is another matter: the target is left out while the other updates.
	failB.Store(false)
	srv.SetA("b.web.test")
	waitEndpoints(t, d, []ambassador.Endpoint{{Addr: "127.0.0.4:80", Weight: 1}})
}

// failingResolver returns a pure-Go resolver that asks the DNS server at addr, except that while
// fail is true, every read of the answer to a question for name fails.
func failingResolver(addr, name string, fail *atomic.Bool) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		c, err := dialer.DialContext(ctx, "udp", addr)
		if err != nil {
			return nil, err
		}
		return &failingConn{UDPConn: c.(*net.UDPConn), name: name, fail: fail}, nil
	}}
}

// failingConn is a UDP connection to a DNS server whose reads fail after a question for name while
// fail is true. It is a net.PacketConn, so the resolver sends its questions as datagrams.
type failingConn struct {
	*net.UDPConn
	name    string
	fail    *atomic.Bool
	failing bool
}

func (c *failingConn) Write(b []byte) (int, error) {
	var p dnsmessage.Parser
	c.failing = false
	if _, err := p.Start(b); err == nil {
		if q, err := p.Question(); err == nil {
			c.failing = c.fail.Load() && strings.EqualFold(q.Name.String(), c.name)
		}
	}
	return c.UDPConn.Write(b)
}

func (c *failingConn) Read(b []byte) (int, error) {
	if c.failing {
		return 0, errors.New("read: connection reset (test)")
	}
	return c.UDPConn.Read(b)
}
