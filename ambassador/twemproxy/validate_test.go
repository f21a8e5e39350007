package twemproxy_test

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/lifecycletest"
)

// handBuilt is a redis pool built in Go, as Parse would have built it, listening on listen and
// forwarding to the server at addr.
func handBuilt(listen, addr string) *twemproxy.PoolConfig {
	return &twemproxy.PoolConfig{
		Name: "a", Listen: listen, ListenNetwork: "tcp", ListenAddr: listen, Redis: true,
		Distribution: twemproxy.Ketama, ServerConnections: 1, ServerRetryTimeout: time.Second, ServerFailureLimit: 2,
		Servers: []twemproxy.ServerConfig{{Network: "tcp", Addr: addr, Weight: 1, Name: "s0"}},
	}
}

// A Config built in Go that lacks what Parse would have set, or sets what Parse rejects, gets a
// *ConfigError naming the pool and the key from NewServer, instead of a Server whose first request
// panics (ServerConnections 0 divided by zero) or places keys wrongly.
func TestNewServerValidatesHandBuiltConfig(t *testing.T) {
	protos := bothProtocols
	if _, err := twemproxy.NewServer(&twemproxy.Config{Pools: []*twemproxy.PoolConfig{handBuilt("127.0.0.1:1", "127.0.0.1:2")}}, protos); err != nil {
		t.Fatalf("a complete hand-built config: %v", err)
	}
	for _, tc := range []struct {
		name, key string
		edit      func(p *twemproxy.PoolConfig)
	}{
		{"zero server connections", "server_connections", func(p *twemproxy.PoolConfig) { p.ServerConnections = 0 }},
		{"no servers", "servers", func(p *twemproxy.PoolConfig) { p.Servers = nil }},
		{"zero weight", "servers", func(p *twemproxy.PoolConfig) { p.Servers[0].Weight = 0 }},
		{"server without a network", "servers", func(p *twemproxy.PoolConfig) { p.Servers[0].Network = "" }},
		{"server without an address", "servers", func(p *twemproxy.PoolConfig) { p.Servers[0].Addr = "" }},
		{"servers with one name", "servers", func(p *twemproxy.PoolConfig) { p.Servers = append(p.Servers, p.Servers[0]) }},
		{"no distribution", "distribution", func(p *twemproxy.PoolConfig) { p.Distribution = "" }},
		{"unknown hash", "hash", func(p *twemproxy.PoolConfig) { p.Hash = "sha1" }},
		{"hash without its function", "hash", func(p *twemproxy.PoolConfig) { p.Hash = "md5" }},
		{"one-character hash tag", "hash_tag", func(p *twemproxy.PoolConfig) { p.HashTag = "{" }},
		{"no listen network", "listen", func(p *twemproxy.PoolConfig) { p.ListenNetwork = "" }},
		{"no listen address", "listen", func(p *twemproxy.PoolConfig) { p.ListenAddr = "" }},
		{"permission of a TCP listener", "listen", func(p *twemproxy.PoolConfig) { p.ListenPerm = 0o600 }},
		{"socket mode beyond a permission", "listen", func(p *twemproxy.PoolConfig) {
			p.ListenNetwork, p.ListenAddr, p.ListenPerm = "unix", "/tmp/x.sock", os.ModeSetuid|0o600
		}},
		{"negative timeout", "timeout", func(p *twemproxy.PoolConfig) { p.Timeout = -time.Second }},
		{"negative retry timeout", "server_retry_timeout", func(p *twemproxy.PoolConfig) { p.ServerRetryTimeout = -1 }},
		{"negative failure limit", "server_failure_limit", func(p *twemproxy.PoolConfig) { p.ServerFailureLimit = -1 }},
		{"negative client connections", "client_connections", func(p *twemproxy.PoolConfig) { p.ClientConnections = -1 }},
		{"negative health check interval", "health_check_interval", func(p *twemproxy.PoolConfig) { p.HealthCheckInterval = -1 }},
		{"redis_auth in a memcache pool", "redis_auth", func(p *twemproxy.PoolConfig) { p.Redis, p.RedisAuth = false, "pw" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := handBuilt("127.0.0.1:1", "127.0.0.1:2")
			tc.edit(pc)
			_, err := twemproxy.NewServer(&twemproxy.Config{Pools: []*twemproxy.PoolConfig{pc}}, bothProtocols)
			var ce *twemproxy.ConfigError
			if !errors.As(err, &ce) || ce.Pool != "a" || ce.Key != tc.key {
				t.Errorf("NewServer = %v, want a *ConfigError for pool \"a\", key %q", err, tc.key)
			}
		})
	}
	t.Run("two pools of one name", func(t *testing.T) {
		_, err := twemproxy.NewServer(&twemproxy.Config{Pools: []*twemproxy.PoolConfig{
			handBuilt("127.0.0.1:1", "127.0.0.1:2"), handBuilt("127.0.0.1:3", "127.0.0.1:2")}}, protos)
		var ce *twemproxy.ConfigError
		if !errors.As(err, &ce) || ce.Pool != "a" {
			t.Errorf("NewServer = %v, want a *ConfigError for pool \"a\"", err)
		}
	})
	t.Run("two pools on one address", func(t *testing.T) {
		b := handBuilt("127.0.0.1:1", "127.0.0.1:2")
		b.Name = "b"
		_, err := twemproxy.NewServer(&twemproxy.Config{Pools: []*twemproxy.PoolConfig{
			handBuilt("127.0.0.1:1", "127.0.0.1:2"), b}}, protos)
		var ce *twemproxy.ConfigError
		if !errors.As(err, &ce) || ce.Pool != "b" || ce.Key != "listen" {
			t.Errorf("NewServer = %v, want a *ConfigError for pool \"b\", key \"listen\"", err)
		}
	})
}

// Reload rejects a hand-built pool with ServerConnections 0, and the pool keeps serving its old
// configuration: with the old code the first request after the reload panicked (integer divide by
// zero), taking every pool down.
func TestReloadValidatesHandBuiltConfig(t *testing.T) {
	be, _ := dialedRedis(t)
	addr := freeport.TCP(t)
	srv, err := twemproxy.NewServer(&twemproxy.Config{Pools: []*twemproxy.PoolConfig{handBuilt(addr, be)}},
		twemproxy.Protocols{Redis: &redis.Protocol{}})
	if err != nil {
		t.Fatal(err)
	}
	run := lifecycletest.StartReady(t, srv, 10*time.Second)
	c := dialResp(t, addr)
	if got := c.do(t, "GET", "k"); got != "+OK" {
		t.Fatalf("GET before the reload = %q", got)
	}
	bad := handBuilt(addr, be)
	bad.ServerConnections = 0
	err = srv.Reload(&twemproxy.Config{Pools: []*twemproxy.PoolConfig{bad}})
	var ce *twemproxy.ConfigError
	if !errors.As(err, &ce) || ce.Pool != "a" || ce.Key != "server_connections" {
		t.Errorf("Reload = %v, want a *ConfigError for pool \"a\", key \"server_connections\"", err)
	}
	if got := c.do(t, "GET", "k"); got != "+OK" {
		t.Errorf("GET after the rejected reload = %q", got)
	}
	if err := run.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// What Parse accepts, NewServer accepts (a server with an empty host, which nutcracker names ""),
// and two listen directives for one address are refused by Parse already (so -t refuses them),
// however they are spelled: a socket's permission, a doubled slash, IPv6 with or without brackets.
func TestParsedConfigValidates(t *testing.T) {
	cfg, err := twemproxy.Parse([]byte("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - :11211:1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := twemproxy.NewServer(cfg, bothProtocols); err != nil {
		t.Errorf("Parse accepted a server with an empty host, NewServer refused it: %v", err)
	}
	dir := t.TempDir()
	for name, pair := range map[string][2]string{
		"permission":   {dir + "/a.sock 0666", dir + "/a.sock"},
		"double slash": {dir + "/a.sock", dir + "//a.sock"},
		"ipv6":         {"::1:22121", `"[::1]:22121"`},
	} {
		y := "a:\n  listen: " + pair[0] + "\n  servers:\n   - 127.0.0.1:11211:1\nb:\n  listen: " + pair[1] + "\n  servers:\n   - 127.0.0.1:11211:1\n"
		var ce *twemproxy.ConfigError
		if _, err := twemproxy.Parse([]byte(y)); !errors.As(err, &ce) || ce.Key != "listen" {
			t.Errorf("%s: Parse of two pools on %s and %s: %v, want a ConfigError on listen", name, pair[0], pair[1], err)
		}
	}
}

// ResolveListen refuses a TCP listen host that does not resolve, naming the pool and the key, as
// nutcracker -t does; IP literals, an empty host and unix sockets pass, and so does a server host
// that does not resolve (nutcracker resolves it when it connects).
func TestResolveListen(t *testing.T) {
	cfg := parseConfig(t, "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - nohost.invalid:11211:1\n"+
		"b:\n  listen: \"[::1]:22122\"\n  servers:\n   - 127.0.0.1:11211:1\n"+
		"c:\n  listen: :22123\n  servers:\n   - 127.0.0.1:11211:1\n"+
		"d:\n  listen: /tmp/nohost.invalid.sock\n  servers:\n   - 127.0.0.1:11211:1\n")
	if err := twemproxy.ResolveListen(t.Context(), cfg); err != nil {
		t.Errorf("ResolveListen: %v", err)
	}
	cfg = parseConfig(t, "a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n"+
		"b:\n  listen: nohost.invalid:22122\n  servers:\n   - 127.0.0.1:11211:1\n")
	var ce *twemproxy.ConfigError
	if err := twemproxy.ResolveListen(t.Context(), cfg); !errors.As(err, &ce) || ce.Pool != "b" || ce.Key != "listen" || ce.Line != 5 {
		t.Errorf("ResolveListen = %v, want a *ConfigError for pool b's listen on line 5", err)
	}
}

// Two pools whose listen addresses certainly collide on one port (equal IP addresses spelled two
// ways, a wildcard beside an address of its family, or on Linux :: beside any host, which it
// listens on for IPv4 and IPv6 at once as nutcracker does) are refused by Parse, and so by -t, and
// by NewServer, with a *ConfigError on the second pool's listen, at its line, that names the first:
// nutcracker -t accepts them, and nutcracker fails to bind the second when it starts. Hosts that
// may both be bound on one port pass: 0.0.0.0, which is IPv4 only, beside an IPv6 address (which
// nutcracker runs; the old code refused it) or a name (which only the bind can tell); and so does
// port 0, which gets each listener a port of its own.
func TestValidateRefusesCollidingListens(t *testing.T) {
	two := func(a, b string) string {
		return "a:\n  listen: " + a + "\n  servers:\n   - 127.0.0.1:11211:1\nb:\n  listen: " + b + "\n  servers:\n   - 127.0.0.1:11211:1\n"
	}
	collide := [][2]string{
		{"0.0.0.0:22121", "127.0.0.2:22121"},
		{"127.0.0.1:22121", "0.0.0.0:022121"},
		{`"[::]:22121"`, "127.0.0.1:22121"},
		{":22121", `"[::1]:22121"`},
		{"127.0.0.1:22121", `"[::ffff:127.0.0.1]:22121"`},
	}
	if runtime.GOOS == "linux" {
		collide = append(collide, [2]string{"localhost:22121", `"[::]:22121"`}, [2]string{"0.0.0.0:22121", `"[::]:22121"`})
	}
	for _, pair := range collide {
		_, err := twemproxy.Parse([]byte(two(pair[0], pair[1])))
		var ce *twemproxy.ConfigError
		if !errors.As(err, &ce) || ce.Pool != "b" || ce.Key != "listen" || ce.Line != 5 || !strings.Contains(err.Error(), `pool "a"`) {
			t.Errorf("Parse of pools on %s and %s: %v, want a ConfigError on pool b's listen, line 5, naming pool a", pair[0], pair[1], err)
		}
	}
	for _, pair := range [][2]string{
		{"127.0.0.1:22121", "127.0.0.2:22121"},
		{"127.0.0.1:22121", "localhost:22121"},
		{"0.0.0.0:22121", "0.0.0.0:22122"},
		{"0.0.0.0:22121", "::1:22121"},
		{"::ffff:0.0.0.0:22121", "::1:22121"},
		{"0.0.0.0:22121", "fd00::2:22121"},
		{"0.0.0.0:22121", "fe80::1%eth0:22121"},
		{"0.0.0.0:22121", "localhost:22121"},
	} {
		if _, err := twemproxy.Parse([]byte(two(pair[0], pair[1]))); err != nil {
			t.Errorf("Parse of pools on %s and %s: %v", pair[0], pair[1], err)
		}
	}
	a, b := handBuilt("0.0.0.0:22121", "127.0.0.1:2"), handBuilt("127.0.0.2:22121", "127.0.0.1:2")
	b.Name = "b"
	var ce *twemproxy.ConfigError
	if _, err := twemproxy.NewServer(&twemproxy.Config{Pools: []*twemproxy.PoolConfig{a, b}}, bothProtocols); !errors.As(err, &ce) || ce.Pool != "b" || ce.Key != "listen" {
		t.Errorf("NewServer of pools on %s and %s: %v, want a ConfigError on pool b's listen", a.ListenAddr, b.ListenAddr, err)
	}
	a.ListenAddr, b.ListenAddr = "0.0.0.0:0", "127.0.0.2:0"
	if _, err := twemproxy.NewServer(&twemproxy.Config{Pools: []*twemproxy.PoolConfig{a, b}}, bothProtocols); err != nil {
		t.Errorf("NewServer of pools on %s and %s: %v", a.ListenAddr, b.ListenAddr, err)
	}
}
