package memcache_test

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	port, err := shardproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// expectOnly sends send and then "version", and checks that the version's reply is the first and
// only thing the connection gets: a noreply request must not shift the replies after it. A
// forwarded version shares the noreply request's server connection, and a reply to it taken for the
// version's would show; a pool whose server does not run answers it itself (localVersion).
func expectOnly(t *testing.T, c *conn, send string) {
	t.Helper()
	c.send(send + "version\r\n")
	if got := c.reply(); !libmemcachedVersion.MatchString(got) {
		if len(send) > 80 {
			send = send[:80] + "..."
		}
		t.Fatalf("after %q: got %q, want only the version's reply", send, got)
	}
}

// A noreply request whose server cannot be reached gets no reply, as with nutcracker and
// memcached; like nutcracker 0.5.0, which drops such a request, the proxy counts no forward error
// for it: only the get's failure is counted.
func TestNoReplyDeadServerSendsNothing(t *testing.T) {
	addr, srv, _ := twemproxytest.StartPool(t, "mc", false, "  timeout: 400\n", []string{deadAddr(t)},
		twemproxy.Protocols{Memcache: &memcache.Protocol{Version: localVersion}})
	c := dial(t, addr)
	for _, send := range []string{"set a 0 0 1 noreply\r\nx\r\n", "delete a noreply\r\n", "incr a 1 noreply\r\n",
		"touch a 10 noreply\r\n", "delete a 0 noreply\r\n"} {
		expectOnly(t, c, send)
	}
	// A request that expects a reply still gets the error.
	c.send("get a\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "SERVER_ERROR ") {
		t.Errorf("get on a dead server: %q, want a SERVER_ERROR", got)
	}
	if fe := srv.Snapshot()[0].ForwardError; fe != 1 {
		t.Errorf("forward_error = %d, want 1: the get's failure, none for the 5 noreply requests", fe)
	}
}

// A noreply request to an ejected server (no live server left) gets no reply.
func TestNoReplyEjectedServerSendsNothing(t *testing.T) {
	addr, srv, _ := twemproxytest.StartPool(t, "mc", false,
		"  timeout: 400\n  auto_eject_hosts: true\n  server_failure_limit: 1\n  server_retry_timeout: 600000\n",
		[]string{deadAddr(t)}, twemproxy.Protocols{Memcache: &memcache.Protocol{Version: localVersion}})
	c := dial(t, addr)
	c.send("get a\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "SERVER_ERROR ") {
		t.Fatalf("get on a dead server: %q, want a SERVER_ERROR", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !srv.Snapshot()[0].Servers[0].Ejected {
		if time.Now().After(deadline) {
			t.Fatal("the dead server was not ejected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	expectOnly(t, c, "set a 0 0 1 noreply\r\nx\r\n")
	c.send("get a\r\n")
	// nutcracker 0.5.0 answers a key with no live server with ECONNREFUSED's strerror.
	if got := c.reply(); got != "SERVER_ERROR Connection refused\r\n" {
		t.Errorf("get with every server ejected: %q", got)
	}
}

// A noreply storage command whose value is over the limit is swallowed without a reply, as
// memcached does; the value's bytes are consumed, so the next command is read right. A value of
// more than half the proxy's read buffer is read by the client's goroutine, a small one by the
// pool's poller (on Linux).
func TestNoReplyTooLargeSendsNothing(t *testing.T) {
	needMemcached(t)
	addr, _ := startProxy(t, "", startMemcached(t, 1), &memcache.Protocol{MaxValueSize: 1024})
	c := dial(t, addr)
	for _, size := range []int{2048, 40000} {
		v := strings.Repeat("x", size)
		expectOnly(t, c, "set big 0 0 "+strconv.Itoa(size)+" noreply\r\n"+v+"\r\n")
		expectOnly(t, c, "cas big 0 0 "+strconv.Itoa(size)+" 1 noreply\r\n"+v+"\r\n")
		c.send("get big\r\n")
		if got := c.reply(); got != "END\r\n" {
			t.Errorf("get big after a swallowed %d-byte value: %q", size, got)
		}
		// Without noreply the error is still answered.
		c.send("set big 0 0 " + strconv.Itoa(size) + "\r\n" + v + "\r\n")
		if got := c.reply(); got != "SERVER_ERROR object too large for cache\r\n" {
			t.Errorf("set of a %d-byte value: %q", size, got)
		}
	}
}

// Every error the proxy answers itself is silent for a command that ends with noreply, as memcached
// keeps it silent; commands memcached does not take as noreply (wrong number of tokens) are
// answered.
func TestNoReplyLocalErrorsSendNothing(t *testing.T) {
	needMemcached(t)
	addr, _ := startProxy(t, "", startMemcached(t, 1), &memcache.Protocol{MaxValueSize: 1024})
	c := dial(t, addr)
	for _, send := range []string{
		"set " + strings.Repeat("k", 251) + " 0 0 1 noreply\r\nx\r\n", // key too long (its value is swallowed)
		"set a 0 0 -1 noreply\r\n",                                    // bad length
		"set a 0 0 noreply\r\n",                                       // no length
		"set a x 0 1 noreply\r\nx\r\n",                                // bad flags (its value is swallowed)
		"cas a 0 0 1 noreply\r\nx\r\n",                                // no cas unique
		"delete a 5 noreply\r\n",                                      // a hold time other than 0
		"delete " + strings.Repeat("k", 251) + " noreply\r\n",
		"incr a noreply\r\n", // no delta: memcached takes noreply as the delta and is silent
		"decr a noreply\r\n",
		"touch a noreply\r\n", // no exptime
		"incr " + strings.Repeat("k", 251) + " 1 noreply\r\n",
	} {
		expectOnly(t, c, send)
	}
	for _, tc := range []struct{ send, want string }{
		{"delete a b c noreply\r\n", "ERROR\r\n"},
		{"set a 0 0 1 noreply extra\r\nx\r\n", "ERROR\r\n"}, // its value is swallowed: one reply
		{"delete noreply\r\n", "NOT_FOUND\r\n"},             // the key "noreply"
	} {
		c.send(tc.send)
		if got := c.reply(); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.send, got, tc.want)
		}
		expectOnly(t, c, "")
	}
}

// A noreply command whose value block is corrupt closes the connection without a reply.
func TestNoReplyBadChunkClosesSilently(t *testing.T) {
	needMemcached(t)
	addr, _ := startProxy(t, "", startMemcached(t, 1), &memcache.Protocol{MaxValueSize: 1024})
	for _, send := range []string{"set k 0 0 2 noreply\r\nabcdef\r\n", "set k 0 0 999999999 noreply\r\n", "set k 0 0 4294967297 noreply\r\nx\r\n"} {
		c := dial(t, addr)
		c.send(send)
		if b, err := io.ReadAll(c.r); len(b) != 0 || err != nil {
			t.Errorf("%q: read %q, %v; want the connection closed without a reply", send, b, err)
		}
	}
}
