package twemproxy_test

import (
	"bufio"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
	"github.com/podblocks/podblocks/internal/await"
)

// dyingRedis answers every GET with "v" until die closes its listener and every connection at
// once, as a redis-server killed between requests does.
type dyingRedis struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startDyingRedis(t *testing.T) *dyingRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dyingRedis{ln: ln}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.mu.Lock()
			d.conns = append(d.conns, c)
			d.mu.Unlock()
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				br := bufio.NewReader(c)
				for {
					if _, err := readCommand(br); err != nil {
						return
					}
					if _, err := c.Write([]byte(bulk("v"))); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { d.die(); d.wg.Wait() })
	return d
}

func (d *dyingRedis) open() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.conns)
}

func (d *dyingRedis) die() {
	d.ln.Close()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
}

// A server that dies while its server_connections connections are idle is ejected by their
// closes, with no client request failing on it: each close counts toward server_failure_limit,
// as in nutcracker. Debian's nutcracker 0.5.0, with server_connections 4, server_failure_limit 2
// and a memcached killed while its 4 connections were idle, counted 4 failures and 2 ejections
// (server_eof 4, server_ejects 2) and routed the next request to the other server. The old code
// counted no failure for an idle close: the next 2 requests for the dead server's keys got
// "-ERR Connection refused" before it was ejected, once.
func TestIdleServerDeathEjects(t *testing.T) {
	dying := startDyingRedis(t)
	other := startFakeRedis(t, func(conn, n int, args []string) string { return bulk("other") })
	addr, srv, pc := twemproxytest.StartPool(t, "r", true,
		"  server_connections: 4\n  auto_eject_hosts: true\n  server_failure_limit: 2\n  server_retry_timeout: 60000\n",
		[]string{dying.ln.Addr().String(), other.addr()}, twemproxy.Protocols{Redis: &redis.Protocol{}})
	key := keyOn(t, pc, dying.ln.Addr().String())
	// Each client uses its own of the server's connections: 4 clients open all 4.
	var clients []*respClient
	for range 4 {
		c := dialResp(t, addr)
		if got := c.do(t, "GET", key); got != "$v" {
			t.Fatalf("GET %s: %s", key, got)
		}
		clients = append(clients, c)
	}
	if n := dying.open(); n != 4 {
		t.Fatalf("the server has %d connections from the proxy, want 4", n)
	}
	dying.die()
	var ejects int64
	await.True(t, "2 ejections from 4 idle connections closed", 10*time.Second, func() bool {
		ejects = srv.Snapshot()[0].ServerEjects
		return ejects == 2
	})
	for i, c := range clients {
		if got := c.do(t, "GET", key); got != "$other" {
			t.Errorf("client %d: GET %s after the server died: %s, want the other server's $other", i, key, got)
		}
	}
	found := false
	for _, s := range srv.Snapshot()[0].Servers {
		if s.Addr == dying.ln.Addr().String() {
			found = true
			if s.ServerEOF != 4 || !s.Ejected {
				t.Errorf("dead server: server_eof %d, ejected %v; want 4, true", s.ServerEOF, s.Ejected)
			}
		}
	}
	if !found {
		t.Errorf("no server %s in the stats", dying.ln.Addr())
	}
}
