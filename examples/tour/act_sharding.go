package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// shardingAct runs the twemproxy-compatible sharding ambassador in front of three memcached shards
// (real memcached when installed, else a small in-process stand-in, and it says so), stores keys
// through it, shows they land where nutcracker would put them, splits a multi-get across the
// shards, then kills a shard: its keys move, the others never fail.
func shardingAct() act {
	return act{
		pattern: "ambassador (sharding)",
		pkg:     "ambassador/twemproxy",
		run: func(ctx context.Context, s *stage) (string, error) {
			var shards []string
			var stops []func()
			defer func() {
				for _, stop := range stops {
					stop()
				}
			}()
			real := shardproc.Have(shardproc.MemcachedPath)
			if real {
				s.say("starting 3 memcached shards (%s)", shardproc.MemcachedPath)
			} else {
				s.say("memcached is not installed: using 3 in-process stand-ins (FakeMemcached: get/set/delete only)")
			}
			for range 3 {
				if err := ctx.Err(); err != nil {
					return "", err
				}
				if real {
					p, err := shardproc.StartMemcached()
					if err != nil {
						return "", err
					}
					stops = append(stops, p.Stop)
					shards = append(shards, p.Addr)
					continue
				}
				f, err := startFakeMemcached()
				if err != nil {
					return "", err
				}
				stops = append(stops, f.stop)
				shards = append(shards, f.addr)
			}
			port, err := shardproc.FreePort()
			if err != nil {
				return "", err
			}
			listen := fmt.Sprintf("127.0.0.1:%d", port)
			yml := fmt.Sprintf("cache:\n  listen: %s\n  hash: md5\n  distribution: ketama\n  auto_eject_hosts: true\n"+
				"  server_failure_limit: 1\n  server_retry_timeout: 60000\n  timeout: 1000\n  servers:\n", listen)
			for i, a := range shards {
				yml += fmt.Sprintf("   - %s:1 shard%d\n", a, i)
			}
			cfg, err := twemproxy.Parse([]byte(yml))
			if err != nil {
				return "", err
			}
			srv, err := twemproxy.NewServer(cfg, twemproxy.Protocols{Memcache: &memcache.Protocol{}, Redis: &redis.Protocol{}})
			if err != nil {
				return "", err
			}
			s.keep(nil, srv) // its final state stays on /statusz under -serve
			pctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- srv.Run(pctx) }()
			defer func() { cancel(); <-done }()
			if err := awaitReady(ctx, "the sharding ambassador", srv.Ready(), done); err != nil {
				return "", err
			}
			s.say("the ambassador reads nutcracker.yml as-is and listens on %s", listen)

			dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := new(net.Dialer).DialContext(dctx, "tcp", listen)
			dcancel()
			if err != nil {
				return "", err
			}
			defer c.Close()
			defer context.AfterFunc(ctx, func() { c.Close() })() // the end of ctx ends any read or write
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			const nkeys = 300
			var b strings.Builder
			for i := range nkeys {
				fmt.Fprintf(&b, "set user:%d 0 0 %d\r\n%d\r\n", i, len(strconv.Itoa(i)), i)
			}
			if _, err := c.Write([]byte(b.String())); err != nil {
				return "", err
			}
			for range nkeys {
				if l, err := br.ReadString('\n'); err != nil || l != "STORED\r\n" {
					return "", fmt.Errorf("set through the ambassador: %q %v", l, err)
				}
			}
			pool := cfg.Pools[0]
			pl := twemproxy.NewPlacer(pool, nil)
			perShard := map[string]int{}
			for i := range nkeys {
				perShard[pool.Servers[pl.Place(fmt.Appendf(nil, "user:%d", i))].Name]++
			}
			s.say("%d keys pipelined on one connection; nutcracker's ketama puts %d/%d/%d on shard0/1/2",
				nkeys, perShard["shard0"], perShard["shard1"], perShard["shard2"])
			keys := make([]string, 40)
			for i := range keys {
				keys[i] = fmt.Sprintf("user:%d", i)
			}
			hits, err := multiGet(c, br, keys)
			if err != nil {
				return "", err
			}
			s.say("one multi-get of %d keys: split into %d fragments, merged back: %d hits", len(keys), srv.Snapshot()[0].Fragments, hits)

			victim := pool.Servers[1]
			for i, a := range shards {
				if a == victim.Addr {
					stops[i]()
				}
			}
			s.say("killing %s (%s) under load…", victim.Name, victim.Addr)
			otherFails, moved := 0, 0
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && moved == 0 && ctx.Err() == nil {
				for i := range 60 {
					k := fmt.Sprintf("user:%d", i)
					owner := pool.Servers[pl.Place([]byte(k))]
					fmt.Fprintf(c, "get %s\r\n", k)
					l, err := br.ReadString('\n')
					if err != nil {
						return "", err
					}
					switch {
					case strings.HasPrefix(l, "VALUE "):
						br.ReadString('\n')
						br.ReadString('\n')
					case l == "END\r\n" && owner.Name == victim.Name:
						moved++
					case owner.Name != victim.Name:
						otherFails++
					}
				}
			}
			s.say("%s ejected after server_failure_limit=1 (server_ejects=%d); its keys moved to the survivors; other shards' keys failed %d times",
				victim.Name, srv.Snapshot()[0].ServerEjects, otherFails)
			if moved == 0 {
				if err := ctx.Err(); err != nil {
					return "", fmt.Errorf("the dead shard's keys never moved: %w", err)
				}
				return "", fmt.Errorf("the dead shard's keys never moved")
			}
			return fmt.Sprintf("%d keys on 3 shards as nutcracker places them; 1 shard killed, %d errors on the others", nkeys, otherFails), nil
		},
	}
}

func multiGet(c net.Conn, br *bufio.Reader, keys []string) (int, error) {
	if _, err := fmt.Fprintf(c, "get %s\r\n", strings.Join(keys, " ")); err != nil {
		return 0, err
	}
	hits := 0
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return hits, err
		}
		if l == "END\r\n" {
			return hits, nil
		}
		if !strings.HasPrefix(l, "VALUE ") {
			return hits, fmt.Errorf("multi-get: %q", l)
		}
		hits++
		if _, err := br.ReadString('\n'); err != nil {
			return hits, err
		}
	}
}

// fakeMemcached is the act's stand-in when memcached is not installed: get (one key), set and
// delete of the memcache ASCII protocol, on loopback.
type fakeMemcached struct {
	addr string
	ln   net.Listener
	mu   sync.Mutex
	data map[string]string
	wg   sync.WaitGroup
}

func startFakeMemcached() (*fakeMemcached, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fakeMemcached{addr: ln.Addr().String(), ln: ln, data: map[string]string{}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.serve(c) }()
		}
	}()
	return f, nil
}

func (f *fakeMemcached) stop() {
	f.ln.Close()
	f.wg.Wait()
}

func (f *fakeMemcached) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var reply strings.Builder
		switch fields[0] {
		case "get":
			f.mu.Lock()
			for _, k := range fields[1:] {
				if v, ok := f.data[k]; ok {
					fmt.Fprintf(&reply, "VALUE %s 0 %d\r\n%s\r\n", k, len(v), v)
				}
			}
			f.mu.Unlock()
			reply.WriteString("END\r\n")
		case "set":
			n := 0
			if len(fields) >= 5 {
				n, _ = strconv.Atoi(fields[4])
			}
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(br, buf); err != nil {
				return
			}
			f.mu.Lock()
			f.data[fields[1]] = string(buf[:n])
			f.mu.Unlock()
			reply.WriteString("STORED\r\n")
		case "delete":
			f.mu.Lock()
			delete(f.data, fields[1])
			f.mu.Unlock()
			reply.WriteString("DELETED\r\n")
		case "version":
			reply.WriteString("VERSION fake\r\n")
		default:
			reply.WriteString("ERROR\r\n")
		}
		if _, err := c.Write([]byte(reply.String())); err != nil {
			return
		}
	}
}
