package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newMemory(t *testing.T, c workqueuetest.Config) workqueue.Queue {
	q, err := workqueue.NewMemory(workqueue.WithLeaseDuration(c.LeaseDuration), workqueue.WithMaxAttempts(c.MaxAttempts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestMemoryConformance(t *testing.T) { workqueuetest.TestQueue(t, newMemory) }

// TestMemoryWakeups hands items to workers that keep parking and spinning (the producer pauses
// between bursts), mixing the lock-free keyless path with keyed and delayed adds: every item must
// be leased exactly once and none may wait for a wake-up that never comes, also when Leases give up
// (ctx) as they are woken.
func TestMemoryWakeups(t *testing.T) {
	q, err := workqueue.NewMemory(workqueue.WithLeaseDuration(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const workers, items = 6, 3000
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lctx, lcancel := ctx, context.CancelFunc(func() {})
				if w%2 == 1 { // these give up often: a wake-up they got must be handed on
					lctx, lcancel = context.WithTimeout(ctx, time.Duration(w)*100*time.Microsecond)
				}
				it, err := q.Lease(lctx)
				lcancel()
				if err != nil && ctx.Err() == nil {
					continue
				}
				if err != nil {
					return
				}
				mu.Lock()
				seen[string(it.Payload)]++
				n := len(seen)
				mu.Unlock()
				if err := q.Ack(ctx, it.Lease); err != nil {
					t.Errorf("Ack: %v", err)
				}
				if n == items {
					cancel()
				}
			}
		}()
	}
	for i := range items {
		o := workqueue.AddOptions{Priority: i % 3}
		switch i % 10 {
		case 3:
			o.Key = fmt.Sprint("k", i)
		case 7:
			o.Delay = time.Millisecond
		}
		if _, err := q.Add(ctx, []byte(fmt.Sprint(i)), o); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
		if i%50 == 0 {
			time.Sleep(time.Duration(i%7) * 100 * time.Microsecond) // let the workers park
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != items {
		t.Fatalf("%d of %d items leased before the timeout", len(seen), items)
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("item %s leased %d times", p, n)
		}
	}
}

// Lease cuts the Items it returns from shared blocks: an Item handed out belongs to its caller,
// and no later Lease writes over it, across blocks and from several goroutines.
func TestMemoryLeaseItemsStayTheCallers(t *testing.T) {
	q := mustMemory(t)
	ctx := context.Background()
	const n = 200
	want := make(map[string]string)
	for i := range n {
		p := fmt.Sprintf("p%d", i)
		id, err := q.Add(ctx, []byte(p), workqueue.AddOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[id] = p
	}
	its := make([][]*workqueue.Item, 4)
	var wg sync.WaitGroup
	for g := range its {
		wg.Go(func() {
			for range n / len(its) {
				it, err := q.Lease(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				its[g] = append(its[g], it)
			}
		})
	}
	wg.Wait()
	seen := make(map[string]bool)
	for _, l := range its {
		for _, it := range l {
			if seen[it.ID] || want[it.ID] != string(it.Payload) || it.Attempt != 1 || it.Lease != it.ID+".1" {
				t.Errorf("item %+v: seen before %v, want payload %q, attempt 1, lease %s.1", *it, seen[it.ID], want[it.ID], it.ID)
			}
			seen[it.ID] = true
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct items leased, want %d", len(seen), n)
	}
}

// No Lease hands out an item after Shutdown returned: a Lease racing Shutdown either gets its item
// before (and Shutdown waits for its ack) or gets ErrClosed. Workers check, between Lease and Ack,
// whether Shutdown has returned: if it has, the lease was outstanding when it returned.
func TestMemoryShutdownWaitsForRacingLeases(t *testing.T) {
	ctx := context.Background()
	for round := range 200 {
		q, err := workqueue.NewMemory()
		if err != nil {
			t.Fatal(err)
		}
		for range 64 {
			if _, err := q.Add(ctx, nil, workqueue.AddOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		var returned, late atomic.Bool
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					it, err := q.Lease(ctx)
					if err != nil {
						return
					}
					if returned.Load() {
						late.Store(true)
					}
					if err := q.Ack(ctx, it.Lease); err != nil {
						t.Errorf("Ack: %v", err)
					}
				}
			})
		}
		if round%2 == 0 {
			runtime.Gosched()
		}
		if err := q.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		returned.Store(true)
		wg.Wait()
		if late.Load() {
			t.Fatalf("round %d: a Lease handed out an item after Shutdown returned", round)
		}
		if s, _ := q.Stats(ctx); s.Leased != 0 {
			t.Fatalf("round %d: %d leased after Shutdown", round, s.Leased)
		}
	}
}

// TestMemoryReleaseDoesNotCountTheAttempt: a released lease neither counts toward MaxAttempts nor
// stays valid, and the item is leased again at once with the same attempt number.
func TestMemoryReleaseDoesNotCountTheAttempt(t *testing.T) {
	ctx := context.Background()
	q, err := workqueue.NewMemory(workqueue.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // with MaxAttempts 1, a counted attempt would bury the item on the second lease
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if it.Attempt != 1 {
			t.Fatalf("attempt %d after releases, want 1", it.Attempt)
		}
		if err := q.Release(ctx, it.Lease); err != nil {
			t.Fatal(err)
		}
		if err := q.Release(ctx, it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) {
			t.Fatalf("second Release of one lease: %v, want ErrLeaseLost", err)
		}
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}
	if dead, _ := q.Dead(ctx, 10); len(dead) != 0 {
		t.Fatalf("released item buried: %+v", dead)
	}
}

// A delay too long for the queue's clock never comes due; it must not wrap around to ready now.
func TestMemoryHugeDelayNeverComesDue(t *testing.T) {
	ctx := context.Background()
	q, err := workqueue.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	time.Sleep(2 * time.Millisecond) // a clock value past the start, so that now + MaxInt64 overflows
	if _, err := q.Add(ctx, []byte("add"), workqueue.AddOptions{Delay: math.MaxInt64}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(ctx, []byte("nack"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Payload) != "nack" {
		t.Fatalf("leased %q first, want the undelayed item", it.Payload)
	}
	if err := q.Nack(ctx, it.Lease, math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if it, err := q.Lease(lctx); err == nil {
		t.Fatalf("leased %q, delayed by %v", it.Payload, time.Duration(math.MaxInt64))
	}
	if s, err := q.Stats(ctx); err != nil || s.Delayed != 2 {
		t.Fatalf("stats %+v, %v: want 2 delayed", s, err)
	}
}

// journalLog is a plain (not lazy) Journal that keeps the last record of each ID, as bolt does, and
// counts its puts; hold, if set, runs before each change outside the lock.
type journalLog struct {
	mu   sync.Mutex
	recs map[uint64]workqueue.Record
	puts int
	hold func(workqueue.Change)
}

func (j *journalLog) Commit(ch []workqueue.Change) error {
	for _, c := range ch {
		if j.hold != nil {
			j.hold(c)
		}
		j.mu.Lock()
		switch c.Op {
		case workqueue.OpPut:
			j.puts++
			j.recs[c.Record.ID] = c.Record
		default:
			delete(j.recs, c.Record.ID)
		}
		j.mu.Unlock()
	}
	return nil
}

// journaledMemory is a Memory queue over a new journalLog, closed when the test ends.
func journaledMemory(t *testing.T) (*workqueue.Memory, *journalLog) {
	j := &journalLog{recs: map[uint64]workqueue.Record{}}
	q, err := workqueue.NewMemory(workqueue.WithJournal(j, nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q, j
}

// holdFirstPut makes the first put of a record that match accepts wait, outside the journal's lock,
// until release is closed; held is closed when it starts waiting.
func (j *journalLog) holdFirstPut(match func(workqueue.Record) bool) (held, release chan struct{}) {
	held, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	j.hold = func(c workqueue.Change) {
		if c.Op == workqueue.OpPut && match(c.Record) {
			once.Do(func() { close(held); <-release })
		}
	}
	return held, release
}

func (j *journalLog) state() (int, int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.recs), j.puts
}

// With a plain journal, an item an absorbed add brings forward stays out of sight until its new
// record is committed: were it leased and acked first, the late put would bring the acked item back
// into the journal (and deliver it again after a restart).
func TestMemoryHastenedItemWaitsForItsJournalRecord(t *testing.T) {
	ctx := context.Background()
	q, j := journaledMemory(t)
	if _, err := q.Add(ctx, []byte("v1"), workqueue.AddOptions{Key: "k", Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	held, release := j.holdFirstPut(func(r workqueue.Record) bool { return r.NotBefore.IsZero() && r.Attempt == 0 }) // the absorbed add's
	added := make(chan error, 1)
	go func() {
		_, err := q.Add(ctx, []byte("v2"), workqueue.AddOptions{Key: "k"})
		added <- err
	}()
	<-held
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if it, err := q.Lease(lctx); err == nil {
		t.Errorf("leased %q before the absorbed add's record was committed", it.Payload)
	}
	cancel()
	close(release)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}
	if n, _ := j.state(); n != 0 {
		t.Errorf("the journal holds %d records after the only item was acked", n)
	}
}

// An absorbed add that would not bring its item forward (no delay, and the item waits only for its
// key's turn) changes nothing, so nothing is written.
func TestMemoryAbsorbedAddWritesNothingWhenNothingChanges(t *testing.T) {
	ctx := context.Background()
	q, j := journaledMemory(t)
	for _, p := range []string{"leased", "parked"} {
		if _, err := q.Add(ctx, []byte(p), workqueue.AddOptions{Key: "hot"}); err != nil {
			t.Fatal(err)
		}
		if p == "leased" {
			if _, err := q.Lease(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, before := j.state()
	for range 100 {
		if _, err := q.Add(ctx, []byte("again"), workqueue.AddOptions{Key: "hot"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, after := j.state(); after != before {
		t.Errorf("100 absorbed adds that changed nothing wrote %d records", after-before)
	}
}

// An item parked behind its key's lease is brought forward too: after the ack it is ready at once.
func TestMemoryParkedItemHastened(t *testing.T) {
	ctx := context.Background()
	q, err := workqueue.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Add(ctx, []byte("first"), workqueue.AddOptions{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	first, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := q.Add(ctx, []byte("parked"), workqueue.AddOptions{Key: "k", Delay: time.Hour})
	if id2, _ := q.Add(ctx, []byte("now"), workqueue.AddOptions{Key: "k"}); id2 != id {
		t.Fatalf("add while parked got %s, want the parked %s", id2, id)
	}
	if err := q.Ack(ctx, first.Lease); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	it, err := q.Lease(lctx)
	if err != nil || it.ID != id {
		t.Fatalf("after the ack: %v, %v; want the parked item %s at once", it, err, id)
	}
}

// A second absorbed add that arrives while the first one's record is being committed still brings
// the item forward.
func TestMemorySecondAbsorbedAddWhileHeld(t *testing.T) {
	ctx := context.Background()
	q, j := journaledMemory(t)
	if _, err := q.Add(ctx, []byte("v1"), workqueue.AddOptions{Key: "k", Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	held, release := j.holdFirstPut(func(r workqueue.Record) bool { // the 10-minute add's
		return !r.NotBefore.IsZero() && r.Attempt == 0 && r.NotBefore.Before(time.Now().Add(time.Hour/2))
	})
	first := make(chan error, 1)
	go func() {
		_, err := q.Add(ctx, []byte("v2"), workqueue.AddOptions{Key: "k", Delay: 10 * time.Minute})
		first <- err
	}()
	<-held
	second := make(chan error, 1)
	go func() {
		_, err := q.Add(ctx, []byte("v3"), workqueue.AddOptions{Key: "k"})
		second <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the second add reach the queue while the first is held
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := q.Lease(lctx); err != nil {
		t.Fatalf("after an undelayed add of its key: %v; want the item now", err)
	}
}
