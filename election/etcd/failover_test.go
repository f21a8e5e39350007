package etcd_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/election/etcd"
	"github.com/podblocks/podblocks/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// failoverCandidate is one Elector with its own client, stoppable abruptly.
type failoverCandidate struct {
	id     string
	cli    *clientv3.Client
	e      *election.Elector
	cancel context.CancelFunc
	done   chan struct{}
}

type termStart struct {
	id string
	at time.Time
}

func startFailoverCandidate(t *testing.T, endpoint, id string, starts chan<- termStart) *failoverCandidate {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := etcd.New(cli, "failover", etcd.WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	e, err := election.New(b, id, func(ctx context.Context, tm election.Term) error {
		select {
		case starts <- termStart{id: id, at: time.Now()}:
		case <-ctx.Done(): // nobody reads any more: the test is over
			return nil
		}
		<-ctx.Done()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &failoverCandidate{id: id, cli: cli, e: e, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run %s: %v", id, err)
		}
	}()
	return c
}

// crash closes the client first (so no revoke reaches etcd), then stops the Elector.
func (c *failoverCandidate) crash() {
	c.cli.Close()
	c.cancel()
	<-c.done
}

func (c *failoverCandidate) stop() {
	c.cancel()
	<-c.done
	c.cli.Close()
}

// waitCandidates waits until n candidate keys exist under the election's prefix (everyone is
// campaigning, so a failover has a successor waiting).
func waitCandidates(t *testing.T, cli *clientv3.Client, prefix string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == int64(n) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
	var keys []string
	if err == nil {
		for _, kv := range resp.Kvs {
			keys = append(keys, fmt.Sprintf("%s=%s@%d", kv.Key, kv.Value, kv.CreateRevision))
		}
	}
	t.Fatalf("never saw %d candidate keys under %s: %v (err %v)", n, prefix, keys, err)
}

// latestLeader drains term starts that are already queued (a leader that lost its term under load and
// won it again) and returns the newest leader, or current when none are queued.
func latestLeader(starts <-chan termStart, current string) string {
	for {
		select {
		case s := <-starts:
			current = s.id
		default:
			return current
		}
	}
}

func nextStart(t *testing.T, starts <-chan termStart) termStart {
	t.Helper()
	select {
	case s := <-starts:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("no new term within 30s")
		return termStart{}
	}
}

func rounded(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	slices.Sort(out)
	return out
}

// percentile returns the nearest-rank p-th percentile of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func trials(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// writeFailoverCSV writes every sample as a "series,milliseconds" row, for bench/plot's cdf chart,
// crash failovers to dir/election-crash.cdf.csv and resign hand-overs to dir/election-resign.cdf.csv,
// each under a first line "# title | x label | y label" that bench/plots.sh reads.
func writeFailoverCSV(dir string, samples map[string][]time.Duration) error {
	stamp := time.Now().UTC().Format("2006-01-02 15:04 UTC")
	for _, f := range []struct{ file, what string }{{"election-crash.cdf.csv", "crash"}, {"election-resign.cdf.csv", "resign"}} {
		var b strings.Builder
		title := "crash failover (leader's client closed, lease TTL 1s)"
		if f.what == "resign" {
			title = "graceful hand-over (Resign)"
		}
		fmt.Fprintf(&b, "# election %s, %d trials (%s) | time to the new leader's term (ms) | fraction of trials\n",
			title, len(samples["podblocks "+f.what]), stamp)
		b.WriteString("series,ms\n")
		for _, name := range []string{"podblocks " + f.what, "etcd concurrency " + f.what} {
			for _, d := range samples[name] {
				fmt.Fprintf(&b, "%s,%.3f\n", name, float64(d)/float64(time.Millisecond))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f.file), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// TestFailover measures, with TTL 1s on an embedded etcd, how long a waiting candidate takes to
// lead after the leader crashes (client closed, no revoke: the lease must expire) and after the
// leader resigns. By default it runs a few trials and checks generous bounds; for the figures in
// BENCHMARKS.md run it with PODBLOCKS_FAILOVER_TRIALS=30 and -v; with PODBLOCKS_FAILOVER_CSV=DIR it
// also writes every sample to DIR/election-{crash,resign}.cdf.csv (bench/results is plotted).
func TestFailover(t *testing.T) {
	n := trials("PODBLOCKS_FAILOVER_TRIALS", 2)
	c := etcdtest.NewServer(t)
	ep := c.Endpoint(0)
	admin := c.Client(t)
	prefix := etcd.DefaultPrefix + "failover/"
	starts := make(chan termStart, 4)

	cands := map[string]*failoverCandidate{}
	var mu sync.Mutex
	for _, id := range []string{"a", "b"} {
		cands[id] = startFailoverCandidate(t, ep, id, starts)
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range cands {
			c.stop()
		}
	}()
	leader := nextStart(t, starts).id

	var crash, resign []time.Duration
	for i := range n {
		waitCandidates(t, admin, prefix, 2)
		leader = latestLeader(starts, leader)
		old := cands[leader]
		t0 := time.Now()
		old.crash()
		s := nextStart(t, starts)
		if s.id == leader {
			t.Fatalf("trial %d: crashed candidate %s led again", i, leader)
		}
		crash = append(crash, s.at.Sub(t0))
		mu.Lock()
		cands[leader] = startFailoverCandidate(t, ep, leader, starts)
		mu.Unlock()
		leader = s.id
	}
	for i := range n {
		waitCandidates(t, admin, prefix, 2)
		leader = latestLeader(starts, leader)
		t0 := time.Now()
		if err := cands[leader].e.Resign(context.Background()); err != nil {
			t.Fatalf("resign %d: %v", i, err)
		}
		s := nextStart(t, starts)
		if s.id == leader {
			t.Fatalf("resign trial %d: %s led again although another candidate waited", i, leader)
		}
		resign = append(resign, s.at.Sub(t0))
		leader = s.id
	}
	csvPath := os.Getenv("PODBLOCKS_FAILOVER_CSV")
	if csvPath != "" {
		// Written now too, so the podblocks samples survive a baseline that fails; rewritten with the
		// baseline's below.
		if err := writeFailoverCSV(csvPath, map[string][]time.Duration{"podblocks crash": crash, "podblocks resign": resign}); err != nil {
			t.Errorf("PODBLOCKS_FAILOVER_CSV: %v", err)
		}
	}
	// Baseline in the same run: etcd's concurrency package, same server, same TTL.
	bcrash, bresign := baselineFailover(t, ep, admin, n)
	report := func(what string, ds []time.Duration, goal time.Duration) string {
		p99 := percentile(ds, 99)
		verdict := ""
		if goal > 0 {
			verdict = fmt.Sprintf(" (goal p99 <= %v: met)", goal)
			if p99 > goal {
				verdict = fmt.Sprintf(" (goal p99 <= %v: NOT MET)", goal)
			}
		}
		return fmt.Sprintf("%s: n=%d p50=%v p90=%v p99=%v max=%v%s", what, len(ds),
			percentile(ds, 50).Round(time.Millisecond), percentile(ds, 90).Round(time.Millisecond),
			p99.Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond), verdict)
	}
	t.Log(report("podblocks crash failover (TTL 1s)", crash, 1500*time.Millisecond))
	t.Log(report("etcd concurrency crash failover (TTL 1s)", bcrash, 0))
	t.Log(report("podblocks resign hand-over", resign, 50*time.Millisecond))
	t.Log(report("etcd concurrency resign hand-over", bresign, 0))
	if testing.Verbose() {
		t.Logf("podblocks crash samples: %v", rounded(crash))
		t.Logf("podblocks resign samples: %v", rounded(resign))
	}
	if csvPath != "" {
		if err := writeFailoverCSV(csvPath, map[string][]time.Duration{
			"podblocks crash": crash, "etcd concurrency crash": bcrash,
			"podblocks resign": resign, "etcd concurrency resign": bresign,
		}); err != nil {
			t.Errorf("PODBLOCKS_FAILOVER_CSV: %v", err)
		} else {
			t.Logf("wrote the samples to %s", csvPath)
		}
	}
	// Bounds that hold on a loaded CI machine; the goals are reported above.
	if m := slices.Max(crash); m > 5*time.Second {
		t.Errorf("crash failover took %v, want well under 5s with TTL 1s", m)
	}
	if m := slices.Max(resign); m > time.Second {
		t.Errorf("resign hand-over took %v, want well under 1s", m)
	}
}
