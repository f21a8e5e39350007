package twemproxy_test

import (
	"strings"
	"testing"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// quitCase is a request, then quit, of a protocol; want is the proxy's reply to both, ncWant
// nutcracker 0.5.0's (measured).
type quitCase struct {
	name, in, want, ncWant string
	redis                  bool
	server                 func() (*shardproc.Proc, error)
	path                   string
}

var quitCases = []quitCase{
	{"memcache", "get a\r\nquit\r\n", "END\r\n", "END\r\n", false, shardproc.StartMemcached, shardproc.MemcachedPath},
	// redis-server answers QUIT with +OK, and so does the proxy: nutcracker 0.5.0 answers nothing.
	{"redis", encodeCmd("GET", "a") + encodeCmd("QUIT"), "$-1\r\n+OK\r\n", "$-1\r\n", true, shardproc.StartRedis, shardproc.RedisPath},
}

// clientModes are the ways a pool serves its clients: on Linux with the poller and raw system
// calls, and as on other systems (WithPortableClients), where each client's goroutines read and
// write it through net.Conn.
var clientModes = []struct {
	name string
	opts []twemproxy.Option
}{
	{"native", nil},
	{"portable", []twemproxy.Option{twemproxy.WithPortableClients()}},
}

// A client that sends more after quit (memcache) or QUIT (redis), such as pipelined requests, reads
// the replies, then the end of the stream, and what it sent is taken, as under nutcracker when the
// rest comes in its read: the proxy shuts its side after the replies and reads the rest before it
// closes. The old code closed the connection with the rest unread, which sends a reset: the
// client's read failed, and it could lose the replies. Nutcracker, which closes after its read,
// resets too when more comes than one read takes (1 MiB here); the proxy reads up to 64 MiB.
func TestQuitThenMoreEndsCleanly(t *testing.T) {
	for _, tc := range quitCases {
		t.Run(tc.name, func(t *testing.T) { testQuitThenMore(t, tc) })
	}
}

func testQuitThenMore(t *testing.T, tc quitCase) {
	be := quitBackend(t, tc)
	protos := twemproxy.Protocols{Memcache: &memcache.Protocol{}, Redis: &redis.Protocol{}}
	short, long := tc.in+strings.Repeat(tc.in, 10), tc.in+strings.Repeat("x", 1<<20)
	for _, mode := range clientModes {
		addr, _, _ := twemproxytest.StartPool(t, "q", tc.redis, "", []string{be.Addr}, protos, mode.opts...)
		for _, in := range []string{tc.in, short, long} {
			for i := range 5 {
				out, werr, rerr := twemproxytest.SendAndRead(t, addr, []byte(in))
				if string(out) != tc.want || werr != nil || rerr != nil {
					t.Fatalf("%s clients, %d bytes after quit, try %d: read %q (error %v), want %q and the end of the stream; the write: %v",
						mode.name, len(in)-len(tc.in), i, out, rerr, tc.want, werr)
				}
			}
		}
	}
	nc := twemproxytest.StartNutcracker(t, "q", tc.redis, "", []string{be.Addr})
	for _, in := range []string{tc.in, short} {
		out, werr, rerr := twemproxytest.SendAndRead(t, nc, []byte(in))
		if string(out) != tc.ncWant || werr != nil || rerr != nil {
			t.Errorf("nutcracker, %d bytes after quit: read %q (error %v), want %q and the end of the stream; the write: %v",
				len(in)-len(tc.in), out, rerr, tc.ncWant, werr)
		}
	}
}

// quitBackend starts tc's server for the length of the test, and skips the test when it is not
// installed.
func quitBackend(t *testing.T, tc quitCase) *shardproc.Proc {
	t.Helper()
	if !shardproc.Have(tc.path) {
		t.Skipf("%s is not installed; skipping", tc.path)
	}
	be, err := tc.server()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(be.Stop)
	return be
}
