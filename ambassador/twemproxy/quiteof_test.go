package twemproxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// A quit (memcache) or QUIT (redis) counts as the client's end of stream (client_eof), once, as
// under nutcracker 0.5.0, which counts it whether or not the client shuts its side first (measured
// with nutcracker's stats port). The old code counted nothing for it.
func TestQuitCountsClientEOF(t *testing.T) {
	for _, tc := range quitCases {
		t.Run(tc.name, func(t *testing.T) { testQuitCountsClientEOF(t, tc) })
	}
}

func testQuitCountsClientEOF(t *testing.T, tc quitCase) {
	be := quitBackend(t, tc)
	protos := twemproxy.Protocols{Memcache: &memcache.Protocol{}, Redis: &redis.Protocol{}}
	for _, mode := range clientModes {
		addr, srv, _ := twemproxytest.StartPool(t, "q", tc.redis, "", []string{be.Addr}, protos, mode.opts...)
		if out, werr, rerr := twemproxytest.SendAndRead(t, addr, []byte(tc.in)); string(out) != tc.want || werr != nil || rerr != nil {
			t.Fatalf("%s clients: read %q (error %v), want %q; the write: %v", mode.name, out, rerr, tc.want, werr)
		}
		await.True(t, "the quit counted", 10*time.Second, func() bool {
			ps := srv.Snapshot()[0]
			return ps.ClientEOF+ps.ClientErr > 0
		})
		if ps := srv.Snapshot()[0]; ps.ClientEOF != 1 || ps.ClientErr != 0 {
			t.Errorf("%s clients: a quit counted as client_eof %d, client_err %d; want client_eof 1 (nutcracker's count)",
				mode.name, ps.ClientEOF, ps.ClientErr)
		}
	}
	if !shardproc.Have(shardproc.NutcrackerPath) {
		return
	}
	eof, cerr := nutcrackerQuitCounts(t, tc, be.Addr)
	if eof != 1 || cerr != 0 {
		t.Errorf("nutcracker counted a quit as client_eof %d, client_err %d; want client_eof 1", eof, cerr)
	}
}

// nutcrackerQuitCounts runs nutcracker over backend, sends it tc.in, and returns its pool's
// client_eof and client_err for it.
func nutcrackerQuitCounts(t *testing.T, tc quitCase, backend string) (eof, cerr int64) {
	t.Helper()
	ports, err := shardproc.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	conf := fmt.Sprintf("q:\n  listen: %s\n  redis: %t\n  servers:\n   - %s:1\n", addr, tc.redis, backend)
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	nc, err := shardproc.StartNutcracker(path, ports[1], addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Stop)
	// nutcracker publishes its counts after its event loop's next event: connect now and then
	// (and stay connected, which counts no end) until they show.
	settled := func(what string, above int64) (eof, cerr int64) {
		await.True(t, what, 20*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			time.Sleep(100 * time.Millisecond)
			eof, cerr = nutcrackerClientCounts(t, ports[1])
			return eof+cerr > above
		})
		return eof, cerr
	}
	// StartNutcracker's probe of addr, a connection it closes, counts as one end.
	eof0, cerr0 := settled("nutcracker's count of the probe", 0)
	if out, werr, rerr := twemproxytest.SendAndRead(t, addr, []byte(tc.in)); string(out) != tc.ncWant || werr != nil || rerr != nil {
		t.Fatalf("nutcracker: read %q (error %v), want %q; the write: %v", out, rerr, tc.ncWant, werr)
	}
	eof, cerr = settled("nutcracker's count of the quit", eof0+cerr0)
	return eof - eof0, cerr - cerr0
}

// nutcrackerClientCounts reads nutcracker's stats on port and returns pool q's client_eof and
// client_err.
func nutcrackerClientCounts(t *testing.T, port int) (eof, cerr int64) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Q struct {
			EOF int64 `json:"client_eof"`
			Err int64 `json:"client_err"`
		} `json:"q"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("nutcracker's stats %q: %v", b, err)
	}
	return doc.Q.EOF, doc.Q.Err
}

// The help of client_eof, which -D prints, and of its metric say that a quit counts in it (see
// TestQuitCountsClientEOF); they used to name only the clients that closed their side.
func TestClientEOFHelpNamesQuit(t *testing.T) {
	var help []string
	for _, f := range twemproxy.StatsFields() {
		if f.Name == "client_eof" {
			help = append(help, f.Help)
		}
	}
	cfg := parseConfig(t, "q:\n  listen: 127.0.0.1:1\n  servers:\n   - 127.0.0.1:1:1\n")
	srv, err := twemproxy.NewServer(cfg, twemproxy.Protocols{Memcache: &memcache.Protocol{}})
	if err != nil {
		t.Fatal(err)
	}
	descs := make(chan *prometheus.Desc, 100)
	srv.Collector().Describe(descs)
	close(descs)
	for d := range descs {
		if s := d.String(); strings.Contains(s, `"podblocks_sharding_client_eof_total"`) {
			help = append(help, s)
		}
	}
	if len(help) != 2 {
		t.Fatalf("found %d helps of client_eof (%q), want the stats field's and the metric's", len(help), help)
	}
	for _, h := range help {
		if !strings.Contains(h, "quit") || !strings.Contains(h, "QUIT") {
			t.Errorf("client_eof's help %q does not name quit (memcache) and QUIT (redis)", h)
		}
	}
}
