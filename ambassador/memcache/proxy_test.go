package memcache_test

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/shardproc"
)

func needMemcached(t *testing.T) {
	t.Helper()
	if !shardproc.Have(shardproc.MemcachedPath) {
		t.Skipf("%s is not installed (Debian package memcached); skipping", shardproc.MemcachedPath)
	}
}

func startMemcached(t *testing.T, n int) []*shardproc.Proc {
	t.Helper()
	var ps []*shardproc.Proc
	for range n {
		p, err := shardproc.StartMemcached()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		ps = append(ps, p)
	}
	return ps
}

// startProxy serves one memcache pool "mc" over backends with the extra pool lines and returns the
// pool's address.
func startProxy(t *testing.T, extra string, backends []*shardproc.Proc, proto *memcache.Protocol) (string, *twemproxy.Server) {
	t.Helper()
	addr, srv, _ := twemproxytest.StartPool(t, "mc", false, extra, procAddrs(backends), twemproxy.Protocols{Memcache: proto})
	return addr, srv
}

func procAddrs(ps []*shardproc.Proc) []string {
	addrs := make([]string, len(ps))
	for i, p := range ps {
		addrs[i] = p.Addr
	}
	return addrs
}

type conn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &conn{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *conn) send(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *conn) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return l
}

// reply reads one whole reply to a retrieval command (VALUE blocks up to END) or one line.
func (c *conn) reply() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l := c.line()
		b.WriteString(l)
		if !strings.HasPrefix(l, "VALUE ") {
			return b.String()
		}
		var key string
		var flags, size int
		fmt.Sscanf(l, "VALUE %s %d %d", &key, &flags, &size)
		buf := make([]byte, size+2)
		if _, err := c.r.Read(buf[:0]); err != nil {
			c.t.Fatal(err)
		}
		for n := 0; n < len(buf); {
			m, err := c.r.Read(buf[n:])
			if err != nil {
				c.t.Fatal(err)
			}
			n += m
		}
		b.Write(buf)
	}
}

func TestProxyCommands(t *testing.T) {
	needMemcached(t)
	backends := startMemcached(t, 3)
	addr, _ := startProxy(t, "  hash: fnv1a_64\n  distribution: ketama\n  server_connections: 2\n", backends,
		&memcache.Protocol{MaxValueSize: 1024})
	c := dial(t, addr)
	steps := []struct{ send, want string }{
		{"set a 5 0 3\r\nabc\r\n", "STORED\r\n"},
		{"get a\r\n", "VALUE a 5 3\r\nabc\r\nEND\r\n"},
		{"add a 0 0 1\r\nx\r\n", "NOT_STORED\r\n"},
		{"append a 0 0 2\r\nde\r\n", "STORED\r\n"},
		{"prepend a 0 0 1\r\nz\r\n", "STORED\r\n"},
		{"get a\r\n", "VALUE a 5 6\r\nzabcde\r\nEND\r\n"},
		{"replace nope 0 0 1\r\nx\r\n", "NOT_STORED\r\n"},
		{"set n 0 0 2\r\n10\r\n", "STORED\r\n"},
		{"incr n 5\r\n", "15\r\n"},
		{"decr n 20\r\n", "0\r\n"},
		{"touch n 100\r\n", "TOUCHED\r\n"},
		{"delete n\r\n", "DELETED\r\n"},
		{"delete n\r\n", "NOT_FOUND\r\n"},
		{"set q 0 0 1 noreply\r\nq\r\nget q\r\n", "VALUE q 0 1\r\nq\r\nEND\r\n"},
		{"bogus command\r\n", "ERROR\r\n"},
		{"get a\r\n", "VALUE a 5 6\r\nzabcde\r\nEND\r\n"},
		{"set big 0 0 2000\r\n" + strings.Repeat("x", 2000) + "\r\n", "SERVER_ERROR object too large for cache\r\n"},
		{"get big\r\n", "END\r\n"},
		{"set k" + strings.Repeat("k", 300) + " 0 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"version\r\n", versionOf(t, backends[0].Addr)}, // every backend runs one memcached
		{"incr\r\n", "ERROR\r\n"},
		// memcached ignores a last token it does not know: one reply, no shift.
		{"set t 0 0 1 NOREPLY\r\nx\r\n", "STORED\r\n"},
		{"set t 0 0 1 noreplx\r\ny\r\nget t\r\n", "STORED\r\n"},
		{"", "VALUE t 0 1\r\ny\r\nEND\r\n"},
	}
	for _, s := range steps {
		c.send(s.send)
		if diff := cmp.Diff(s.want, c.reply()); diff != "" {
			t.Errorf("%q (-want +got):\n%s", s.send, diff)
		}
	}
	// cas needs the unique from gets.
	c.send("gets a\r\n")
	var key string
	var flags, size int
	var unique uint64
	l := c.line()
	if _, err := fmt.Sscanf(l, "VALUE %s %d %d %d", &key, &flags, &size, &unique); err != nil {
		t.Fatalf("gets: %q: %v", l, err)
	}
	c.line()
	c.line()
	c.send(fmt.Sprintf("cas a 0 0 1 %d\r\nC\r\ncas a 0 0 1 %d\r\nD\r\n", unique, unique))
	if diff := cmp.Diff([]string{"STORED\r\n", "EXISTS\r\n"}, []string{c.line(), c.line()}); diff != "" {
		t.Errorf("cas (-want +got):\n%s", diff)
	}
	c.send("quit\r\n")
	if l, err := c.r.ReadString('\n'); err == nil {
		t.Errorf("after quit: read %q, want the connection closed", l)
	}
}

// TestMultiGetAcrossShards stores keys spread over three servers and reads them back with one
// multi-key get; every server must have been asked (fragments) and every value must come back, in
// the order of the keys asked.
// A multi-get is split over the servers and merged, also one whose line is many times the proxy's
// read buffer (memcached reads a get line of any length), after which the connection still serves.
func TestMultiGetAcrossShards(t *testing.T) {
	needMemcached(t)
	backends := startMemcached(t, 3)
	addr, srv := startProxy(t, "  hash: murmur\n", backends, &memcache.Protocol{})
	for _, n := range []int{60, 6000} {
		t.Run(fmt.Sprint(n, " keys"), func(t *testing.T) {
			c := dial(t, addr)
			var keys []string
			want := map[string]string{}
			var b strings.Builder
			for i := range n {
				k := fmt.Sprintf("multiget-%d-key-%d", n, i)
				v := fmt.Sprintf("v%d", i*i)
				keys = append(keys, k)
				want[k] = v
				fmt.Fprintf(&b, "set %s 0 0 %d\r\n%s\r\n", k, len(v), v)
			}
			c.send(b.String())
			for range keys {
				if l := c.line(); l != "STORED\r\n" {
					t.Fatalf("set: %q", l)
				}
			}
			before := srv.Snapshot()[0].Fragments
			c.send("  get " + strings.Join(keys, " ") + " missing1 missing2\r\n")
			got := map[string]string{}
			var order []string
			for {
				l := c.line()
				if l == "END\r\n" {
					break
				}
				var k string
				var f, n int
				if _, err := fmt.Sscanf(l, "VALUE %s %d %d", &k, &f, &n); err != nil {
					t.Fatalf("%q: %v", l, err)
				}
				got[k] = strings.TrimSuffix(c.line(), "\r\n")
				order = append(order, k)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("multi-get (-want +got):\n%s", diff)
			}
			if !slices.Equal(keys, order) {
				t.Errorf("multi-get answered the keys out of the order asked (first 8: %q)", order[:min(8, len(order))])
			}
			if frags := srv.Snapshot()[0].Fragments - before; frags < 3 {
				t.Errorf("fragments = %d, want the get split over 3 servers", frags)
			}
			c.send("get " + keys[0] + "\r\n")
			if got, want := c.reply(), "VALUE "+keys[0]+" 0 2\r\nv0\r\nEND\r\n"; got != want {
				t.Errorf("get after the multi-get: %q, want %q", got, want)
			}
		})
	}
}

// TestManyClientsPipelined runs concurrent pipelining clients over one server connection per
// server; every client must get its own replies in its own order.
func TestManyClientsPipelined(t *testing.T) {
	needMemcached(t)
	backends := startMemcached(t, 2)
	addr, _ := startProxy(t, "  server_connections: 1\n", backends, &memcache.Protocol{})
	const clients, rounds, depth = 12, 20, 16
	errs := make(chan error, clients)
	for ci := range clients {
		go func() {
			errs <- func() error {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				r := bufio.NewReader(c)
				for round := range rounds {
					var b strings.Builder
					for d := range depth {
						v := fmt.Sprintf("c%d-r%d-d%d", ci, round, d)
						fmt.Fprintf(&b, "set k%d-%d 0 0 %d\r\n%s\r\nget k%d-%d\r\n", ci, d, len(v), v, ci, d)
					}
					if _, err := c.Write([]byte(b.String())); err != nil {
						return err
					}
					for d := range depth {
						v := fmt.Sprintf("c%d-r%d-d%d", ci, round, d)
						want := []string{"STORED\r\n", fmt.Sprintf("VALUE k%d-%d 0 %d\r\n", ci, d, len(v)), v + "\r\n", "END\r\n"}
						for _, w := range want {
							l, err := r.ReadString('\n')
							if err != nil {
								return err
							}
							if l != w {
								return fmt.Errorf("client %d round %d: got %q, want %q", ci, round, l, w)
							}
						}
					}
				}
				return nil
			}()
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestGarbageClosesOnlyThatClient: a line too long or a corrupt data block gets an error reply and
// closes that connection; another client on the same pool is unaffected.
func TestGarbageClosesOnlyThatClient(t *testing.T) {
	needMemcached(t)
	backends := startMemcached(t, 1)
	addr, srv := startProxy(t, "", backends, &memcache.Protocol{})
	other := dial(t, addr)
	for _, tc := range []struct{ name, send, want string }{
		{"line too long", strings.Repeat("x", 40000) + "\r\n", "CLIENT_ERROR line too long\r\n"},
		{"bad data chunk", "set k 0 0 2\r\nabcdef\r\n", "CLIENT_ERROR bad data chunk\r\n"},
		{"huge value", "set k 0 0 999999999\r\n", "SERVER_ERROR object too large for cache\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			c.send(tc.send)
			if got := c.line(); got != tc.want {
				t.Errorf("reply %q, want %q", got, tc.want)
			}
			if l, err := c.r.ReadString('\n'); err == nil {
				t.Errorf("connection still open: read %q", l)
			}
			other.send("set ok 0 0 1\r\n1\r\n")
			if got := other.line(); got != "STORED\r\n" {
				t.Errorf("other client: %q", got)
			}
		})
	}
	if errs := srv.Snapshot()[0].ClientErr; errs < 3 {
		t.Errorf("client_err = %d, want >= 3", errs)
	}
}

// TestClientConnectionsLimit: past client_connections, new clients are closed at once; the
// admitted ones keep working.
func TestClientConnectionsLimit(t *testing.T) {
	needMemcached(t)
	backends := startMemcached(t, 1)
	addr, _ := startProxy(t, "  client_connections: 2\n", backends, &memcache.Protocol{})
	a, b := dial(t, addr), dial(t, addr)
	for _, c := range []*conn{a, b} {
		c.send("version\r\n")
		if got := c.line(); got != versionOf(t, backends[0].Addr) {
			t.Fatalf("admitted client: %q", got)
		}
	}
	extra := dial(t, addr)
	extra.send("version\r\n")
	if l, err := extra.r.ReadString('\n'); err == nil {
		t.Errorf("third client got %q, want its connection closed", l)
	}
	a.send("set x 0 0 1\r\n1\r\n")
	if got := a.line(); got != "STORED\r\n" {
		t.Errorf("admitted client after the limit: %q", got)
	}
}

// A get whose reply would pass MaxReplySize gets memcached's out-of-memory error, and its client
// and the server connection go on: a key asked for many times in one line cannot make the proxy
// hold many times its value.
func TestMultiGetReplyOverMaxReplySize(t *testing.T) {
	needMemcached(t)
	backends := startMemcached(t, 2)
	addr, _ := startProxy(t, "", backends, &memcache.Protocol{MaxReplySize: 1 << 20})
	c := dial(t, addr)
	value := strings.Repeat("v", 100<<10)
	c.send(fmt.Sprintf("set big 0 0 %d\r\n%s\r\n", len(value), value))
	if l := c.line(); l != "STORED\r\n" {
		t.Fatalf("set: %q", l)
	}
	c.send("get" + strings.Repeat(" big", 20) + "\r\n") // 2 MB of reply
	if got, want := c.reply(), "SERVER_ERROR out of memory writing get response\r\n"; got != want {
		t.Errorf("get of 20 times 100 KiB: %.80q, want %q", got, want)
	}
	c.send("get big big\r\n")
	if got, want := c.reply(), strings.Repeat(fmt.Sprintf("VALUE big 0 %d\r\n%s\r\n", len(value), value), 2)+"END\r\n"; got != want {
		t.Errorf("get of 2 times 100 KiB after: %d bytes %.60q..., want %d bytes", len(got), got, len(want))
	}
}
