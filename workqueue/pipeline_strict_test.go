package workqueue_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/workqueue"
)

// strictIn is a strict model input: each item has its own lease length; any call that finds a lease
// past its deadline is a violation; an Ack is checked against ok (all adds made).
type strictIn struct {
	mu         sync.Mutex
	ready      []*strictItem
	leased     map[string]*strictItem
	acked      map[string]int
	violations []string
	ok         func(payload string) bool
	lost       map[string]bool // ids whose every Extend says lost (once)
	extends    int
	hangExt    map[int]bool // extend calls (1-based) that get no answer until their ctx ends
}

type strictItem struct {
	id       string
	payload  string
	lease    time.Duration
	deadline time.Time
	attempt  int
	token    string
}

func newStrictIn() *strictIn {
	return &strictIn{leased: map[string]*strictItem{}, acked: map[string]int{}, lost: map[string]bool{}}
}

func (q *strictIn) put(id, payload string, lease time.Duration) {
	q.mu.Lock()
	q.ready = append(q.ready, &strictItem{id: id, payload: payload, lease: lease})
	q.mu.Unlock()
}

func (q *strictIn) sweepLocked(now time.Time) {
	for tok, it := range q.leased {
		if now.After(it.deadline) {
			q.violations = append(q.violations, fmt.Sprintf("lease of %s (%v) ran out while held (found at sweep, %v late)", it.id, it.lease, now.Sub(it.deadline)))
			delete(q.leased, tok)
			q.ready = append(q.ready, it)
		}
	}
}

// Lease hands out the first ready item, as Memory does only while ctx has not ended.
func (q *strictIn) Lease(ctx context.Context) (*workqueue.Item, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q.mu.Lock()
		now := time.Now()
		q.sweepLocked(now)
		if len(q.ready) > 0 {
			it := q.ready[0]
			q.ready = q.ready[1:]
			it.attempt++
			it.token = fmt.Sprintf("%s.%d", it.id, it.attempt)
			it.deadline = now.Add(it.lease)
			q.leased[it.token] = it
			q.mu.Unlock()
			return &workqueue.Item{ID: it.id, Key: it.payload, Payload: []byte(it.payload), Attempt: it.attempt, Lease: it.token, Deadline: it.deadline}, nil
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (q *strictIn) take(op, token string) (*strictItem, error) {
	now := time.Now()
	it := q.leased[token]
	if it == nil {
		if op == "ack" {
			q.violations = append(q.violations, fmt.Sprintf("%s of %s: not leased", op, token))
		}
		return nil, workqueue.ErrLeaseLost
	}
	if now.After(it.deadline) {
		q.violations = append(q.violations, fmt.Sprintf("%s of %s (%v lease): lease ran out %v before", op, it.id, it.lease, now.Sub(it.deadline)))
		delete(q.leased, token)
		q.ready = append(q.ready, it)
		return nil, workqueue.ErrLeaseLost
	}
	return it, nil
}

func (q *strictIn) Extend(ctx context.Context, token string) (time.Time, error) {
	q.mu.Lock()
	q.extends++
	if q.hangExt[q.extends] {
		q.mu.Unlock()
		<-ctx.Done()
		return time.Time{}, ctx.Err()
	}
	defer q.mu.Unlock()
	it, err := q.take("extend", token)
	if err != nil {
		return time.Time{}, err
	}
	if q.lost[it.id] {
		delete(q.lost, it.id)
		delete(q.leased, token)
		q.ready = append(q.ready, it)
		return time.Time{}, workqueue.ErrLeaseLost
	}
	it.deadline = time.Now().Add(it.lease)
	return it.deadline, nil
}

func (q *strictIn) Ack(ctx context.Context, token string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	it, err := q.take("ack", token)
	if err != nil {
		return err
	}
	if q.ok != nil && !q.ok(it.payload) {
		q.violations = append(q.violations, "ack of "+it.id+" without all its adds")
	}
	q.acked[it.id]++
	delete(q.leased, token)
	return nil
}

func (q *strictIn) Release(ctx context.Context, token string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	it, err := q.take("release", token)
	if err != nil {
		return err
	}
	delete(q.leased, token)
	q.ready = append(q.ready, it)
	return nil
}

func (q *strictIn) Nack(ctx context.Context, token string, _ time.Duration) error {
	return q.Release(ctx, token)
}

func (q *strictIn) Bury(ctx context.Context, token, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.violations = append(q.violations, "bury "+token+": "+reason)
	delete(q.leased, token)
	return nil
}
func (q *strictIn) Add(context.Context, []byte, workqueue.AddOptions) (string, error) { panic("no") }
func (q *strictIn) Dead(context.Context, int) ([]workqueue.DeadItem, error)           { return nil, nil }
func (q *strictIn) Stats(context.Context) (workqueue.Stats, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return workqueue.Stats{Ready: int64(len(q.ready)), Leased: int64(len(q.leased))}, nil
}
func (q *strictIn) Close() error { return nil }

// strictOut answers each Add after lat(payload, call); made counts adds made.
type strictOut struct {
	mu    sync.Mutex
	made  map[string]int
	calls map[string]int
	lat   func(payload string, call int) time.Duration
}

func newStrictOut(lat func(string, int) time.Duration) *strictOut {
	return &strictOut{made: map[string]int{}, calls: map[string]int{}, lat: lat}
}

func (q *strictOut) Add(ctx context.Context, payload []byte, _ workqueue.AddOptions) (string, error) {
	p := string(payload)
	q.mu.Lock()
	q.calls[p]++
	n := q.calls[p]
	q.mu.Unlock()
	if d := q.lat(p, n); d > 0 {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(d):
		}
	}
	q.mu.Lock()
	q.made[p]++
	q.mu.Unlock()
	return p, nil
}
func (q *strictOut) has(p string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.made[p] > 0
}
func (q *strictOut) Lease(ctx context.Context) (*workqueue.Item, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (q *strictOut) Ack(context.Context, string) error                       { return nil }
func (q *strictOut) Nack(context.Context, string, time.Duration) error       { return nil }
func (q *strictOut) Extend(context.Context, string) (time.Time, error)       { return time.Time{}, nil }
func (q *strictOut) Bury(context.Context, string, string) error              { return nil }
func (q *strictOut) Dead(context.Context, int) ([]workqueue.DeadItem, error) { return nil, nil }
func (q *strictOut) Stats(context.Context) (workqueue.Stats, error)          { return workqueue.Stats{}, nil }
func (q *strictOut) Close() error                                            { return nil }

func (q *strictIn) report(t *testing.T, want []string) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, v := range q.violations {
		t.Error(v)
	}
	for _, id := range want {
		if q.acked[id] != 1 {
			t.Errorf("%s acked %d times", id, q.acked[id])
		}
	}
	if len(q.ready)+len(q.leased) != 0 {
		t.Errorf("left: %d ready, %d leased", len(q.ready), len(q.leased))
	}
}

// TestKeeperShortLeaseAfterLong: item A (30s lease) with quick adds, then B (300ms lease)
// whose add takes 2s: B's lease must be extended although the timer was armed for A's due (10s).
func TestKeeperShortLeaseAfterLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := newStrictIn()
		in.put("A", "a", 30*time.Second)
		in.put("B", "b", 300*time.Millisecond)
		in.put("C", "c", 30*time.Second)
		in.put("D", "d", 100*time.Millisecond)
		out := newStrictOut(func(p string, _ int) time.Duration {
			if p == "b" || p == "d" {
				return 2 * time.Second
			}
			return 0
		})
		in.ok = out.has
		c, err := workqueue.NewCopier(in, []workqueue.Queue{out}, workqueue.WithStageRetry(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err, _ := runFor(c, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		in.report(t, []string{"A", "B", "C", "D"})
	})
}

// TestKeeperRandomLeasesAndAdds: random lease lengths and add latencies, several stage kinds; no lease
// may run out while held, no ack without all adds, every item acked once.
func TestKeeperRandomLeasesAndAdds(t *testing.T) {
	leases := []time.Duration{60 * time.Millisecond, 300 * time.Millisecond, time.Second, 5 * time.Second, 30 * time.Second}
	kinds := []string{"copier2", "splitter3", "reduce3", "join"}
	for _, kind := range kinds {
		for seed := int64(1); seed <= 25; seed++ {
			t.Run(fmt.Sprintf("%s/%d", kind, seed), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					rng := rand.New(rand.NewSource(seed))
					var mu sync.Mutex
					lat := func(p string, call int) time.Duration {
						mu.Lock()
						defer mu.Unlock()
						switch rng.Intn(4) {
						case 0:
							return 0
						case 1:
							return time.Duration(rng.Intn(50)) * time.Millisecond
						case 2:
							return time.Duration(rng.Intn(700)) * time.Millisecond
						}
						return time.Duration(rng.Intn(3000)) * time.Millisecond
					}
					o1, o2 := newStrictOut(lat), newStrictOut(lat)
					ins := []*strictIn{newStrictIn()}
					if kind == "join" {
						ins = append(ins, newStrictIn())
					}
					var ids []string
					for i := range 60 {
						id := fmt.Sprintf("i%02d", i)
						ids = append(ids, id)
						for _, in := range ins {
							in.put(id, "p"+id, leases[rng.Intn(len(leases))])
						}
					}
					opts := []workqueue.StageOption{workqueue.WithStageRetry(20 * time.Millisecond), workqueue.WithFlushAfter(20 * time.Millisecond)}
					var st component
					var err error
					switch kind {
					case "copier2":
						ins[0].ok = func(p string) bool { return o1.has(p) && o2.has(p) }
						st, err = workqueue.NewCopier(ins[0], []workqueue.Queue{o1, o2}, opts...)
					case "splitter3":
						ins[0].ok = func(p string) bool { return o1.has(p+"/0") && o1.has(p+"/1") && o1.has(p+"/2") }
						st, err = workqueue.NewSplitter(ins[0], []workqueue.Queue{o1}, func(it *workqueue.Item) ([][]byte, error) {
							return [][]byte{[]byte(string(it.Payload) + "/0"), []byte(string(it.Payload) + "/1"), []byte(string(it.Payload) + "/2")}, nil
						}, func([]byte) int { return 0 }, opts...)
					case "reduce3":
						// every batch's result holds its payloads; an item is acked only once a result with it was made
						ins[0].ok = func(p string) bool {
							o1.mu.Lock()
							defer o1.mu.Unlock()
							for k, n := range o1.made {
								if n > 0 && strings.Contains(","+k+",", ","+p+",") {
									return true
								}
							}
							return false
						}
						st, err = workqueue.NewReduce(ins[0], o1, 3, func(ps [][]byte) ([]byte, error) { return bytes.Join(ps, []byte(",")), nil }, opts...)
					case "join":
						for _, in := range ins {
							in.ok = o1.has
						}
						qs := []workqueue.Queue{ins[0], ins[1]}
						st, err = workqueue.NewJoin(qs, o1, nil, func(ps [][]byte) ([]byte, error) { return ps[0], nil }, opts...)
					}
					if err != nil {
						t.Fatal(err)
					}
					if err, _ := runFor(st, 10*time.Minute); err != nil {
						t.Fatal(err)
					}
					for _, in := range ins {
						in.report(t, ids)
					}
				})
			})
		}
	}
}

// TestKeeperLostLeaseDoesNotLeakIntoNextItem: A's lease is lost while its add hangs; B's add (slow
// but healthy) must not be cancelled, B acked once with one add call.
func TestKeeperLostLeaseDoesNotLeakIntoNextItem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := newStrictIn()
		in.put("A", "a", 300*time.Millisecond)
		in.put("B", "b", 300*time.Millisecond)
		in.lost["A"] = true
		out := newStrictOut(func(p string, call int) time.Duration {
			if p == "a" && call == 1 {
				return time.Hour
			}
			return 250 * time.Millisecond
		})
		in.ok = out.has
		core, logs := observer.New(zapcore.InfoLevel)
		c, _ := workqueue.NewCopier(in, []workqueue.Queue{out}, workqueue.WithStageRetry(100*time.Millisecond), workqueue.WithLogger(zap.New(core)))
		if err, _ := runFor(c, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		in.report(t, []string{"A", "B"})
		out.mu.Lock()
		t.Logf("calls %v made %v", out.calls, out.made)
		if out.calls["b"] != 1 {
			t.Errorf("b added %d times, want 1", out.calls["b"])
		}
		out.mu.Unlock()
		t.Logf("logs %v", logLines(logs))
	})
}
