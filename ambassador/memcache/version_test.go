package memcache_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/loopback"
	"github.com/podblocks/podblocks/internal/shardproc"
	"github.com/podblocks/podblocks/lifecycletest"
)

const memcpingPath = "/usr/bin/memcping" // Debian package libmemcached-tools

// localVersion is the Protocol.Version of the tests whose pools answer "version" themselves.
const localVersion = "1.6.0"

// libmemcachedVersion is how libmemcached reads a "VERSION" reply: three decimal numbers, each
// at most 255, separated by dots; the third ends at the first byte that is not a digit.
var libmemcachedVersion = regexp.MustCompile(`^VERSION ([0-9]+)\.([0-9]+)\.([0-9]+)[^\r\n]*\r\n$`)

// versionOf returns the reply of the memcache server at addr to "version".
func versionOf(t *testing.T, addr string) string {
	t.Helper()
	c := dial(t, addr)
	c.send("version\r\n")
	return c.line()
}

// fakeVersions starts n fake memcache servers, each answering "version" (whatever follows it)
// with its own "VERSION 9.9.i" and anything else with "ERROR", and returns their addresses.
func fakeVersions(t *testing.T, n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = loopback.Serve(t, func(_ int, c net.Conn) {
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				reply := "ERROR\r\n"
				if line == "version\r\n" || strings.HasPrefix(line, "version ") {
					reply = fmt.Sprintf("VERSION 9.9.%d\r\n", i)
				}
				if _, err := c.Write([]byte(reply)); err != nil {
					return
				}
			}
		})
	}
	return addrs
}

// "version" goes to a server, as nutcracker 0.5.0 sends it, and the client gets that server's
// reply; the proxy used to answer a made-up "VERSION 1.5.3-podblocks" without asking a server. A
// one-server pool's version is its server's under both, which is checked with Debian's nutcracker
// on the same configuration, beside the proxy. With more servers the proxy asks the one an empty
// key goes to (hash 0 on the pool's distribution); nutcracker 0.5.0 picks one by a key position it
// never set (req_forward reads msg->keys[0] of a request without keys), so its choice varies with
// the hash and the heap: it is checked to be one of the servers only.
func TestVersionAsNutcracker(t *testing.T) {
	servers := fakeVersions(t, 3)
	type pool struct {
		name, lines string
		servers     []string
	}
	pools := []pool{{"single", "", servers[1:2]}}
	for _, dist := range []string{"ketama", "modula"} {
		for _, hash := range []string{"fnv1a_64", "md5", "murmur", "crc32a"} {
			pools = append(pools, pool{dist + "_" + hash, fmt.Sprintf("  hash: %s\n  distribution: %s\n", hash, dist), servers})
		}
	}
	// The empty key's server in the pools above depends on the servers' names (random ports here),
	// so they may all pick the single pool's server by chance: a second single-server pool of
	// another server makes the test tell servers apart on every run.
	pools = append(pools, pool{"single_other", "", servers[0:1]})
	ports, err := shardproc.FreePorts(2*len(pools) + 1)
	if err != nil {
		t.Fatal(err)
	}
	yaml := func(ports []int) string {
		var b strings.Builder
		for i, p := range pools {
			fmt.Fprintf(&b, "%s:\n  listen: 127.0.0.1:%d\n%s  servers:\n", p.name, ports[i], p.lines)
			for _, s := range p.servers {
				fmt.Fprintf(&b, "   - %s:1\n", s)
			}
		}
		return b.String()
	}
	ours, theirs := ports[:len(pools)], ports[len(pools):2*len(pools)]
	cfg, err := twemproxy.Parse([]byte(yaml(ours)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := twemproxy.NewServer(cfg, twemproxy.Protocols{Memcache: &memcache.Protocol{}})
	if err != nil {
		t.Fatal(err)
	}
	lifecycletest.StartReady(t, srv, 10*time.Second)
	versions := map[string]bool{}
	for i := range servers {
		versions[fmt.Sprintf("VERSION 9.9.%d\r\n", i)] = true
	}
	seen := map[string]bool{}
	for i, p := range pools {
		pc := cfg.Pools[i]
		want := fmt.Sprintf("VERSION 9.9.%d\r\n", slices.Index(servers, pc.Servers[twemproxy.NewPlacer(pc, nil).Place(nil)].Addr))
		c := dial(t, fmt.Sprintf("127.0.0.1:%d", ours[i]))
		c.send("version\r\nversion \r\n") // spaces after it are allowed, by nutcracker too
		for range 2 {
			if got := c.line(); got != want {
				t.Errorf("pool %s: version = %q, want %q (the server of an empty key)", p.name, got, want)
			}
		}
		seen[want] = true
	}
	if len(seen) < 2 {
		t.Errorf("every pool's version went to one server: the test tells no placement apart")
	}

	if !shardproc.Have(shardproc.NutcrackerPath) {
		t.Skipf("%s is not installed (Debian package nutcracker): not compared with nutcracker", shardproc.NutcrackerPath)
	}
	conf := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(conf, []byte(yaml(theirs)), 0o600); err != nil {
		t.Fatal(err)
	}
	nc, err := shardproc.StartNutcracker(conf, ports[2*len(pools)], fmt.Sprintf("127.0.0.1:%d", theirs[0]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Stop)
	for i, p := range pools {
		c, n := dial(t, fmt.Sprintf("127.0.0.1:%d", ours[i])), dial(t, fmt.Sprintf("127.0.0.1:%d", theirs[i]))
		c.send("version\r\n")
		n.send("version\r\n")
		got, theirs := c.line(), n.line()
		switch {
		case len(p.servers) == 1 && got != theirs:
			t.Errorf("pool %s: version = %q, nutcracker's %q", p.name, got, theirs)
		case !versions[theirs]:
			t.Errorf("pool %s: nutcracker's version = %q, not a server's", p.name, theirs)
		}
	}
}

// Through the proxy, "version" is the memcached's own, which libmemcached's ping accepts; a server
// that is down gets nutcracker 0.5.0's reply (measured: "SERVER_ERROR Connection refused").
func TestVersionOfMemcached(t *testing.T) {
	needMemcached(t)
	backends := startMemcached(t, 1)
	addr, _ := startProxy(t, "", backends, &memcache.Protocol{})
	c := dial(t, addr)
	c.send("version\r\n")
	if got, want := c.line(), versionOf(t, backends[0].Addr); got != want || !libmemcachedVersion.MatchString(got) {
		t.Errorf("version through the proxy = %q, want memcached's %q", got, want)
	}
	if _, err := exec.LookPath(memcpingPath); err != nil {
		t.Logf("%s is not installed (Debian package libmemcached-tools); memcping not run", memcpingPath)
	} else if out, err := exec.Command(memcpingPath, "--servers="+addr).CombinedOutput(); err != nil {
		t.Errorf("memcping --servers=%s: %v %s", addr, err, out)
	}

	dead, _, _ := twemproxytest.StartPool(t, "mc", false, "", []string{deadAddr(t)},
		twemproxy.Protocols{Memcache: &memcache.Protocol{}})
	d := dial(t, dead)
	d.send("version\r\n")
	if got, want := d.line(), "SERVER_ERROR Connection refused\r\n"; got != want {
		t.Errorf("version with its server down = %q, want nutcracker's %q", got, want)
	}
}

// Protocol.Version makes the proxy answer "version" itself: the server is never asked.
func TestVersionAnsweredLocally(t *testing.T) {
	addr, _, _ := twemproxytest.StartPool(t, "mc", false, "", []string{deadAddr(t)},
		twemproxy.Protocols{Memcache: &memcache.Protocol{Version: localVersion}})
	c := dial(t, addr)
	c.send("version\r\n")
	if got, want := c.line(), "VERSION "+localVersion+"\r\n"; got != want {
		t.Errorf("version = %q, want %q", got, want)
	}
}

// "version" with anything but spaces after it closes the connection without a reply, as
// nutcracker 0.5.0 closes it (measured: no byte, then the end of the stream; memcached answers
// "version noreply" and "version x"). The proxy used to forward it and send the server's VERSION.
// The same bytes go to Debian's nutcracker over the same server, where what it does is certain: one
// command, or commands it answers before the one it refuses. After a reply to requests sent before
// it, which nutcracker may drop, the proxy's stream ends as well.
func TestVersionWithArgumentsAsNutcracker(t *testing.T) {
	servers := fakeVersions(t, 1)
	protos := twemproxy.Protocols{Memcache: &memcache.Protocol{}}
	addr, _, _ := twemproxytest.StartPool(t, "mc", false, "", servers, protos)
	local, _, _ := twemproxytest.StartPool(t, "mc", false, "", servers,
		twemproxy.Protocols{Memcache: &memcache.Protocol{Version: localVersion}})
	cases := []struct {
		in, want string
		nc       bool // compared with nutcracker
	}{
		{"version x\r\n", "", true},
		{"version noreply\r\n", "", true},
		{"version   1 2\r\n", "", true},
		{"version  \r\nquit\r\n", "VERSION 9.9.0\r\n", true},
		{"version\r\nversion x\r\nversion\r\n", "VERSION 9.9.0\r\n", false},
	}
	for _, tc := range cases {
		if got := untilEOF(t, addr, tc.in); got != tc.want {
			t.Errorf("%q: read %q, want %q and the end of the stream", tc.in, got, tc.want)
		}
	}
	if got := untilEOF(t, local, "version x\r\n"); got != "" {
		t.Errorf("with Protocol.Version: %q: read %q, want the end of the stream", "version x\r\n", got)
	}
	nc := twemproxytest.StartNutcracker(t, "mc", false, "", servers)
	for _, tc := range cases {
		if got := untilEOF(t, nc, tc.in); tc.nc && got != tc.want {
			t.Errorf("nutcracker: %q: read %q, want %q and the end of the stream", tc.in, got, tc.want)
		}
	}
}

// untilEOF writes in on a new connection to addr and returns what it reads to the end of the
// stream; a read that fails otherwise (a reset, no end within 30 s) is appended as <error>.
func untilEOF(t *testing.T, addr, in string) string {
	t.Helper()
	out, _, err := twemproxytest.SendAndRead(t, addr, []byte(in))
	if err != nil {
		return fmt.Sprintf("%s<%v>", out, err)
	}
	return string(out)
}
