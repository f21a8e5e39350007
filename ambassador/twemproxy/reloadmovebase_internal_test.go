package twemproxy

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/podblocks/podblocks/internal/freeport"
)

// movedCounters returns the counters of server a of p, as the stats and the Prometheus histogram
// read them.
func movedCounters(t *testing.T, p *pool) (ServerStats, uint64) {
	t.Helper()
	ps := p.snapshot()
	hs := p.histograms(prometheus.NewDesc("h", "h", []string{"pool", "server"}, nil))
	if len(ps.Servers) != 1 || len(hs) != 1 {
		t.Fatalf("%d servers, %d histograms; want 1", len(ps.Servers), len(hs))
	}
	var m dto.Metric
	if err := hs[0].Write(&m); err != nil {
		t.Fatal(err)
	}
	return ps.Servers[0], m.GetHistogram().GetSampleCount()
}

// A server that a reload moves to another address goes on from the counters the old one has when
// the new state is published, not when carry looked at them: what the old one counts between the
// two (its connections serve on until the new state is published) was read by a scrape then, and
// the next scrape, of the new server, must not read less. The old code took the base in carry:
// the requests, failures and response times counted between carry and publish were read, then
// lost.
func TestMovedServerBaseAtPublish(t *testing.T) {
	yml := func(addr string) *PoolConfig {
		c, err := Parse(fmt.Appendf(nil, "a:\n  listen: 127.0.0.1:22121\n  redis: true\n  servers:\n   - %s:1 a\n", addr))
		if err != nil {
			t.Fatal(err)
		}
		return c.Pools[0]
	}
	p := newPool(yml(freeport.TCP(t)), nil, defaultOptions(), &connCounts{}) // never listens
	ctx, cancel := context.WithCancel(context.Background())
	old := p.st
	old.start(ctx)
	t.Cleanup(func() {
		cancel()
		p.retiring.Wait()
		p.state().wg.Wait()
	})
	cfg := yml(freeport.TCP(t)) // a at another address
	st := p.successor(old, cfg)

	// The old server counts on after carry, before publish: a request sent and answered, a failure
	// and a response time.
	o := old.servers[0]
	sc := o.conns[0]
	sc.mu.Lock()
	sc.requests, sc.requestBytes = sc.requests+1, sc.requestBytes+20
	sc.mu.Unlock()
	sc.responses.Add(1)
	sc.responseBytes.Add(7)
	o.eof.Add(1)
	o.errs.Add(1)
	o.timedout.Add(1)
	o.resp.n[0].Add(1)
	seen, seenH := movedCounters(t, p) // a scrape before publish reads the old server

	p.publish(ctx, st, old, cfg)
	got, gotH := movedCounters(t, p)
	if got.Addr == seen.Addr {
		t.Fatalf("server a still at %s after the reload", got.Addr)
	}
	for _, c := range []struct {
		name      string
		got, seen int64
	}{
		{"requests", got.Requests, seen.Requests}, {"request_bytes", got.RequestBytes, seen.RequestBytes},
		{"responses", got.Responses, seen.Responses}, {"response_bytes", got.ResponseBytes, seen.ResponseBytes},
		{"server_eof", got.ServerEOF, seen.ServerEOF}, {"server_err", got.ServerErr, seen.ServerErr},
		{"server_timedout", got.ServerTimedout, seen.ServerTimedout},
		{"response times", int64(gotH), int64(seenH)},
	} {
		if c.seen == 0 {
			t.Errorf("%s: the scrape before publish read 0, want the old server's count", c.name)
		}
		if c.got < c.seen {
			t.Errorf("%s of server a: %d after the reload, %d read before it", c.name, c.got, c.seen)
		}
	}
}
