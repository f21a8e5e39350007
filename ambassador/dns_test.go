package ambassador_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/ambassadortest"
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
