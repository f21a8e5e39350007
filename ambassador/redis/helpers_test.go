package redis_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/shardproc"
)

func needRedis(t *testing.T) {
	t.Helper()
	if !shardproc.Have(shardproc.RedisPath) {
		t.Skipf("%s is not installed (Debian package redis-server); skipping", shardproc.RedisPath)
	}
}

func startRedis(t *testing.T, n int) []*shardproc.Proc {
	t.Helper()
	var ps []*shardproc.Proc
	for range n {
		p, err := shardproc.StartRedis()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		ps = append(ps, p)
	}
	return ps
}

// startProxy serves one redis pool "r" over backends with the extra pool lines.
func startProxy(t *testing.T, extra string, backends []*shardproc.Proc, proto *redis.Protocol) (string, *twemproxy.Server, *twemproxy.PoolConfig) {
	t.Helper()
	port, err := shardproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var b strings.Builder
	fmt.Fprintf(&b, "r:\n  listen: %s\n  redis: true\n%s  servers:\n", addr, extra)
	for _, p := range backends {
		fmt.Fprintf(&b, "   - %s:1\n", p.Addr)
	}
	cfg, err := twemproxy.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := twemproxy.NewServer(cfg, twemproxy.Protocols{Redis: proto})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("proxy not ready")
	}
	return addr, srv, cfg.Pools[0]
}

// client is a minimal RESP client for tests.
type client struct {
	c net.Conn
	r *bufio.Reader
}

func dialClient(addr string) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &client{c: c, r: bufio.NewReader(c)}, nil
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := dialClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.c.Close() })
	return c
}

func encode(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

func (c *client) do(args ...string) (string, error) {
	if _, err := io.WriteString(c.c, encode(args...)); err != nil {
		return "", err
	}
	return c.read()
}

// read returns one reply rendered compactly: +s, -e, :n, $s (bulk), nil, [a b ...].
func (c *client) read() (string, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty line")
	}
	switch line[0] {
	case '+', '-', ':':
		return line, nil
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "nil", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return "", err
		}
		return "$" + string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		parts := make([]string, 0, n)
		for range n {
			p, err := c.read()
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return "[" + strings.Join(parts, " ") + "]", nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

func (c *client) must(t *testing.T, args ...string) string {
	t.Helper()
	r, err := c.do(args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return r
}
