package twemproxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/freeport"
)

// A server that refuses connections is ejected once (server_failure_limit 1), not once more for a
// request placed on it just before its ejection (a client that raced with it) whose dial then
// fails too: nutcracker, whose one event loop fails such requests with the connection that ejected
// the server, makes no connection to an ejected server, and counts one ejection. The old code
// counted the second dial's failure as another ejection (the tour's sharding act printed
// server_ejects=2 for one shard killed). Both requests count in the server's requests, as
// nutcracker counts a request it forwards whether or not the connect succeeds; the old code
// counted neither.
func TestRefusedServerEjectedOnce(t *testing.T) {
	cfg, err := Parse(fmt.Appendf(nil, "a:\n  listen: 127.0.0.1:22121\n  auto_eject_hosts: true\n  server_failure_limit: 1\n"+
		"  server_retry_timeout: 600000\n  timeout: 1000\n  servers:\n   - %s:1 dead\n   - %s:1 other\n",
		freeport.TCP(t), freeport.TCP(t)))
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(cfg.Pools[0], nil, defaultOptions(), &connCounts{}) // never listens; the dial fails before a handshake
	st := p.st
	st.start(context.Background())
	defer func() {
		st.cancel()
		st.wg.Wait()
	}()
	dead := st.servers[0]
	sc := dead.conns[0]
	c := &client{}
	// Fragments of a request that never completes: failing them writes no reply.
	parent := &Request{c: c, left: 10}
	send := func() *Request {
		r := &Request{c: c, parent: parent, Buf: []byte("get k\r\n")}
		var ds dirtySet
		sc.enqueue([]*Request{r}, time.Now(), &ds)
		deadline := time.Now().Add(10 * time.Second)
		for {
			c.mu.Lock()
			done := r.done
			c.mu.Unlock()
			if done {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatal("the request to the refusing server did not fail")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if r := send(); r.Err() == nil {
		t.Fatal("the first request succeeded")
	}
	if n := p.serverEjects.Load(); n != 1 || dead.nextRetry.Load() == 0 {
		t.Fatalf("after the first refused dial: server_ejects %d, ejected %v; want 1, true", n, dead.nextRetry.Load() != 0)
	}
	if r := send(); r.Err() == nil { // placed before the ejection, sent after it
		t.Fatal("the second request succeeded")
	}
	if n := p.serverEjects.Load(); n != 1 {
		t.Errorf("after the second refused dial, made while the server was ejected: server_ejects %d, want 1", n)
	}
	if req, _, _, _, _ := sc.queues(); req != 2 {
		t.Errorf("the refusing server's requests = %d, want 2", req)
	}
}
