package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
)

// ledger records what a stress test's producers added and its workers leased and acked, by ID,
// and checks delivery: every attempt of an item is leased at most once, an item is never leased
// after an Ack of it succeeded, and (at the end) each item added was acked exactly once.
type ledger struct {
	mu       sync.Mutex
	added    map[string]bool
	attempts map[string]map[int]bool
	acked    map[string]int
	ackedAt  map[string]time.Time // when the Ack that succeeded returned
	errs     []string
	shut     atomic.Bool // Shutdown returned: no lease may be out, so no Ack may succeed
}

func newLedger() *ledger {
	return &ledger{added: map[string]bool{}, attempts: map[string]map[int]bool{}, acked: map[string]int{}, ackedAt: map[string]time.Time{}}
}

func (l *ledger) failf(format string, args ...any) {
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

func (l *ledger) add(id string) {
	l.mu.Lock()
	l.added[id] = true
	l.mu.Unlock()
}

// leased records a lease of it by a Lease or LeaseBatch called at start.
func (l *ledger) leased(it *workqueue.Item, start time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.attempts[it.ID]
	if a == nil {
		a = map[int]bool{}
		l.attempts[it.ID] = a
	}
	if a[it.Attempt] {
		l.failf("item %s: attempt %d leased twice", it.ID, it.Attempt)
	}
	a[it.Attempt] = true
	if at, ok := l.ackedAt[it.ID]; ok && at.Before(start) {
		l.failf("item %s leased (attempt %d) by a Lease called after an Ack of it returned", it.ID, it.Attempt)
	}
}

// ack records the outcome of an Ack that started after Shutdown returned if shut; it returns the
// number of items acked so far.
func (l *ledger) ack(id string, err error, shut bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil && shut:
		l.failf("item %s acked after Shutdown returned", id)
	}
	switch {
	case err == nil:
		l.ackedAt[id] = time.Now()
		l.acked[id]++
		if l.acked[id] > 1 {
			l.failf("item %s acked %d times", id, l.acked[id])
		}
	case !errors.Is(err, workqueue.ErrLeaseLost):
		l.failf("Ack of item %s: %v", id, err)
	}
	return len(l.acked)
}

// check reports the ledger's failures and, with all set, an item added but not acked once.
func (l *ledger) check(t *testing.T, all bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		t.Error(e)
	}
	for id := range l.acked {
		if !l.added[id] {
			t.Errorf("item %s acked but no Add of it returned nil", id)
		}
	}
	for id, a := range l.attempts {
		for i := 1; i <= len(a); i++ {
			if !a[i] {
				t.Errorf("item %s: attempts %v leased, attempt %d missing", id, a, i)
				break
			}
		}
	}
	if !all {
		return
	}
	for id := range l.added {
		if l.acked[id] != 1 {
			t.Errorf("item %s acked %d times, want 1 (attempts %v)", id, l.acked[id], l.attempts[id])
		}
	}
}

// stressAdd adds items from producers goroutines until each made n adds or ctx ends: mostly
// keyless adds of the hot path, with other priorities, keys and delays mixed in, which go through
// the locked path and the ready lanes.
func stressAdd(ctx context.Context, q *workqueue.Memory, l *ledger, producers, n int, closed *atomic.Bool, t *testing.T) *sync.WaitGroup {
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(p), 1))
			for i := range n {
				var o workqueue.AddOptions
				switch x := r.IntN(100); {
				case x < 5:
					o.Priority = 1
				case x < 10:
					o.Priority = -1
				case x < 14:
					o.Key = fmt.Sprint("k", r.IntN(5))
				case x < 18:
					o.Delay = time.Duration(1+r.IntN(2000)) * time.Microsecond
				}
				id, err := q.Add(ctx, fmt.Appendf(nil, "%d-%d", p, i), o)
				switch {
				case err == nil:
					l.add(id)
				case errors.Is(err, workqueue.ErrClosed) && closed != nil && closed.Load():
					return
				case ctx.Err() != nil:
					return
				default:
					t.Errorf("Add: %v", err)
					return
				}
				if i%128 == 0 {
					time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond) // let workers park
				}
			}
		})
	}
	return &wg
}

// stressWork leases with Lease and LeaseBatch from workers goroutines until ctx ends or the queue
// closes, and acks (one by one or in batches), nacks, extends or lets leases expire at random.
// done is called after each successful ack with the number of items acked so far.
func stressWork(ctx context.Context, q *workqueue.Memory, l *ledger, workers int, lease time.Duration, done func(int)) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			dst := make([]workqueue.Item, 8)
			var batch []string
			ack := func(it *workqueue.Item) {
				shut := l.shut.Load()
				done(l.ack(it.ID, q.Ack(ctx, it.Lease), shut))
			}
			for {
				var its []workqueue.Item
				start := time.Now()
				if r.IntN(2) == 0 {
					it, err := q.Lease(ctx)
					if err != nil {
						return
					}
					its = []workqueue.Item{*it}
				} else {
					n, err := q.LeaseBatch(ctx, dst[:1+r.IntN(len(dst))])
					if err != nil {
						return
					}
					its = dst[:n]
				}
				for i := range its {
					l.leased(&its[i], start)
				}
				for i := range its {
					it := &its[i]
					switch x := r.IntN(100); {
					case x < 10:
						_ = q.Nack(ctx, it.Lease, time.Duration(r.IntN(2))*time.Millisecond)
					case x < 13:
						time.Sleep(lease + lease/2) // expires: comes back unless the Ack wins
						ack(it)
					case x < 18:
						_, _ = q.Extend(ctx, it.Lease)
						ack(it)
					case x < 50:
						batch = append(batch, it.Lease)
					default:
						ack(it)
					}
				}
				if len(batch) > 0 {
					shut := l.shut.Load()
					err := q.AckBatch(ctx, batch)
					var be *workqueue.BatchError
					if err != nil && !errors.As(err, &be) {
						l.mu.Lock()
						l.failf("AckBatch: %v", err)
						l.mu.Unlock()
					}
					for i, lease := range batch {
						id, _, _ := strings.Cut(lease, ".")
						var e error
						if be != nil {
							e = be.Errs[i]
						}
						done(l.ack(id, e, shut))
					}
					batch = batch[:0]
				}
			}
		})
	}
	return &wg
}

// Many producers and workers at once, over the hot path and the locked one, with random acks,
// batch acks, nacks, extends and expiries: every item added is acked exactly once, no attempt is
// leased twice, and the queue is empty at the end.
func TestMemoryStressExactlyOnce(t *testing.T) {
	const lease = 20 * time.Millisecond
	q, err := workqueue.NewMemory(workqueue.WithLeaseDuration(lease))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const producers, perProducer, workers = 4, 2000, 6
	l := newLedger()
	var addsDone atomic.Bool
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	check := func(int) {
		l.mu.Lock()
		all := addsDone.Load() && len(l.acked) == len(l.added)
		l.mu.Unlock()
		if all {
			stop()
		}
	}
	ww := stressWork(wctx, q, l, workers, lease, check)
	stressAdd(ctx, q, l, producers, perProducer, nil, t).Wait()
	addsDone.Store(true)
	check(0)
	ww.Wait()
	if ctx.Err() != nil {
		t.Fatalf("timed out: %d of %d items acked", len(l.acked), len(l.added))
	}
	l.check(t, true)
	s, err := q.Stats(context.Background())
	if err != nil || s != (workqueue.Stats{}) {
		t.Errorf("Stats at the end: %+v (err %v), want all zero", s, err)
	}
}

// Shutdown while producers add and workers lease, ack, nack and let leases expire: once Shutdown
// returned no Ack succeeds (no lease was out), every item acked was added, no attempt is leased
// twice, and the items added and not acked are still in the queue.
func TestMemoryStressShutdownMidFlight(t *testing.T) {
	const lease = 20 * time.Millisecond
	for round := range 20 {
		q, err := workqueue.NewMemory(workqueue.WithLeaseDuration(lease))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		l := newLedger()
		ww := stressWork(ctx, q, l, 6, lease, func(int) {})
		var closed atomic.Bool
		closed.Store(true) // Adds may meet ErrClosed at any time
		pw := stressAdd(ctx, q, l, 3, 1000, &closed, t)
		time.Sleep(time.Duration(1+round%5) * time.Millisecond)
		if err := q.Shutdown(ctx); err != nil {
			t.Fatalf("round %d: Shutdown: %v", round, err)
		}
		l.shut.Store(true)
		pw.Wait()
		ww.Wait()
		cancel()
		l.check(t, false)
		l.mu.Lock()
		left := int64(len(l.added) - len(l.acked))
		l.mu.Unlock()
		if _, err := q.Stats(context.Background()); !errors.Is(err, workqueue.ErrClosed) {
			t.Errorf("round %d: Stats after Shutdown: %v, want ErrClosed", round, err)
		}
		if s := workqueue.HeldStats(q); s.Leased != 0 || s.Ready+s.Delayed != left {
			t.Errorf("round %d: items held after Shutdown: %+v, want 0 leased and %d ready or delayed (added %d, acked %d)",
				round, s, left, len(l.added), len(l.acked))
		}
		if t.Failed() {
			return
		}
	}
}

// One producer and one consumer, the producer mixing hot-path Adds with Adds of the locked path
// (keyed, or of another priority): the consumer always gets the highest priority first and, within
// a priority, the oldest. With one producer every item was added before the next one's Add began,
// and with one consumer an item not leased yet is still in the queue, so a Lease that returns item
// X must have handed out already every item added before X at X's priority or above.
func TestMemoryStressOrderOneProducerOneConsumer(t *testing.T) {
	n := 200000
	if testing.Short() {
		n = 20000
	}
	q, err := workqueue.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The schedule: the options of item i, known to the consumer in advance.
	r := rand.New(rand.NewPCG(7, 7))
	opts := make([]workqueue.AddOptions, n)
	const prios = 2         // 0 and 1
	var byPrio [prios][]int // the items of each priority, in add order
	for i := range opts {
		switch x := r.IntN(100); {
		case x < 12:
			opts[i].Key = fmt.Sprint("k", i) // the locked path, no dedup
		case x < 20:
			opts[i].Priority = 1
		}
		byPrio[opts[i].Priority] = append(byPrio[opts[i].Priority], i)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range opts {
			if _, err := q.Add(ctx, []byte(strconv.Itoa(i)), opts[i]); err != nil {
				t.Errorf("Add %d: %v", i, err)
				return
			}
			if i%64 == 0 {
				runtime.Gosched() // let the consumer catch up and look again
			}
		}
	})
	leased := make([]bool, n)
	var next [prios]int // byPrio[p][next[p]] is the oldest item of priority p not leased yet
	var errs int
	for range n {
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatalf("Lease: %v", err)
		}
		x, _ := strconv.Atoi(string(it.Payload))
		leased[x] = true
		for p := opts[x].Priority; p < prios; p++ {
			for next[p] < len(byPrio[p]) && leased[byPrio[p][next[p]]] {
				next[p]++
			}
			if next[p] < len(byPrio[p]) && byPrio[p][next[p]] < x && errs < 10 {
				errs++
				t.Errorf("leased item %d (priority %d, key %q) before item %d (priority %d), added earlier",
					x, opts[x].Priority, opts[x].Key, byPrio[p][next[p]], p)
			}
		}
		if err := q.Ack(ctx, it.Lease); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
	wg.Wait()
}
