package twemproxy_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/freeport"
)

// A server's failure is answered with nutcracker 0.5.0's text, the strerror of the errno behind
// it, as Debian's nutcracker answered each case (alerting rules match these strings): the details
// (the server's address, Go's wording) go to the log. The old code answered "dial 127.0.0.1:PORT:
// connection refused", "twemproxy: server timed out", "twemproxy: no live servers", "connection
// closed by server", "twemproxy: bad server response: ...".
func TestServerErrorReplies(t *testing.T) {
	redisProto := twemproxy.Protocols{Redis: &redis.Protocol{}}
	refused := freeport.TCP(t) // nothing listens there
	for _, tc := range []struct {
		name    string
		backend func(t *testing.T) string
		extra   string
		want    []string // the replies to GET k, one after the other
	}{
		{"refused", func(*testing.T) string { return refused }, "", []string{"-ERR Connection refused"}},
		{"all ejected", func(*testing.T) string { return refused },
			"  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 30000\n",
			[]string{"-ERR Connection refused", "-ERR Connection refused"}},
		{"timed out", func(t *testing.T) string {
			return startFakeRedis(t, func(int, int, []string) string { return "hang" }).addr()
		}, "  timeout: 200\n", []string{"-ERR Connection timed out"}},
		{"closed by the server", func(t *testing.T) string {
			return startFakeRedis(t, func(int, int, []string) string { return "close" }).addr()
		}, "", []string{"-ERR unknown"}},
		{"bad response", func(t *testing.T) string {
			return startFakeRedis(t, func(int, int, []string) string { return "x\r\n" }).addr()
		}, "", []string{"-ERR Invalid argument"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.WarnLevel)
			addr, srv, _ := twemproxytest.StartPool(t, "r", true, tc.extra, []string{tc.backend(t)}, redisProto,
				twemproxy.WithLogger(zap.New(core)))
			c := dialResp(t, addr)
			for i, want := range tc.want {
				if got := c.do(t, "GET", "k"); got != want {
					t.Errorf("reply %d: got %q, want %q", i, got, want)
				}
				// The second reply is the one to a pool with no live server: the first
				// failure ejected the only one (server_failure_limit 1).
				if tc.name == "all ejected" && i == 0 {
					await.True(t, "the server's ejection", 10*time.Second, func() bool {
						return srv.Snapshot()[0].Servers[0].Ejected
					})
				}
			}
			if tc.name == "refused" {
				found := false
				for _, e := range logs.FilterMessage("server connect failed").All() {
					found = found || strings.Contains(e.ContextMap()["error"].(string), refused)
				}
				if !found {
					t.Errorf("no log of the refused dial naming %s: %v", refused, logs.All())
				}
			}
		})
	}
}

// A multi-key request with a key on a refused server gets the refused fragment's text.
func TestServerErrorReplyMerged(t *testing.T) {
	be := startFakeRedis(t, func(_, _ int, args []string) string { return "*1\r\n" + bulk("v") })
	refused := freeport.TCP(t)
	addr, _, pc := twemproxytest.StartPool(t, "r", true, "", []string{be.addr(), refused},
		twemproxy.Protocols{Redis: &redis.Protocol{}})
	c := dialResp(t, addr)
	if got := c.do(t, "MGET", keyOn(t, pc, be.addr()), keyOn(t, pc, refused)); got != "-ERR Connection refused" {
		t.Errorf("MGET across a refused server: %q", got)
	}
}

// A memcache pool answers with SERVER_ERROR and the same text.
func TestServerErrorReplyMemcache(t *testing.T) {
	addr, _, _ := twemproxytest.StartPool(t, "m", false, "", []string{freeport.TCP(t)},
		twemproxy.Protocols{Memcache: &memcache.Protocol{}})
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "get k\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := "SERVER_ERROR Connection refused\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
