package twemproxy_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/freeport"
)

// A client whose request is refused, and that is still sending it (an oversized request), reads
// the refusal and then the end of the stream, and its whole request is taken: the proxy shuts its
// side after the reply and reads the rest before it closes. The old code closed the connection
// with the rest unread, which sends a reset: the client's write failed and its read mostly did,
// before it had the reply. It runs with the clients served as on Linux and as elsewhere.
func TestRefusedRequestReplyArrives(t *testing.T) {
	for _, mode := range clientModes {
		t.Run(mode.name, func(t *testing.T) { testRefusedRequestReplyArrives(t, mode.opts) })
	}
}

func testRefusedRequestReplyArrives(t *testing.T, opts []twemproxy.Option) {
	backend := []string{freeport.TCP(t)} // never reached: the proxy refuses the requests itself
	redisAddr, _, _ := twemproxytest.StartPool(t, "r", true, "", backend,
		twemproxy.Protocols{Redis: &redis.Protocol{MaxRequestSize: 1 << 20}}, opts...)
	mcAddr, _, _ := twemproxytest.StartPool(t, "m", false, "", backend,
		twemproxy.Protocols{Memcache: &memcache.Protocol{MaxValueSize: 1 << 10}}, opts...)
	big := strings.Repeat("v", 8<<20)
	for _, tc := range []struct {
		name, addr, req, want string
	}{
		{"redis request over MaxRequestSize", redisAddr, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8388608\r\n" + big + "\r\n",
			"-ERR Protocol error: request too large\r\n"},
		{"redis inline line too long", redisAddr, "SET k " + big[:1<<20] + "\r\n",
			"-ERR Protocol error: too big inline request\r\n"},
		{"memcache value far over MaxValueSize", mcAddr, "set k 0 0 8388608\r\n" + big + "\r\n",
			"SERVER_ERROR object too large for cache\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 10 {
				got, werr, rerr := refusedExchange(t, tc.addr, tc.req)
				if got != tc.want || rerr != nil || werr != nil {
					t.Fatalf("try %d: read %q (error %v), want %q and the end of the stream; the request's write: %v",
						i, got, rerr, tc.want, werr)
				}
			}
		})
	}
}

// refusedExchange writes req on a new connection to addr, then reads the reply to the end of the
// stream; it returns the reply, the write's error and the read's.
func refusedExchange(t *testing.T, addr, req string) (reply string, werr, rerr error) {
	t.Helper()
	c := dialResp(t, addr).c
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	// A blocking client reads once its request is written.
	_, werr = io.WriteString(c, req)
	b, rerr := io.ReadAll(c)
	if errors.Is(rerr, io.EOF) {
		rerr = nil
	}
	return string(b), werr, rerr
}
