package twemproxy_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// placementKeys returns n keys for a pool, some with bytes >= 0x80 (which nutcracker's C hashes
// read through a signed char) and some with hash tags.
func placementKeys(pool string, n int) []string {
	keys := make([]string, 0, n)
	for i := range n {
		switch i % 5 {
		case 0:
			keys = append(keys, fmt.Sprintf("%s:user:%d", pool, i))
		case 1:
			keys = append(keys, fmt.Sprintf("%s-\xc3\xa9t\xe9-%d", pool, i))
		case 2:
			keys = append(keys, fmt.Sprintf("%s{tag%d}x%d", pool, i%7, i))
		case 3:
			keys = append(keys, fmt.Sprintf("%s%d", pool, i*7919))
		default:
			keys = append(keys, fmt.Sprintf("%s$k%d$%d\xff", pool, i%3, i))
		}
	}
	return keys
}

type mcConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialMC(t *testing.T, addr string) *mcConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &mcConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
}

func (m *mcConn) setAll(t *testing.T, keys []string, val string) {
	t.Helper()
	for _, k := range keys {
		fmt.Fprintf(m.w, "set %s 0 0 %d\r\n%s\r\n", k, len(val), val)
	}
	if err := m.w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		line, err := m.r.ReadString('\n')
		if err != nil {
			t.Fatalf("set %q: %v", k, err)
		}
		if line != "STORED\r\n" {
			t.Fatalf("set %q: reply %q", k, line)
		}
	}
}

// hits returns which of keys the server holds.
func (m *mcConn) hits(t *testing.T, keys []string) map[string]bool {
	t.Helper()
	for _, k := range keys {
		fmt.Fprintf(m.w, "get %s\r\n", k)
	}
	if err := m.w.Flush(); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, k := range keys {
		line, err := m.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "VALUE ") {
			got[k] = true
			if _, err := m.r.ReadString('\n'); err != nil { // data
				t.Fatal(err)
			}
			if line, err = m.r.ReadString('\n'); err != nil || line != "END\r\n" {
				t.Fatalf("get %q: %q %v", k, line, err)
			}
		} else if line != "END\r\n" {
			t.Fatalf("get %q: %q", k, line)
		}
	}
	return got
}

// TestPlacementMatchesNutcracker runs Debian's nutcracker on a config with a pool per hash function
// and distribution (weights, names and hash tags included), stores keys through it into real
// memcached servers, finds each key's server by asking every server directly, and checks that
// twemproxy.Placer puts every key on the same server.
func TestPlacementMatchesNutcracker(t *testing.T) {
	for _, bin := range []string{shardproc.NutcrackerPath, shardproc.MemcachedPath} {
		if !shardproc.Have(bin) {
			t.Skipf("%s is not installed (Debian packages nutcracker, memcached); skipping the placement comparison", bin)
		}
	}
	const nmc = 4
	var backends []*shardproc.Proc
	for range nmc {
		p, err := shardproc.StartMemcached()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		backends = append(backends, p)
	}
	type poolSpec struct {
		name, hash, dist, tag string
		named, weighted       bool
	}
	var specs []poolSpec
	for _, h := range twemproxy.HashNames() {
		specs = append(specs,
			poolSpec{name: "k_" + h, hash: h, dist: "ketama", weighted: true},
			poolSpec{name: "m_" + h, hash: h, dist: "modula", weighted: true},
		)
	}
	specs = append(specs,
		poolSpec{name: "named", hash: "fnv1a_64", dist: "ketama", named: true},
		poolSpec{name: "tagged", hash: "fnv1a_64", dist: "ketama", tag: "{}"},
		poolSpec{name: "dollar", hash: "murmur", dist: "modula", tag: "$$", named: true},
		poolSpec{name: "plain", hash: "md5", dist: "ketama"},
	)
	var conf strings.Builder
	listen := map[string]string{}
	ports, err := shardproc.FreePorts(len(specs) + 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range specs {
		listen[s.name] = fmt.Sprintf("127.0.0.1:%d", ports[i])
		fmt.Fprintf(&conf, "%s:\n  listen: %s\n  hash: %s\n  distribution: %s\n", s.name, listen[s.name], s.hash, s.dist)
		if s.tag != "" {
			fmt.Fprintf(&conf, "  hash_tag: %q\n", s.tag)
		}
		conf.WriteString("  servers:\n")
		for i, b := range backends {
			w := 1
			if s.weighted {
				w = []int{1, 3, 2, 5}[i]
			}
			fmt.Fprintf(&conf, "   - %s:%d", b.Addr, w)
			if s.named {
				fmt.Fprintf(&conf, " shard%d", (i*7)%nmc*11) // names of different lengths
			}
			conf.WriteString("\n")
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := twemproxy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := shardproc.StartNutcracker(path, ports[len(specs)], listen[specs[0].name])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Stop)

	direct := make([]*mcConn, nmc)
	for i, b := range backends {
		direct[i] = dialMC(t, b.Addr)
	}
	total := 0
	for _, s := range specs {
		pc := cfg.Pool(s.name)
		if pc == nil {
			t.Fatalf("pool %s not parsed", s.name)
		}
		keys := placementKeys(s.name, 250)
		dialMC(t, listen[s.name]).setAll(t, keys, s.name)
		got := map[string]string{}
		for i, d := range direct {
			for k := range d.hits(t, keys) {
				if prev, dup := got[k]; dup {
					t.Fatalf("pool %s: key %q on %s and %s", s.name, k, prev, backends[i].Addr)
				}
				got[k] = backends[i].Addr
			}
		}
		pl := twemproxy.NewPlacer(pc, nil)
		want := map[string]string{}
		for _, k := range keys {
			want[k] = pc.Servers[pl.Place([]byte(k))].Addr
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pool %s (hash %s, %s): placement differs from nutcracker (-podblocks +nutcracker):\n%s", s.name, s.hash, s.dist, diff)
		}
		total += len(keys)
	}
	t.Logf("%d keys in %d pools placed as nutcracker places them", total, len(specs))
}
