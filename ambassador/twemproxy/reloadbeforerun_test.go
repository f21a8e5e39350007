package twemproxy_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// A Reload before Run replaces the configuration Run will serve (a reload trigger that fires while
// the server starts is not lost); an invalid one is refused and the first stays; a Reload after
// Run has returned is ErrClosed. Reload before Run used to be ErrClosed, as if the server had run.
func TestReloadBeforeRun(t *testing.T) {
	ports, err := shardproc.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	conf := func(port int) *twemproxy.Config {
		t.Helper()
		cfg, err := twemproxy.Parse(fmt.Appendf(nil,
			"p:\n  listen: 127.0.0.1:%d\n  redis: true\n  servers:\n   - 127.0.0.1:%d:1\n", port, ports[2]))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	first, second := conf(ports[0]), conf(ports[1])
	srv, err := twemproxy.NewServer(first, twemproxy.Protocols{Redis: &redis.Protocol{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(second); err != nil {
		t.Fatalf("Reload before Run: %v, want nil", err)
	}
	bad := conf(ports[0])
	bad.Pools[0].ServerConnections = 0
	var ce *twemproxy.ConfigError
	if err := srv.Reload(bad); !errors.As(err, &ce) {
		t.Fatalf("Reload of an invalid config before Run: %v, want a *ConfigError", err)
	}
	if got := srv.Config(); got != second {
		t.Fatalf("Config after Reloads before Run is not the valid one reloaded")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	c := dialResp(t, fmt.Sprintf("127.0.0.1:%d", ports[1]))
	if got := c.do(t, "PING"); got != "+PONG" {
		t.Errorf("PING on the reloaded address: %q", got)
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]), time.Second); err == nil {
		conn.Close()
		t.Errorf("the first config's address accepts a connection: Run served the config replaced before it")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := srv.Reload(first); !errors.Is(err, twemproxy.ErrClosed) {
		t.Errorf("Reload after Run returned: %v, want ErrClosed", err)
	}
}
