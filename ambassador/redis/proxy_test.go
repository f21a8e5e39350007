package redis_test

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

func TestProxyCommands(t *testing.T) {
	needRedis(t)
	backends := startRedis(t, 3)
	addr, srv, _ := startProxy(t, "  hash: murmur\n  server_connections: 2\n", backends, &redis.Protocol{})
	c := dial(t, addr)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"SET", "a", "1"}, "+OK"},
		{[]string{"get", "a"}, "$1"},
		{[]string{"MSET", "k1", "v1", "k2", "v2", "k3", "v3", "k4", "v4", "k5", "v5", "k6", "v6"}, "+OK"},
		{[]string{"MGET", "k6", "k1", "nope", "k3", "k2", "k5", "k4", "a"}, "[$v6 $v1 nil $v3 $v2 $v5 $v4 $1]"},
		{[]string{"EXISTS", "k1", "k2", "nope", "k3", "k4", "k5", "k6"}, ":6"},
		{[]string{"TOUCH", "k1", "k2", "k3", "nope"}, ":3"},
		{[]string{"DEL", "k1", "k2", "nope"}, ":2"},
		{[]string{"UNLINK", "k3", "k4", "k5"}, ":3"},
		{[]string{"MGET", "k1", "k2", "k6"}, "[nil nil $v6]"},
		{[]string{"KEYS", "*"}, "-ERR unsupported command 'KEYS' (not forwarded by the sharding proxy)"},
		{[]string{"PING"}, "+PONG"},
		{[]string{"PING", "hi"}, "$hi"},
		{[]string{"ECHO", "x y"}, "$x y"},
		{[]string{"SELECT", "0"}, "+OK"},
		{[]string{"SELECT", "1"}, "-ERR SELECT is not allowed: the sharding proxy serves DB 0 only"},
		{[]string{"GET"}, "-ERR wrong number of arguments for 'get' command"},
		{[]string{"HSET", "h", "f", "1"}, ":1"},
		{[]string{"HGETALL", "h"}, "[$f $1]"},
		{[]string{"INCRBY", "n", "5"}, ":5"},
		{[]string{"EVAL", "return redis.call('GET', KEYS[1])", "1", "a"}, "$1"},
		{[]string{"GET", "a"}, "$1"},
	}
	for _, s := range steps {
		if diff := cmp.Diff(s.want, c.must(t, s.args...)); diff != "" {
			t.Errorf("%v (-want +got):\n%s", s.args, diff)
		}
	}
	// An inline command is forwarded as RESP.
	if _, err := io.WriteString(c.c, "GET a\r\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.read(); err != nil || got != "$1" {
		t.Errorf("inline GET a = %q, %v", got, err)
	}
	if f := srv.Snapshot()[0].Fragments; f == 0 {
		t.Error("no fragments counted: multi-key commands were not split")
	}
	if got := c.must(t, "QUIT"); got != "+OK" {
		t.Errorf("QUIT = %q", got)
	}
	if _, err := c.read(); err == nil {
		t.Error("connection still open after QUIT")
	}
}

// TestPlacementDirect sets keys through the proxy and checks with direct reads that each is on
// the server twemproxy.Placer names (the placement test against nutcracker itself is in
// ambassador/twemproxy).
func TestPlacementDirect(t *testing.T) {
	needRedis(t)
	backends := startRedis(t, 3)
	addr, _, pc := startProxy(t, "  hash: fnv1a_64\n  hash_tag: \"{}\"\n", backends, &redis.Protocol{})
	c := dial(t, addr)
	pl := twemproxy.NewPlacer(pc, nil)
	direct := map[string]*client{}
	for _, b := range backends {
		direct[b.Addr] = dial(t, b.Addr)
	}
	for i := range 200 {
		k := fmt.Sprintf("user:{%d}:%d", i%17, i)
		if got := c.must(t, "SET", k, "x"); got != "+OK" {
			t.Fatalf("SET %s: %s", k, got)
		}
		want := pc.Servers[pl.Place([]byte(k))].Addr
		for a, d := range direct {
			got := d.must(t, "EXISTS", k)
			if (a == want) != (got == ":1") {
				t.Fatalf("key %s: on %s EXISTS=%s, want it only on %s", k, a, got, want)
			}
		}
	}
}

// TestBadInput: garbage and oversized requests get an error reply and close that connection only.
func TestBadInput(t *testing.T) {
	needRedis(t)
	backends := startRedis(t, 1)
	addr, _, _ := startProxy(t, "", backends, &redis.Protocol{MaxRequestSize: 1024})
	other := dial(t, addr)
	for _, tc := range []struct{ name, send, want string }{
		{"bad multibulk", "*x\r\n", "-ERR Protocol error: invalid multibulk length"},
		{"bad bulk", "*1\r\n:3\r\n", "-ERR Protocol error: expected '$', got ':'"},
		{"oversized", encode("SET", "k", strings.Repeat("v", 2000)), "-ERR Protocol error: request too large"},
		{"no CRLF", "*1\r\n$4\r\nPINGxx", "-ERR Protocol error: bulk string not terminated by CRLF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			if _, err := io.WriteString(c.c, tc.send); err != nil {
				t.Fatal(err)
			}
			got, err := c.read()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("reply %q, want %q", got, tc.want)
			}
			if _, err := c.read(); err == nil {
				t.Error("connection still open after a protocol error")
			}
			if got := other.must(t, "SET", "ok", "1"); got != "+OK" {
				t.Errorf("other client: %q", got)
			}
		})
	}
}

// TestAuthAndDB: with redis_auth the proxy authenticates to the servers and requires clients to
// AUTH with the same password, as nutcracker does; redis_db selects the servers' database. A
// client's SELECT of that database is answered +OK, of any other an error that names the pool's
// (the old code answered +OK to SELECT 0, whose keys then went to DB 3, and refused SELECT 3).
func TestAuthAndDB(t *testing.T) {
	needRedis(t)
	backends := startRedis(t, 2)
	for _, b := range backends {
		if got := dial(t, b.Addr).must(t, "CONFIG", "SET", "requirepass", "s3cret"); got != "+OK" {
			t.Fatalf("requirepass: %s", got)
		}
	}
	addr, _, _ := startProxy(t, "  redis_auth: s3cret\n  redis_db: 3\n  hash: murmur\n", backends, &redis.Protocol{})
	c := dial(t, addr)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"GET", "a"}, "-NOAUTH Authentication required."},
		{[]string{"AUTH", "wrong"}, "-WRONGPASS invalid username-password pair or user is disabled."},
		{[]string{"SET", "a", "1"}, "-NOAUTH Authentication required."},
		{[]string{"SELECT", "3"}, "-NOAUTH Authentication required."},
		{[]string{"AUTH", "s3cret"}, "+OK"},
		{[]string{"SELECT", "3"}, "+OK"},
		{[]string{"SELECT", "0"}, "-ERR SELECT is not allowed: the sharding proxy serves DB 3 only"},
		{[]string{"SELECT", "03"}, "-ERR SELECT is not allowed: the sharding proxy serves DB 3 only"},
		{[]string{"SELECT"}, "-ERR wrong number of arguments for 'select' command"},
		{[]string{"SELECT", "3", "4"}, "-ERR wrong number of arguments for 'select' command"},
		{[]string{"SET", "a", "1"}, "+OK"},
		{[]string{"MSET", "b", "2", "c", "3", "d", "4"}, "+OK"},
		{[]string{"MGET", "a", "b", "c", "d"}, "[$1 $2 $3 $4]"},
	}
	for _, s := range steps {
		if diff := cmp.Diff(s.want, c.must(t, s.args...)); diff != "" {
			t.Errorf("%v (-want +got):\n%s", s.args, diff)
		}
	}
	found := 0
	for _, b := range backends {
		d := dial(t, b.Addr)
		d.must(t, "AUTH", "s3cret")
		d.must(t, "SELECT", "3")
		if d.must(t, "EXISTS", "a") == ":1" {
			found++
		}
	}
	if found != 1 {
		t.Errorf("key a found in db 3 of %d servers, want 1", found)
	}
	// Without redis_auth, AUTH from a client is an error, as with a redis without a password.
	plain := startRedis(t, 1)
	addr2, _, _ := startProxy(t, "", plain, &redis.Protocol{})
	if got := dial(t, addr2).must(t, "AUTH", "x"); !strings.HasPrefix(got, "-ERR AUTH <password> called without any password") {
		t.Errorf("AUTH without redis_auth: %s", got)
	}
}

// A redis_db the servers do not have fails their connections, and requests get the server's
// refusal, where nutcracker 0.5.0 drops the SELECT reply unread and goes on in database 0.
func TestRedisDBOutOfRange(t *testing.T) {
	needRedis(t)
	backends := startRedis(t, 1)
	addr, _, _ := startProxy(t, "  redis_db: 20\n", backends, &redis.Protocol{})
	if got := dial(t, addr).must(t, "SET", "a", "1"); !strings.Contains(got, "DB index is out of range") {
		t.Errorf("SET with redis_db 20 = %q, want the server's refusal of SELECT 20", got)
	}
	if got := dial(t, backends[0].Addr).must(t, "EXISTS", "a"); got != ":0" {
		t.Errorf("EXISTS a in database 0 = %s, want :0", got)
	}
}
