package redis_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
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
	return twemproxytest.StartPool(t, "r", true, extra, procAddrs(backends), twemproxy.Protocols{Redis: proto})
}

func procAddrs(ps []*shardproc.Proc) []string {
	addrs := make([]string, len(ps))
	for i, p := range ps {
		addrs[i] = p.Addr
	}
	return addrs
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
