package etcd_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
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

// fencedLog is the protected resource of the safety harness: a log that accepts a write only if
// its token passes the Fence, at the start (Begin) and at the end (End) of the write. It also keeps
// its own record of every attempt to check the Fence's decisions independently.
type fencedLog struct {
	mu          sync.Mutex
	fence       election.Fence
	maxAccepted uint64 // the harness's own view of the highest accepted token
	attempts    int
	wrongs      []string // fence decisions that contradict the harness's view
	rejected    int      // stale attempts the fence rejected
	entries     []entry  // writes accepted at both Begin and End
}

type entry struct {
	token      uint64
	holder     string
	start, end time.Time
}

// check runs one fenced step and returns whether it was accepted.
func (r *fencedLog) check(token uint64) bool {
	r.attempts++
	stale := token < r.maxAccepted
	err := r.fence.Check(token)
	accepted := err == nil
	if accepted == stale {
		r.wrongs = append(r.wrongs, fmt.Sprintf("token %d with highest %d: fence err %v", token, r.maxAccepted, err))
	}
	if accepted {
		r.maxAccepted = max(r.maxAccepted, token)
	} else {
		r.rejected++
	}
	return accepted
}

// write is one two-step write by holder with token; it reports whether it was accepted.
func (r *fencedLog) write(token uint64, holder string, hold time.Duration) bool {
	r.mu.Lock()
	ok := r.check(token)
	start := time.Now()
	r.mu.Unlock()
	if !ok {
		return false
	}
	time.Sleep(hold)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.check(token) {
		return false
	}
	r.entries = append(r.entries, entry{token: token, holder: holder, start: start, end: time.Now()})
	return true
}

// candidate is one elector process of the harness, with its own proxies to every member.
type candidate struct {
	id      string
	proxies []*etcdtest.Proxy

	mu     sync.Mutex
	cli    *clientv3.Client
	cancel context.CancelFunc
	done   chan struct{}
}

type harness struct {
	t       *testing.T
	cluster *etcdtest.Cluster
	res     fencedLog
	bg      sync.WaitGroup // zombie writes and fault recoveries

	mu        sync.Mutex
	maxStart  uint64 // highest token whose leader func started
	termOrder []string
	terms     map[uint64]*termSpan
}

type termSpan struct {
	id         string
	start, end time.Time
}

func (h *harness) leaderFunc(id string) election.LeaderFunc {
	return func(ctx context.Context, tm election.Term) error {
		h.mu.Lock()
		if tm.Token <= h.maxStart {
			h.termOrder = append(h.termOrder, fmt.Sprintf("VIOLATION: term %d of %s started after term %d", tm.Token, id, h.maxStart))
		}
		h.maxStart = max(h.maxStart, tm.Token)
		span := &termSpan{id: id, start: time.Now()}
		h.terms[tm.Token] = span
		h.mu.Unlock()
		context.AfterFunc(ctx, func() {
			h.mu.Lock()
			span.end = time.Now()
			h.mu.Unlock()
		})
		for ctx.Err() == nil {
			h.res.write(tm.Token, id, 2*time.Millisecond)
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
		// A write from this term still in flight, delivered late (a paused process, a slow
		// network): the fence must reject it if a newer term has written meanwhile.
		delay := 500*time.Millisecond + rand.N(2*time.Second)
		h.bg.Go(func() {
			time.Sleep(delay)
			h.res.write(tm.Token, id+"(late)", 0)
		})
		return nil
	}
}

func (h *harness) start(c *candidate) {
	var eps []string
	for _, p := range c.proxies {
		eps = append(eps, p.URL())
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		h.t.Errorf("client for %s: %v", c.id, err)
		return
	}
	b, err := etcd.New(cli, "safety", etcd.WithTTL(time.Second))
	if err != nil {
		h.t.Errorf("backend: %v", err)
		cli.Close()
		return
	}
	e, err := election.New(b, c.id, h.leaderFunc(c.id), election.WithReleaseTimeout(500*time.Millisecond))
	if err != nil {
		h.t.Errorf("elector: %v", err)
		cli.Close()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			h.t.Errorf("Run %s: %v", c.id, err)
		}
	}()
	c.mu.Lock()
	c.cli, c.cancel, c.done = cli, cancel, done
	c.mu.Unlock()
}

// crash closes the candidate's client abruptly (no revoke reaches etcd), then stops its Elector.
func (h *harness) crash(c *candidate) {
	c.mu.Lock()
	cli, cancel, done := c.cli, c.cancel, c.done
	c.cli = nil
	c.mu.Unlock()
	if cli == nil {
		return
	}
	for _, p := range c.proxies {
		p.CloseConns()
	}
	cli.Close()
	cancel()
	<-done
}

// TestSafetyUnderFaults is the safety harness: 5 candidates on a 3-member cluster, TTL 1s, and at
// least 100 faults (client crashes, paused candidates, stopped members, stopped raft leaders).
// Every leader writes to a fenced log; no two accepted writes of different terms may overlap, terms
// must start in strictly increasing token order, and the fence must reject every stale write.
func TestSafetyUnderFaults(t *testing.T) {
	const (
		nCandidates = 5
		minFaults   = 100
		faultEvery  = 150 * time.Millisecond
	)
	h := &harness{t: t, cluster: etcdtest.NewCluster(t, 3), terms: map[uint64]*termSpan{}}
	cands := make([]*candidate, nCandidates)
	for i := range cands {
		c := &candidate{id: fmt.Sprintf("c%d", i)}
		for m := range h.cluster.Size() {
			c.proxies = append(c.proxies, etcdtest.NewProxy(t, strings.TrimPrefix(h.cluster.Endpoint(m), "http://")))
		}
		cands[i] = c
		h.start(c)
	}

	type kind int
	const (
		crashClient kind = iota
		pauseCandidate
		stopMember
		stopLeaderMember
	)
	names := []string{"crash client", "pause candidate", "stop member", "stop raft leader"}
	counts := make([]int, 4)
	var fmu sync.Mutex
	busyCand := map[int]bool{}
	memberDown := false

	began := time.Now()
	for faults := 0; faults < minFaults; {
		time.Sleep(faultEvery)
		fmu.Lock()
		var free []int
		for i := range nCandidates {
			if !busyCand[i] {
				free = append(free, i)
			}
		}
		var options []kind
		if len(free) > 1 { // keep at least one candidate healthy
			// Half the time, aim at the leader, so that many faults force a failover (aiming at it
			// always would leave the election leaderless most of the time: no writes to check).
			if l := h.leaderID(); l >= 0 && !busyCand[l] && rand.N(2) == 0 {
				free = []int{l}
			}
			options = append(options, crashClient, pauseCandidate)
		}
		if !memberDown { // keep a quorum
			options = append(options, stopMember, stopLeaderMember)
		}
		if len(options) == 0 {
			fmu.Unlock()
			continue
		}
		k := options[rand.N(len(options))]
		switch k {
		case crashClient, pauseCandidate:
			i := free[rand.N(len(free))]
			busyCand[i] = true
			c := cands[i]
			hold := 100*time.Millisecond + rand.N(500*time.Millisecond) // down time after a crash
			if k == pauseCandidate {
				hold = 200*time.Millisecond + rand.N(2*time.Second) // around the TTL, often beyond
			}
			h.bg.Go(func() {
				if k == crashClient {
					h.crash(c)
					time.Sleep(hold)
					h.start(c)
				} else {
					for _, p := range c.proxies {
						p.Pause()
					}
					time.Sleep(hold)
					for _, p := range c.proxies {
						p.Resume()
					}
				}
				fmu.Lock()
				delete(busyCand, i)
				fmu.Unlock()
			})
		case stopMember, stopLeaderMember:
			m := rand.N(h.cluster.Size())
			if k == stopLeaderMember {
				if m = h.cluster.Leader(); m < 0 {
					fmu.Unlock()
					continue
				}
			}
			memberDown = true
			hold := 100*time.Millisecond + rand.N(400*time.Millisecond)
			h.bg.Go(func() {
				h.cluster.Stop(m)
				time.Sleep(hold)
				if err := h.cluster.Start(m); err != nil {
					t.Errorf("restart member %d: %v", m, err)
				}
				fmu.Lock()
				memberDown = false
				fmu.Unlock()
			})
		}
		fmu.Unlock()
		counts[k]++
		faults++
	}
	faultTime := time.Since(began)
	t.Logf("%v: faults done", time.Since(began).Round(time.Millisecond))
	// Let every recovery finish; the healed system must elect a leader again.
	h.bg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for !h.leading() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !h.leading() {
		t.Error("no leader 30s after the last fault healed")
	}
	t.Logf("%v: healed, leader elected", time.Since(began).Round(time.Millisecond))
	for _, c := range cands {
		c.mu.Lock()
		cancel, done := c.cancel, c.done
		c.mu.Unlock()
		if cancel != nil {
			cancel()
			<-done
		}
		c.mu.Lock()
		if c.cli != nil {
			c.cli.Close()
		}
		c.mu.Unlock()
	}
	h.bg.Wait()
	t.Logf("%v: candidates stopped", time.Since(began).Round(time.Millisecond))

	// Invariants.
	h.mu.Lock()
	defer h.mu.Unlock()
	h.res.mu.Lock()
	defer h.res.mu.Unlock()
	for _, v := range h.termOrder {
		t.Error(v)
	}
	type hull struct {
		token      uint64
		start, end time.Time
		n          int
	}
	hulls := map[uint64]*hull{}
	for _, e := range h.res.entries {
		hl := hulls[e.token]
		if hl == nil {
			hl = &hull{token: e.token, start: e.start, end: e.end}
			hulls[e.token] = hl
		}
		if e.start.Before(hl.start) {
			hl.start = e.start
		}
		if e.end.After(hl.end) {
			hl.end = e.end
		}
		hl.n++
	}
	var hs []*hull
	for _, hl := range hulls {
		hs = append(hs, hl)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].start.Before(hs[j].start) })
	for i := 1; i < len(hs); i++ {
		a, b := hs[i-1], hs[i]
		if !a.end.Before(b.start) {
			t.Errorf("accepted writes of terms %d and %d overlap: [%v, %v] and [%v, %v]", a.token, b.token,
				a.start.Sub(began), a.end.Sub(began), b.start.Sub(began), b.end.Sub(began))
		}
		if b.token <= a.token {
			t.Errorf("term %d wrote after term %d: tokens must strictly increase", b.token, a.token)
		}
	}
	// Overlap of leadership as the Electors saw it (leader func start to step-down). Not asserted:
	// it depends on scheduling on a loaded machine, and the fence is what guarantees safety.
	var spans []*termSpan
	for _, s := range h.terms {
		spans = append(spans, s)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].start.Before(spans[j].start) })
	overlaps := 0
	for i := 1; i < len(spans); i++ {
		if a, b := spans[i-1], spans[i]; a.end.After(b.start) {
			overlaps++
			t.Logf("elector-side overlap: %s until %v, %s from %v (%v)", a.id, a.end.Sub(began), b.id, b.start.Sub(began), a.end.Sub(b.start))
		}
	}
	t.Logf("faults: %d in %v (%s %d, %s %d, %s %d, %s %d)", minFaults, faultTime.Round(time.Millisecond),
		names[0], counts[0], names[1], counts[1], names[2], counts[2], names[3], counts[3])
	t.Logf("terms: %d; accepted writes: %d in %d terms; fence attempts %d, rejected stale %d; elector-side overlaps %d",
		len(h.terms), len(h.res.entries), len(hs), h.res.attempts, h.res.rejected, overlaps)
	if len(h.terms) < 3 {
		t.Errorf("only %d terms over %d faults: the harness did not exercise failover", len(h.terms), minFaults)
	}
	// Every term but the last is stale now: one more late write from each must be rejected.
	lateRejected := 0
	for tok, span := range h.terms {
		if tok == h.maxStart {
			continue
		}
		h.res.mu.Unlock()
		if h.res.write(tok, span.id+"(final)", 0) {
			t.Errorf("a final late write of term %d (highest %d) was accepted", tok, h.maxStart)
		} else {
			lateRejected++
		}
		h.res.mu.Lock()
	}
	for _, w := range h.res.wrongs {
		t.Errorf("fence decision wrong: %s", w)
	}
	t.Logf("final late writes of %d old terms: %d rejected", len(h.terms)-1, lateRejected)
}

// leaderID returns the index of the candidate whose leader func runs, or -1.
func (h *harness) leaderID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.terms {
		if s.end.IsZero() {
			var i int
			fmt.Sscanf(s.id, "c%d", &i)
			return i
		}
	}
	return -1
}

// leading reports whether some candidate's leader func is running.
func (h *harness) leading() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.terms {
		if s.end.IsZero() {
			return true
		}
	}
	return false
}
