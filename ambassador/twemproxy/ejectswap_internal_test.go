package twemproxy

import (
	"context"
	"fmt"
	"testing"

	"github.com/podblocks/podblocks/internal/freeport"
)

// swapRace returns a pool of two refusing servers, dead and other, that never ejects a server back
// (server_retry_timeout 600 s), the context it runs under, its started state, the configuration a reload swaps in, and a key
// that configuration places on dead. The caller runs swap's steps (successor, publish) itself, so
// it can put a failure between them.
func swapRace(t *testing.T) (ctx context.Context, p *pool, old *poolState, cfg *PoolConfig, key string) {
	t.Helper()
	dead, other := freeport.TCP(t), freeport.TCP(t)
	yml := func(timeout int) *PoolConfig {
		c, err := Parse(fmt.Appendf(nil, "a:\n  listen: 127.0.0.1:22121\n  auto_eject_hosts: true\n  server_failure_limit: 1\n"+
			"  server_retry_timeout: 600000\n  timeout: %d\n  servers:\n   - %s:1 dead\n   - %s:1 other\n",
			timeout, dead, other))
		if err != nil {
			t.Fatal(err)
		}
		return c.Pools[0]
	}
	p = newPool(yml(1000), nil, defaultOptions(), &connCounts{}) // never listens: no request reaches it
	ctx, cancel := context.WithCancel(context.Background())
	old = p.st
	old.start(ctx)
	t.Cleanup(func() {
		cancel()
		p.retiring.Wait()
		p.state().wg.Wait()
	})
	cfg = yml(1100) // serves differently: a new state
	for i := 0; key == ""; i++ {
		if k := fmt.Sprintf("k%d", i); NewPlacer(cfg, nil).Place([]byte(k)) == 0 {
			key = k
		}
	}
	return ctx, p, old, cfg, key
}

// placedOnDead fails t if the pool's current state places key on its first server, ejected.
func placedOnDead(t *testing.T, p *pool, key string) {
	t.Helper()
	st := p.state()
	if !st.servers[0].ejected() {
		t.Fatal("dead is not ejected")
	}
	if idx, err := st.place([]byte(key)); err != nil || idx == 0 {
		t.Errorf("the new state places dead's key on %d (%v): dead is ejected (server_ejects %d); every request for "+
			"it fails until server_retry_timeout, since a connection made while ejected ejects nothing more",
			idx, err, p.serverEjects.Load())
	}
}

// A failure that ejects a server after swap's carry looked at it, before the new state is
// published, rebuilds the old state's distribution, the one current then: publish rebuilds the
// new state's. The old code did not: the new state kept placing the ejected server's keys on it
// until server_retry_timeout.
func TestEjectBetweenCarryAndPublish(t *testing.T) {
	ctx, p, old, cfg, key := swapRace(t)
	st := p.successor(old, cfg)
	old.failure(old.servers[0]) // p.st is still old
	p.publish(ctx, st, old, cfg)
	placedOnDead(t, p, key)
}

// A failure that counted by the old state's configuration and records the ejection after the new
// state is published (and rebuilt) rebuilds the new state, current then, not the old one it
// looked at: the old code rebuilt the old one only.
func TestEjectAfterPublish(t *testing.T) {
	ctx, p, old, cfg, key := swapRace(t)
	ecfg := old.counts(old.servers[0])
	if ecfg == nil {
		t.Fatal("one failure does not eject (server_failure_limit 1)")
	}
	p.publish(ctx, p.successor(old, cfg), old, cfg)
	old.eject(old.servers[0], ecfg)
	placedOnDead(t, p, key)
}
