package twemproxy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// Placement of keys under a nutcracker configuration, without running anything.
func ExampleNewPlacer() {
	cfg, err := twemproxy.Parse([]byte(`
beta:
  listen: 127.0.0.1:22122
  hash: fnv1a_64
  hash_tag: "{}"
  distribution: ketama
  redis: true
  servers:
   - 127.0.0.1:6380:1 server1
   - 127.0.0.1:6381:1 server2
   - 127.0.0.1:6382:1 server3
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	pool := cfg.Pool("beta")
	pl := twemproxy.NewPlacer(pool, nil)
	for _, key := range []string{"user:{42}:name", "user:{42}:email", "session:7"} {
		fmt.Println(key, "->", pool.Servers[pl.Place([]byte(key))].Name)
	}
	// Output:
	// user:{42}:name -> server3
	// user:{42}:email -> server3
	// session:7 -> server1
}

// Serving a nutcracker.yml (as in the README): every pool, memcache and redis, then a reload.
func ExampleServer() {
	dir, _ := os.MkdirTemp("", "podblocks-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "nutcracker.yml")
	yml := fmt.Sprintf("cache:\n  listen: %s\n  servers:\n   - 127.0.0.1:11211:1\n", filepath.Join(dir, "cache.sock"))
	_ = os.WriteFile(path, []byte(yml), 0o600)

	cfg, err := twemproxy.ReadFile(path)
	if err != nil {
		fmt.Println(err) // *twemproxy.ConfigError: line, pool and key
		return
	}
	reg := prometheus.NewRegistry()
	srv, err := twemproxy.NewServer(cfg,
		twemproxy.Protocols{Memcache: &memcache.Protocol{}, Redis: &redis.Protocol{}},
		twemproxy.WithStatsAddr("127.0.0.1:0"), twemproxy.WithRegisterer(reg))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()
	fmt.Println("serving pools:", len(srv.Snapshot()))
	newCfg, _ := twemproxy.ReadFile(path)
	fmt.Println("reload:", srv.Reload(newCfg))
	cancel()
	fmt.Println("stopped:", <-done)
	// Output:
	// serving pools: 1
	// reload: <nil>
	// stopped: <nil>
}
