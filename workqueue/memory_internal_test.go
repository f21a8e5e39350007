package workqueue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// Directed interleavings found in review; the hooks put the racing call exactly in the window.

// An Add landing while a woken Lease holds the lock, after it emptied the inbox, must not be left
// there: either the Lease no longer counts as spinning (it stops before it looks), so the Add wakes
// a parked Lease itself once it gets the lock, or the Lease wakes one for it.
func TestMemoryAddDuringLeaseWakesAnotherLease(t *testing.T) {
	q := emptyMemory(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *Item, 2)
	done := make(chan struct{}, 2)
	for range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			if it, err := q.Lease(ctx); err == nil {
				got <- it
			}
		}()
	}
	for q.nparked.Load() < 2 {
		time.Sleep(100 * time.Microsecond)
	}
	var once atomic.Bool
	testHookLeased = func() {
		if once.CompareAndSwap(false, true) {
			added := make(chan struct{})
			go func() {
				defer close(added)
				if _, err := q.Add(ctx, []byte("second"), AddOptions{}); err != nil {
					t.Errorf("Add second: %v", err)
				}
			}()
			// The Add either returns at once (it saw the Lease counted as spinning and woke
			// nobody) or waits for the lock this Lease holds, to wake a parked Lease.
			select {
			case <-added:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	defer func() { testHookLeased = nil }()
	if _, err := q.Add(ctx, []byte("first"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	<-got
	select {
	case it := <-got:
		if string(it.Payload) != "second" && string(it.Payload) != "first" {
			t.Errorf("leased %q", it.Payload)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("lost wake-up: a Lease stayed parked for 2s with an item in the inbox (parked=%d spinning=%d)",
			q.nparked.Load(), q.spinning.Load())
	}
	cancel()
	<-done
	<-done
}

// Lease must copy the item out before it unlocks: a Lease descheduled past its lease duration can
// find its entry expired, leased and acked by another worker, and recycled for a new item.
func TestMemoryLeaseCopiesBeforeUnlock(t *testing.T) {
	q := memoryWithA(t, WithLeaseDuration(20*time.Millisecond))
	ctx := context.Background()
	testHookUnlocked, _ = firstCall(func() {
		time.Sleep(40 * time.Millisecond) // past the lease: A expires
		it, err := q.Lease(ctx)
		if err != nil {
			t.Errorf("second Lease: %v", err)
			return
		}
		if err := q.Ack(ctx, it.Lease); err != nil {
			t.Errorf("Ack: %v", err)
		}
		if _, err := q.Add(ctx, []byte("B"), AddOptions{}); err != nil { // may reuse A's entry
			t.Errorf("Add B: %v", err)
		}
	})
	defer func() { testHookUnlocked = nil }()
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Payload) != "A" {
		t.Errorf("item %s delivered with payload %q, want %q", it.ID, it.Payload, "A")
	}
}

// The entries of acked items are kept for later Adds, up to maxFree, and come back clean.
func TestMemoryFreeListIsBoundedAndClean(t *testing.T) {
	q := emptyMemory(t)
	ctx := context.Background()
	const n = maxFree + 100
	for i := range n {
		if _, err := q.Add(ctx, []byte("x"), AddOptions{Priority: i % 3}); err != nil {
			t.Fatal(err)
		}
	}
	dst := make([]Item, 64)
	var stale string
	for done := 0; done < n; {
		k, err := q.LeaseBatch(ctx, dst)
		if err != nil {
			t.Fatal(err)
		}
		var ls []string
		for _, it := range dst[:k] {
			ls = append(ls, it.Lease)
		}
		stale = ls[0]
		if err := q.AckBatch(ctx, ls); err != nil {
			t.Fatal(err)
		}
		done += k
	}
	nfree := 0
	for i := range q.shards {
		s := &q.shards[i]
		s.mu.Lock()
		nfree += s.nfree
		s.mu.Unlock()
	}
	if nfree != maxFree {
		t.Errorf("%d entries kept after %d acks, want %d", nfree, n, maxFree)
	}
	id, err := q.Add(ctx, []byte("fresh"), AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %q %q %d %d", it.ID, it.Key, it.Payload, it.Priority, it.Attempt)
	if want := fmt.Sprintf("%s %q %q %d %d", id, "", "fresh", 0, 1); got != want {
		t.Errorf("item on a recycled entry: %s, want %s", got, want)
	}
	if err := q.Ack(ctx, stale); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Ack of an acked item's token: %v, want ErrLeaseLost", err)
	}
}

// An entry is one item of a backlog: it must stay in the 128-byte size class.
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 128 {
		t.Errorf("entry is %d bytes, want at most 128", n)
	}
}

// A lane segment fills the runtime's largest small size class (32 KiB) with slots: a segment that
// left room for another slot would make every item of a backlog cost more than its 24 bytes.
func TestLaneSegmentFillsSizeClass(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("segSize is chosen for 64-bit platforms' 24-byte slots")
	}
	seg, slot := unsafe.Sizeof(laneSeg{}), unsafe.Sizeof(laneSlot{})
	if seg > 32<<10 || seg+slot <= 32<<10 {
		t.Errorf("a lane segment is %d bytes (slots of %d), want at most 32 KiB with no room for another slot", seg, slot)
	}
}

// recycle clears an acked item's entry field by field: whatever it held, the entry on the free list
// is a zero entry (idx -1) linked to the one before, so a field added to entry is cleared there too.
func TestRecycleClearsEveryField(t *testing.T) {
	prev := &entry{idx: -1}
	e := new(entry)
	v := reflect.ValueOf(e).Elem()
	for i := range v.NumField() {
		f := reflect.NewAt(v.Field(i).Type(), unsafe.Pointer(v.Field(i).UnsafeAddr())).Elem()
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
		case reflect.Int, reflect.Int32, reflect.Int64:
			f.SetInt(7)
		case reflect.Uint8, reflect.Uint64:
			f.SetUint(7)
		default:
			t.Fatalf("entry field %s of kind %s: set it here", v.Type().Field(i).Name, f.Kind())
		}
	}
	s := &leaseShard{free: prev, nfree: 1}
	s.recycle(e)
	if want := (entry{idx: -1, next: prev}); !reflect.DeepEqual(*e, want) || s.free != e || s.nfree != 2 {
		t.Errorf("recycled entry %+v (free list head %p, %d entries), want %+v (head %p, 2)", *e, s.free, s.nfree, want, e)
	}
}

// Add, Lease and Ack of a keyless item allocate only the Item that Lease hands out (112 bytes, in
// blocks), the item's slot in the fast lane (24 bytes, in segments) and its name (a few bytes of a
// shared array): under 150 bytes an item (the lane's slots used to take 56 bytes an item, and its
// segments 64 before that).
func TestMemoryHotPathBytesPerItem(t *testing.T) {
	q := emptyMemory(t)
	ctx := context.Background()
	cycle := func(n int) {
		for range n {
			if _, err := q.Add(ctx, nil, AddOptions{}); err != nil {
				t.Fatal(err)
			}
			it, err := q.Lease(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Ack(ctx, it.Lease); err != nil {
				t.Fatal(err)
			}
		}
	}
	cycle(1000) // the shards' rings, indexes and free lists
	const n = 100_000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cycle(n)
	runtime.ReadMemStats(&after)
	per := float64(after.TotalAlloc-before.TotalAlloc) / n
	t.Logf("%.1f bytes an item", per)
	if per > 150 {
		t.Errorf("Add+Lease+Ack allocated %.1f bytes an item, want at most 150", per)
	}
}

// The names the hot-path Adds cut from shared arrays are FormatLease's, across array boundaries
// and for IDs of every length, and a name made earlier is never overwritten by a later one.
func TestNameArena(t *testing.T) {
	var a nameArena
	var ids []uint64
	for id := uint64(1); id < 3*nameChunk; id++ {
		ids = append(ids, id)
	}
	for d, id := 0, uint64(9); d < 19; d, id = d+1, id*10+9 {
		ids = append(ids, id, id+1)
	}
	ids = append(ids, math.MaxUint64)
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = a.format(id)
	}
	for i, id := range ids {
		if want := FormatLease(id, 1); names[i] != want {
			t.Errorf("name of %d: %q, want %q", id, names[i], want)
		}
	}
}

// Every item put in the fast lane is claimed exactly once, with its name and payload, by claim or
// claimN from many goroutines at once, across segments; one claimer alone gets them in put order.
func TestFastLaneClaimsEachItemOnce(t *testing.T) {
	const n = 5*segSize + 7
	l := new(fastLane)
	l.init()
	var putMu sync.Mutex
	var names nameArena
	put := func(from, to int) { // item i has ID i+1, its name, and payload "i" (none if i%5 == 0)
		for i := from; i < to; i++ {
			var p []byte
			if i%5 != 0 {
				p = []byte(fmt.Sprint(i))
			}
			putMu.Lock()
			l.put(uint64(i+1), 0, names.format(uint64(i+1)), names.cur, p)
			putMu.Unlock()
		}
	}
	check := func(li laneItem) int {
		i := int(li.id) - 1
		want := fmt.Sprint(i)
		if i%5 == 0 {
			want = ""
		}
		if string(li.payload) != want || (li.payload == nil) != (i%5 == 0) {
			t.Errorf("item %d claimed with payload %q", i, li.payload)
		}
		if want := FormatLease(li.id, 1); li.name != want {
			t.Errorf("item %d claimed with name %q, want %q", i, li.name, want)
		}
		return i
	}
	var seen [n]atomic.Int32
	var wg sync.WaitGroup
	var claimed atomic.Int64
	wg.Go(func() { put(0, n) })
	for w := range 4 {
		wg.Go(func() {
			var buf []laneItem
			for claimed.Load() < n {
				if w%2 == 0 {
					if li, ok := l.claim(false); ok {
						seen[check(li)].Add(1)
						claimed.Add(1)
					}
					continue
				}
				buf = l.claimN(1+w*5, buf[:0], false)
				for _, li := range buf {
					seen[check(li)].Add(1)
				}
				claimed.Add(int64(len(buf)))
			}
		})
	}
	wg.Wait()
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("item %d claimed %d times", i, c)
		}
	}
	if _, ok := l.claim(false); ok || l.nonEmpty() {
		t.Error("lane not empty after every item was claimed")
	}
	if h, b := l.head.Load(), l.headSeg.Load().base; h-b >= segSize {
		t.Errorf("head %d is %d segments past headSeg (base %d)", h, (h-b)/segSize, b)
	}
	// One claimer: put order.
	l = new(fastLane)
	l.init()
	names = nameArena{}
	put(0, n)
	for i := range n {
		var li laneItem
		if i%3 == 0 {
			li = l.claimN(1, nil, false)[0]
		} else {
			li, _ = l.claim(false)
		}
		if got := check(li); got != i {
			t.Fatalf("claim %d: item %d, want %d", i, got, i)
		}
	}
}

// The lease ring keeps its live records in order through removals and resizes, keeps each entry's
// position right, and compacts instead of growing when most records are removed.
func TestLeaseRingOrderAndCompaction(t *testing.T) {
	var r leaseRing
	var live []*entry
	for i := range 10000 {
		e := &entry{id: uint64(i), deadline: int64(i)}
		r.push(e)
		live = append(live, e)
		if i%10 != 0 { // keep one in ten
			k := len(live) - 2
			if k >= 0 && live[k].id%10 != 0 {
				r.remove(live[k])
				live = append(live[:k], live[k+1:]...)
			}
		}
	}
	if r.n != len(live) {
		t.Fatalf("%d live records, want %d", r.n, len(live))
	}
	if len(r.buf) > 8*len(live) {
		t.Errorf("ring of %d records for %d live ones", len(r.buf), len(live))
	}
	for _, e := range live {
		f := r.first()
		if f == nil || f.e != e || f.deadline != e.deadline {
			t.Fatalf("first record %+v, want entry %d", f, e.id)
		}
		r.remove(e)
	}
	if r.first() != nil || r.n != 0 {
		t.Errorf("ring not empty: n=%d", r.n)
	}
}

// headSeg follows head also when claimers finish out of order: a claimer that claimed a segment's
// last index but had not yet moved headSeg on (descheduled between its two steps) while another
// claimed through the next segments must not leave headSeg behind for good (every segment after it
// stayed reachable, with the entries in its slots, and every claim walked the list from there).
func TestFastLaneHeadSegFollowsOutOfOrderClaims(t *testing.T) {
	l := new(fastLane)
	l.init()
	for i := range 4 * segSize {
		l.put(uint64(i+1), 0, "", nil, nil)
	}
	if got := len(l.claimN(segSize-1, nil, false)); got != segSize-1 {
		t.Fatalf("claimN: %d items", got)
	}
	// A claims the first segment's last index: the compare-and-swap on head, then (later)
	// headSeg's move from the segment it claimed in.
	s0 := l.headSeg.Load()
	if !l.head.CompareAndSwap(segSize-1, segSize) {
		t.Fatal("head moved")
	}
	// B claims through the next two segments meanwhile, one by one and in a run.
	for range segSize {
		if _, ok := l.claim(false); !ok {
			t.Fatal("claim: lane empty")
		}
	}
	if got := len(l.claimN(segSize+segSize/2, nil, false)); got != segSize+segSize/2 {
		t.Fatalf("claimN: %d items", got)
	}
	// A moves headSeg on from where it claimed.
	l.headSeg.CompareAndSwap(s0, s0.next.Load())
	for {
		if _, ok := l.claim(false); !ok {
			break
		}
	}
	if h, b := l.head.Load(), l.headSeg.Load().base; h != 4*segSize || h-b >= segSize {
		t.Errorf("head %d, headSeg base %d: headSeg %d segments behind", h, b, (h-b)/segSize)
	}
}

// An acked item's payload is not kept alive by the fast lane's slots: the segment at the head holds
// up to segSize-1 items claimed from it, and a claim clears their slots' pointers.
func TestFastLaneKeepsNoAckedPayload(t *testing.T) {
	q := emptyMemory(t)
	ctx := context.Background()
	const n = maxFree + segSize/2 // the free lists fill up; the head segment's items are dropped
	for range n {
		if _, err := q.Add(ctx, make([]byte, 1024), AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dst := make([]Item, 64)
	for done := 0; done < n; {
		k, err := q.LeaseBatch(ctx, dst)
		if err != nil {
			t.Fatal(err)
		}
		ls := make([]string, k)
		for i := range dst[:k] {
			ls[i] = dst[i].Lease
			dst[i] = Item{}
		}
		if err := q.AckBatch(ctx, ls); err != nil {
			t.Fatal(err)
		}
		done += k
	}
	s := q.lane.headSeg.Load()
	kept := 0
	if s.payloads != nil {
		for i := range s.payloads {
			if s.payloads[i] != nil {
				kept++
			}
		}
	}
	if kept > 0 {
		t.Errorf("the fast lane's head segment keeps the payloads of %d acked items", kept)
	}
}

// A Lease that decided to take the fast lane (the ready lanes looked empty) must not claim an item
// from it that came after items the locked path moved into the ready lanes meanwhile: the check of
// the ready lanes and the claim were two steps, so a keyed Add (which moves the lane's items into
// the ready lanes, then queues its own) and a hot-path Add between them let the Lease hand out the
// newest item before older ones, or a lower priority before a higher one.
func TestMemoryFastLeaseKeepsOrderWithReadyLanes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mid    AddOptions // added in the Lease's window, through the locked path
		want   string
		wantAt int // the priority of the item wanted
	}{
		{"add order", AddOptions{Key: "k"}, "A", 0},
		{"priority", AddOptions{Priority: 1}, "H", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := memoryWithA(t)
			ctx := context.Background()
			var called func() bool
			testHookFastChecked, called = firstCall(func() {
				mid := "K"
				if tc.mid.Priority != 0 {
					mid = "H"
				}
				if _, err := q.Add(ctx, []byte(mid), tc.mid); err != nil {
					t.Errorf("Add %s: %v", mid, err)
				}
				if _, err := q.Add(ctx, []byte("X"), AddOptions{}); err != nil {
					t.Errorf("Add X: %v", err)
				}
			})
			defer func() { testHookFastChecked = nil }()
			it, err := q.Lease(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !called() {
				t.Fatal("the Lease did not take the fast lane")
			}
			if string(it.Payload) != tc.want || it.Priority != tc.wantAt {
				t.Errorf("leased %q (priority %d), want %q (priority %d)", it.Payload, it.Priority, tc.want, tc.wantAt)
			}
		})
	}
}

// emptyMemory is a new queue, closed when the test ends.
func emptyMemory(t *testing.T, opts ...Option) *Memory {
	t.Helper()
	q, err := NewMemory(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// memoryWithA is a new queue, closed when the test ends, with one item added: "A".
func memoryWithA(t *testing.T, opts ...Option) *Memory {
	t.Helper()
	q := emptyMemory(t, opts...)
	if _, err := q.Add(context.Background(), []byte("A"), AddOptions{}); err != nil {
		t.Fatal(err)
	}
	return q
}

// firstCall returns a hook that runs f on its first call only, and a func that reports whether
// it was called.
func firstCall(f func()) (hook func(), called func() bool) {
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			f()
		}
	}, once.Load
}

// TestMemoryFastLeaseDuringDrainKeepsOrder: drainLocked (here a keyed Add's) claims the fast
// lane's items and then pushes them into the ready lanes. A Lease without the lock in between
// must not take an item added after the claim (X) while the older one it claimed (A) is on its
// way to the ready lanes.
func TestMemoryFastLeaseDuringDrainKeepsOrder(t *testing.T) {
	q := memoryWithA(t)
	ctx := context.Background()
	var fast []byte
	var called func() bool
	testHookDrainClaimed, called = firstCall(func() {
		if _, err := q.Add(ctx, []byte("X"), AddOptions{}); err != nil {
			t.Errorf("Add X: %v", err)
		}
		// What a Lease without the lock does at this moment (it cannot wait for mu here).
		n, it, err := q.leaseFast(q.clock(), nil, 1)
		if err != nil {
			t.Errorf("leaseFast: %v", err)
		}
		if n > 0 {
			fast = it.Payload
		}
	})
	defer func() { testHookDrainClaimed = nil }()
	if _, err := q.Add(ctx, []byte("K"), AddOptions{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if !called() {
		t.Fatal("the keyed Add did not drain the fast lane")
	}
	if fast != nil {
		t.Fatalf("a Lease without the lock took %q while the older A was moving to the ready lanes", fast)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Payload) != "A" {
		t.Errorf("leased %q, want A", it.Payload)
	}
}

// A lane slot holds no pointer, and a segment's slots come after all its pointers: the garbage
// collector scans a segment's header only, not an item's slot, so a backlog of items costs it a
// few pointers a segment (the slots held two pointers an item, the name and the payload).
func TestLaneSlotsHoldNoPointers(t *testing.T) {
	var hasPointers func(reflect.Type) bool
	hasPointers = func(typ reflect.Type) bool {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				if hasPointers(typ.Field(i).Type) {
					return true
				}
			}
			return false
		case reflect.Array:
			return typ.Len() > 0 && hasPointers(typ.Elem())
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
			return false
		}
		return true
	}
	slot := reflect.TypeFor[laneSlot]()
	if hasPointers(slot) {
		t.Errorf("laneSlot %v holds a pointer", slot)
	}
	seg := reflect.TypeFor[laneSeg]()
	slots, _ := seg.FieldByName("slots")
	for i := range seg.NumField() {
		if f := seg.Field(i); f.Offset > slots.Offset && hasPointers(f.Type) {
			t.Errorf("laneSeg's %s (a pointer) comes after its slots", f.Name)
		}
	}
}

// The name arrays of the items waiting in the fast lane stay alive through garbage collections
// while nothing else refers to them (Add's IDs were dropped): the items come out with their names.
func TestFastLaneNamesSurviveGC(t *testing.T) {
	q := emptyMemory(t)
	ctx := context.Background()
	const n = 3*segSize + 11
	for range n {
		if _, err := q.Add(ctx, nil, AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var junk [][]byte
	for range 3 {
		runtime.GC()
		for range 4 * n / minChunkNames { // reuse the memory of any array that was freed
			b := make([]byte, nameChunk)
			for i := range b {
				b[i] = 'x'
			}
			junk = append(junk, b)
		}
	}
	for i := range n {
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id := uint64(i + 1)
		if want := FormatLease(id, 1); it.Lease != want || it.ID != want[:len(want)-2] {
			t.Fatalf("item %d leased as ID %q token %q, want %q", i, it.ID, it.Lease, want)
		}
	}
	runtime.KeepAlive(junk)
}

// A segment has room for the name arrays of its items' names at their longest (20 digits), whose
// arrays hold the fewest names (see segChunks), wherever the arrays begin.
func TestLaneSegmentHoldsLongestNames(t *testing.T) {
	for skip := range uint64(minChunkNames) { // where the first segment's first array begins
		l := new(fastLane)
		l.init()
		var names nameArena
		const first = uint64(1e19) // 20 digits
		for i := range skip {
			names.format(first - 1 - i)
		}
		const n = 3*segSize + 1
		for i := range uint64(n) {
			l.put(first+i, 0, names.format(first+i), names.cur, nil)
		}
		for i := range uint64(n) {
			li, ok := l.claim(false)
			if want := FormatLease(first+i, 1); !ok || li.name != want {
				t.Fatalf("claim %d: %q (%v), want %q", i, li.name, ok, want)
			}
		}
	}
}
