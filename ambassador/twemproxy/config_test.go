package twemproxy_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/shardproc"
)

const fullConfig = `alpha:
  listen: 127.0.0.1:22121
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: ketama
  timeout: 400
  backlog: 1024
  client_connections: 100
  tcpkeepalive: true
  preconnect: true
  redis: true
  redis_auth: secret
  redis_db: 2
  server_connections: 4
  auto_eject_hosts: true
  server_retry_timeout: 2000
  server_failure_limit: 3
  servers:
   - 127.0.0.1:6380:1 server1
   - 127.0.0.1:6379:2
omega:
  listen: /tmp/gamma 0666
  servers:
   - 127.0.0.1:11211:100000
   - /var/run/mc.sock:1
`

func TestParseFull(t *testing.T) {
	cfg, err := twemproxy.Parse([]byte(fullConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := []*twemproxy.PoolConfig{{
		Name: "alpha", Line: 1, Listen: "127.0.0.1:22121", ListenNetwork: "tcp", ListenAddr: "127.0.0.1:22121",
		Hash: "fnv1a_64", HashTag: "{}", Distribution: twemproxy.Ketama, Timeout: 400 * time.Millisecond,
		Backlog: 1024, ClientConnections: 100, TCPKeepalive: true, Preconnect: true, Redis: true,
		RedisAuth: "secret", RedisDB: 2, ServerConnections: 4, AutoEjectHosts: true,
		ServerRetryTimeout: 2 * time.Second, ServerFailureLimit: 3,
		Servers: []twemproxy.ServerConfig{ // sorted by name: shorter first
			{Spec: "127.0.0.1:6380:1", Network: "tcp", Addr: "127.0.0.1:6380", Weight: 1, Name: "server1", Line: 19},
			{Spec: "127.0.0.1:6379:2", Network: "tcp", Addr: "127.0.0.1:6379", Weight: 2, Name: "127.0.0.1:6379", Line: 20},
		},
	}, {
		Name: "omega", Line: 21, Listen: "/tmp/gamma 0666", ListenNetwork: "unix", ListenAddr: "/tmp/gamma", ListenPerm: 0o666,
		Hash: "fnv1a_64", Distribution: twemproxy.Ketama, Backlog: 512, ServerConnections: 1,
		ServerRetryTimeout: 30 * time.Second, ServerFailureLimit: 2,
		Servers: []twemproxy.ServerConfig{
			{Spec: "127.0.0.1:11211:100000", Network: "tcp", Addr: "127.0.0.1:11211", Weight: 100000, Name: "127.0.0.1", Line: 24},
			{Spec: "/var/run/mc.sock:1", Network: "unix", Addr: "/var/run/mc.sock", Weight: 1, Name: "/var/run/mc.sock:", Line: 25},
		},
	}}
	if diff := cmp.Diff(want, cfg.Pools, cmpopts.IgnoreFields(twemproxy.PoolConfig{}, "HashFunc")); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

var badConfigs = []struct {
	name, yaml, key string
	line            int
}{
	{"unknown key", "p:\n  listen: 127.0.0.1:1\n  hashh: md5\n  servers:\n   - 1.1.1.1:1:1\n", "hashh", 3},
	{"bad hash", "p:\n  listen: 127.0.0.1:1\n  hash: sha1\n  servers:\n   - 1.1.1.1:1:1\n", "hash", 3},
	{"bad distribution", "p:\n  listen: 127.0.0.1:1\n  distribution: rendezvous\n  servers:\n   - 1.1.1.1:1:1\n", "distribution", 3},
	{"bad bool", "p:\n  listen: 127.0.0.1:1\n  redis: yes\n  servers:\n   - 1.1.1.1:1:1\n", "redis", 3},
	{"negative number", "p:\n  listen: 127.0.0.1:1\n  timeout: -1\n  servers:\n   - 1.1.1.1:1:1\n", "timeout", 3},
	{"hash tag length", "p:\n  listen: 127.0.0.1:1\n  hash_tag: \"{\"\n  servers:\n   - 1.1.1.1:1:1\n", "hash_tag", 3},
	{"zero server_connections", "p:\n  listen: 127.0.0.1:1\n  server_connections: 0\n  servers:\n   - 1.1.1.1:1:1\n", "server_connections", 3},
	{"missing weight", "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 1.1.1.1:11211\n", "servers", 4},
	{"zero weight", "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 1.1.1.1:1:0\n", "servers", 4},
	{"bad port", "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 1.1.1.1:70000:1\n", "servers", 4},
	{"duplicate server name", "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 1.1.1.1:1:1 a\n   - 1.1.1.2:1:1 a\n", "servers", 5},
	{"missing listen", "p:\n  servers:\n   - 1.1.1.1:1:1\n", "listen", 1},
	{"listen without port", "p:\n  listen: localhost\n  servers:\n   - 1.1.1.1:1:1\n", "listen", 2},
	{"no servers", "p:\n  listen: 127.0.0.1:1\n", "servers", 1},
	{"duplicate key", "p:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n  servers:\n   - 1.1.1.1:1:1\n", "listen", 3},
	{"same listen", "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 1.1.1.1:1:1\nq:\n  listen: 127.0.0.1:1\n  servers:\n   - 1.1.1.1:1:1\n", "listen", 5},
	{"same listen port spelled with a zero", "p:\n  listen: 127.0.0.1:1\n  servers:\n   - 1.1.1.1:1:1\nq:\n  listen: 127.0.0.1:01\n  servers:\n   - 1.1.1.1:1:1\n", "listen", 5},
	{"servers not a list", "p:\n  listen: 127.0.0.1:1\n  servers: 1.1.1.1:1:1\n", "servers", 3},
	{"redis_auth in a memcache pool", "p:\n  listen: 127.0.0.1:1\n  redis_auth: secret\n  servers:\n   - 1.1.1.1:1:1\n", "redis_auth", 3},
	{"redis_auth before redis: false", "p:\n  listen: 127.0.0.1:1\n  redis_auth: secret\n  redis: false\n  servers:\n   - 1.1.1.1:1:1\n", "redis_auth", 3},
	{"empty redis_auth", "p:\n  listen: 127.0.0.1:1\n  redis: true\n  redis_auth: \"\"\n  servers:\n   - 1.1.1.1:1:1\n", "redis_auth", 4},
	{"not yaml", "p: [\n", "", 0},
	{"empty", "", "", 0},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := twemproxy.Parse([]byte(tc.yaml))
			var ce *twemproxy.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Parse error %v, want a *ConfigError", err)
			}
			if ce.Key != tc.key || (tc.line != 0 && ce.Line != tc.line) {
				t.Errorf("error %q names key %q line %d, want key %q line %d", err, ce.Key, ce.Line, tc.key, tc.line)
			}
			if tc.key != "" && !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q does not name %q", err, tc.key)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(fullConfig))
	for _, tc := range badConfigs {
		f.Add([]byte(tc.yaml))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := twemproxy.Parse(data)
		if err != nil {
			return
		}
		for _, p := range cfg.Pools {
			if len(p.Servers) == 0 || p.HashFunc == nil || p.ServerConnections < 1 {
				t.Fatalf("accepted pool %q without servers, hash or connections", p.Name)
			}
			pl := twemproxy.NewPlacer(p, nil)
			if i := pl.Place(data); i < 0 || i >= len(p.Servers) {
				t.Fatalf("Place = %d with %d servers", i, len(p.Servers))
			}
		}
	})
}

func TestHashVectors(t *testing.T) {
	// Reference values: CRC-32/IEEE and FNV-1/1a 32 of standard inputs; the others are pinned
	// values cross-checked against nutcracker by TestPlacementMatchesNutcracker.
	tests := []struct {
		hash string
		key  string
		want uint32
	}{
		{"crc32a", "123456789", 0xCBF43926},
		{"crc32", "123456789", (0xCBF43926 >> 16) & 0x7fff},
		{"fnv1_32", "a", 0x050c5d7e},
		{"fnv1a_32", "a", 0xe40c292c},
		{"fnv1a_32", "foobar", 0xbf9cf968},
		{"fnv1_64", "a", 0x8601b7be}, // low 32 bits of FNV-1 64 ("a") = 0xaf63bd4c8601b7be
		{"md5", "", 0xd98c1dd4},
	}
	for _, tc := range tests {
		h, err := twemproxy.LookupHash(tc.hash)
		if err != nil {
			t.Fatal(err)
		}
		if got := h([]byte(tc.key)); got != tc.want {
			t.Errorf("%s(%q) = %#x, want %#x", tc.hash, tc.key, got, tc.want)
		}
	}
	if _, err := twemproxy.LookupHash("sha1"); !errors.Is(err, twemproxy.ErrUnknownHash) {
		t.Errorf("LookupHash(sha1) = %v", err)
	}
	for _, name := range twemproxy.HashNames() {
		h, _ := twemproxy.LookupHash(name)
		for _, k := range []string{"", "a", "ab", "abc", "abcd", "abcdefghijklm", "\xff\x80"} {
			_ = h([]byte(k)) // every length class runs without panicking
		}
	}
}

func TestHashTagged(t *testing.T) {
	tests := []struct{ key, tag, want string }{
		{"user:{42}:name", "{}", "42"},
		{"user:{}:name", "{}", "user:{}:name"},
		{"user:{42:name", "{}", "user:{42:name"},
		{"a$b$c", "$$", "b"},
		{"plain", "{}", "plain"},
		{"x{a}{b}", "{}", "a"},
	}
	for _, tc := range tests {
		if got := string(twemproxy.HashTagged([]byte(tc.key), tc.tag)); got != tc.want {
			t.Errorf("HashTagged(%q, %q) = %q, want %q", tc.key, tc.tag, got, tc.want)
		}
	}
}

func TestContinuumWeights(t *testing.T) {
	servers := []twemproxy.ServerConfig{{Name: "a", Weight: 1}, {Name: "b", Weight: 3}}
	counts := map[int]int{}
	c := twemproxy.BuildContinuum(twemproxy.Modula, servers, nil)
	for h := range uint32(400) {
		counts[c.Dispatch(h)]++
	}
	if diff := cmp.Diff(map[int]int{0: 100, 1: 300}, counts); diff != "" {
		t.Errorf("modula weights (-want +got):\n%s", diff)
	}
	random := map[int]int{}
	rc := twemproxy.BuildContinuum(twemproxy.Random, servers, nil)
	for range 4000 {
		random[rc.Dispatch(0)]++
	}
	if random[0] < 700 || random[1] < 2600 || len(random) != 2 {
		t.Errorf("random over weights 1:3 picked %v", random)
	}
	if !twemproxy.BuildContinuum(twemproxy.Ketama, servers, []bool{false, false}).Empty() {
		t.Error("continuum with no live server is not empty")
	}
	k := twemproxy.BuildContinuum(twemproxy.Ketama, servers, []bool{false, true})
	for h := uint32(0); h < 1<<31; h += 1 << 24 {
		if got := k.Dispatch(h); got != 1 {
			t.Fatalf("only server 1 is live, Dispatch(%d) = %d", h, got)
		}
	}
}

// The redis-only keys in a memcache pool, and an empty password, are judged as `nutcracker -t`
// judges them: redis_auth is only valid for a redis pool; redis_db is accepted (and ignored).
var redisKeyConfigs = []struct {
	name, pool string
	ok         bool
}{
	{"redis_auth in a memcache pool", "  redis_auth: secret\n", false},
	{"redis_auth with redis: false", "  redis: false\n  redis_auth: secret\n", false},
	{"redis_auth before redis: true", "  redis_auth: secret\n  redis: true\n", true},
	{"empty redis_auth", "  redis: true\n  redis_auth: \"\"\n", false},
	{"redis_db in a memcache pool", "  redis_db: 3\n", true},
	{"redis_db with redis: false", "  redis: false\n  redis_db: 2\n", true},
	{"redis_auth and redis_db", "  redis: true\n  redis_auth: secret\n  redis_db: 2\n", true},
}

func redisKeyConfig(pool string) string {
	return "alpha:\n  listen: 127.0.0.1:22121\n" + pool + "  servers:\n   - 127.0.0.1:11211:1\n"
}

func TestParseRedisKeys(t *testing.T) {
	for _, tc := range redisKeyConfigs {
		_, err := twemproxy.Parse([]byte(redisKeyConfig(tc.pool)))
		var ce *twemproxy.ConfigError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v, want the config accepted", tc.name, err)
		case !tc.ok && (!errors.As(err, &ce) || ce.Key != "redis_auth" || ce.Line < 3):
			t.Errorf("%s: error %v, want a *ConfigError naming redis_auth and its line", tc.name, err)
		}
	}
}

// TestRedisKeysMatchNutcracker checks the table above against Debian's nutcracker -t.
func TestRedisKeysMatchNutcracker(t *testing.T) {
	for _, tc := range redisKeyConfigs {
		if ok, out := nutcrackerAccepts(t, redisKeyConfig(tc.pool)); ok != tc.ok {
			t.Errorf("%s: nutcracker -t: %s; the table says valid=%v", tc.name, out, tc.ok)
		}
	}
}

// nutcrackerAccepts reports whether Debian's nutcracker -t accepts the configuration, with its
// output; it skips the test when nutcracker is not installed.
func nutcrackerAccepts(t *testing.T, yaml string) (bool, []byte) {
	t.Helper()
	if !shardproc.Have(shardproc.NutcrackerPath) {
		t.Skipf("%s is not installed (Debian package nutcracker); skipping", shardproc.NutcrackerPath)
	}
	path := filepath.Join(t.TempDir(), "nutcracker.yml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(shardproc.NutcrackerPath, "-t", "-c", path).CombinedOutput()
	return err == nil, out
}

// Configurations Parse and `nutcracker -t` must judge alike: a file holds one YAML document, and
// nutcracker's IPv6 "host:port" forms (split at the last colon) are valid.
var nutcrackerJudged = []struct {
	name, yaml string
	ok         bool
	line       int // of the *ConfigError when !ok
}{
	{"one document", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n", true, 0},
	{"second document", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n---\n" +
		"b:\n  listen: 127.0.0.1:22122\n  servers:\n   - 127.0.0.1:11211:1\n", false, 5},
	{"empty second document", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n---\n", false, 5},
	{"second document of a comment", "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n---\n# b\n", false, 5},
	{"IPv6 listen and servers", "a:\n  listen: ::1:22121\n  servers:\n   - ::1:6379:1\n   - ::1:11211:2\n   - ::1:6380:1 c\n", true, 0},
}

func TestParseJudgedAsNutcracker(t *testing.T) {
	for _, tc := range nutcrackerJudged {
		_, err := twemproxy.Parse([]byte(tc.yaml))
		var ce *twemproxy.ConfigError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v, want the config accepted", tc.name, err)
		case !tc.ok && (!errors.As(err, &ce) || ce.Line != tc.line):
			t.Errorf("%s: error %v, want a *ConfigError at line %d", tc.name, err, tc.line)
		}
	}
}

// TestJudgedMatchesNutcracker checks the table above against Debian's nutcracker -t.
func TestJudgedMatchesNutcracker(t *testing.T) {
	for _, tc := range nutcrackerJudged {
		if ok, out := nutcrackerAccepts(t, tc.yaml); ok != tc.ok {
			t.Errorf("%s: nutcracker -t: %s; the table says valid=%v", tc.name, out, tc.ok)
		}
	}
}

// nutcracker splits "host:port" and "host:port:weight" at the last colons; the addresses Parse
// gives must be ones Go can dial and listen on, while Name keeps the string nutcracker hashes.
func TestParseIPv6(t *testing.T) {
	cfg, err := twemproxy.Parse([]byte("a:\n  listen: ::1:22121\n  servers:\n   - ::1:6379:1\n" +
		"   - ::1:11211:2\n   - fe80::1%eth0:6380:1 c\n   - \"[::1]:6381:1\"\n" +
		"b:\n  listen: \"[::1]:22122\"\n  servers:\n   - 127.0.0.1:6379:1\n"))
	if err != nil {
		t.Fatal(err)
	}
	type addr struct{ Addr, Name string }
	var got []addr
	for _, s := range cfg.Pools[0].Servers {
		got = append(got, addr{s.Addr, s.Name})
	}
	want := []addr{ // sorted by name, as nutcracker
		{"[fe80::1%eth0]:6380", "c"},
		{"[::1]:11211", "::1"},
		{"[::1]:6379", "::1:6379"},
		{"[::1]:6381", "[::1]:6381"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("servers (-want +got):\n%s", diff)
	}
	for _, a := range append([]string{cfg.Pools[0].ListenAddr, cfg.Pools[1].ListenAddr}, want[0].Addr, want[1].Addr) {
		if _, _, err := net.SplitHostPort(a); err != nil {
			t.Errorf("SplitHostPort(%q): %v", a, err)
		}
	}
	if got := []string{cfg.Pools[0].ListenAddr, cfg.Pools[1].ListenAddr}; !cmp.Equal(got, []string{"[::1]:22121", "[::1]:22122"}) {
		t.Errorf("ListenAddr = %q, want [::1]:22121 and [::1]:22122", got)
	}
}
