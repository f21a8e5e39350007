package workqueue

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.uber.org/zap"
)

// entry states.
const (
	stNew     uint8 = iota // added, waiting for its journal commit (or in the inbox); invisible
	stReady                // in the ready lanes
	stDelayed              // in the delayed heap
	stLeased               // in the leased list
	stParked               // waiting for its key's turn
	stHeld                 // nacked, waiting for its journal commit; invisible
)

// entry is one live item: a Record in 128 bytes (times are clock values, see Memory.clock), so
// that a backlog of items costs the garbage collector and the caches half as much.
type entry struct {
	id        uint64
	name      string // "<id>.1": the ID is its prefix, and the token of the item's first lease
	key       string
	payload   []byte
	prio      int
	attempt   int    // leases so far
	notBefore int64  // clock value; 0: ready as soon as its key allows
	deadline  int64  // clock value; 0: not leased
	added     int64  // clock value (kept only with a journal)
	next      *entry // leased list; free list
	prev      *entry // leased list
	idx       int32  // index in the delayed heap
	state     uint8
}

// setID gives e its ID and name, formatted once: neither an Add nor the first Lease of the item
// allocates a string of its own. It returns the ID.
func (e *entry) setID(id uint64) string {
	e.id = id
	e.name = FormatLease(id, 1)
	return e.ids()
}

// ids is the item's ID as a string.
func (e *entry) ids() string { return e.name[:len(e.name)-2] }

// record is e as a Journal stores it.
func (q *Memory) record(e *entry) Record {
	return Record{
		ID: e.id, Key: e.key, Payload: e.payload, Priority: e.prio, Attempt: e.attempt,
		NotBefore: q.time(e.notBefore), Deadline: q.time(e.deadline), Added: q.time(e.added),
	}
}

// maxFree bounds the entries an idle queue keeps for reuse (about 1 MiB).
const maxFree = 4096

// recycleLocked keeps the entry of an acked item, which nothing refers to any more, for a later
// Add. Called with mu held.
func (q *Memory) recycleLocked(e *entry) {
	if q.nfree >= maxFree {
		return
	}
	*e = entry{idx: -1, next: q.free}
	q.free = e
	q.nfree++
}

// push is the hot-path Add without mu: it makes a ready entry with the next ID on a recycled entry
// (it takes the entries acked since its last visit all at once, when mu is free, and hands them out
// one by one) or a new one, and appends it to the inbox. It returns the ID, and whether the inbox
// was empty.
func (q *Memory) push(payload []byte, prio int) (id string, first bool) {
	q.sparesMu.Lock()
	if q.spares == nil && q.mu.TryLock() {
		q.spares, q.free, q.nfree = q.free, nil, 0
		q.mu.Unlock()
	}
	e := q.spares
	if e != nil {
		q.spares, e.next = e.next, nil
	}
	n := q.seq.Add(1)
	name := q.names.format(n)
	q.sparesMu.Unlock()
	if e == nil {
		e = &entry{idx: -1}
	}
	e.id, e.name = n, name
	e.payload, e.prio, e.state = payload, prio, stReady
	id = e.ids() // now: once inMu is unlocked, e may be leased, acked and recycled
	q.inMu.Lock()
	first = len(q.in) == 0
	if first {
		q.inPrio, q.inMixed = prio, false
		q.inFull.Store(true)
	} else if prio != q.inPrio {
		q.inMixed = true
	}
	q.in = append(q.in, e)
	q.inMu.Unlock()
	return id, first
}

// nameChunk is the size of the byte arrays the hot-path Adds cut the names of their items from.
const nameChunk = 512

// nameArena makes the names ("<id>.1") of the hot-path Adds' items: it cuts them from shared
// arrays of nameChunk bytes instead of allocating each, so that an Add allocates nothing (a
// recycled entry) or only the entry. The arrays hold no pointers: the garbage collector does not
// scan them. A byte of an array is written once, before the string that holds it is made, and
// never again. The cost: a string kept (an ID, a lease token) keeps its whole array alive.
type nameArena struct {
	buf []byte // the rest of the current array (len 0)
}

// format returns FormatLease(id, 1).
func (a *nameArena) format(id uint64) string {
	const maxLen = 20 + 2 // the digits of a uint64 and ".1"
	if cap(a.buf) < maxLen {
		a.buf = make([]byte, 0, nameChunk)
	}
	b := strconv.AppendUint(a.buf, id, 10)
	b = append(b, '.', '1')
	a.buf = b[len(b):]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// keyState orders the live items of one key: q[0] is the one whose turn it is.
type keyState struct{ q []*entry }

// Memory is the in-process queue: client-go's workqueue semantics (one key is never leased twice at
// once; an add while its key is leased is kept and runs after the ack; delayed adds; Shutdown drains)
// plus priorities, leases that expire, a ctx-cancellable Lease, and dead letters. With WithJournal it
// is the engine of workqueue/bolt.
//
// The hot path (a keyless Add without delay, Lease or LeaseBatch, Ack or AckBatch) is built for
// many items per second: such an Add does not take the queue's lock (it appends to an inbox, under
// two short locks of its own, that the next Lease moves into the ready lanes in one batch without
// touching the entries); it allocates nothing with a recycled entry (acked entries are reused; the
// ID, which is also the first lease's token, is cut from a shared byte array, see nameArena); leases are kept in deadline order in a list (a
// lease's deadline is now plus a fixed duration, so it goes at the tail), and only leased items are
// indexed by ID. A Lease that finds nothing spins (yielding) for a few microseconds before it parks,
// and only an Add that finds the inbox empty, and no Lease spinning, wakes a parked Lease, so a
// steady flow of items needs few wake-ups. LeaseBatch and AckBatch take the lock once per batch;
// Lease hands out Items cut from blocks of itemBlock (one allocation per block, see itemLocked).
type Memory struct {
	cfg      memConfig
	base     time.Time    // clock() is the monotonic time since: one clock read, not two
	spinners int32        // how many Leases may spin at once (0 with GOMAXPROCS 1)
	spinning atomic.Int32 // Leases looking for work that will see a new item without a wake-up
	nparked  atomic.Int32 // len(waiters)
	isClosed atomic.Bool

	// What an Add writes and what a Lease writes sit on separate cache lines, so that a producer
	// and the workers on other cores do not invalidate each other's lines.
	_   [64]byte
	seq atomic.Uint64
	// The inbox: what the hot-path Adds added, oldest first, not yet in the ready lanes. A Lease
	// takes it all at once (drainLocked) without touching the entries, which with a backlog are no
	// longer in any cache. inFull is len(in) > 0, for readers without inMu.
	inMu    sync.Mutex
	in      []*entry
	inPrio  int  // the priority of in[0]
	inMixed bool // some entry of in has another priority
	inFull  atomic.Bool
	// The hot-path Adds' supply of recycled entries (refilled from free, see push) and names.
	sparesMu sync.Mutex
	spares   *entry
	names    nameArena
	_        [64]byte

	mu      sync.Mutex
	leasedM idIndex // leased items by ID
	live    int     // items out of the inbox, not yet acked or buried
	nheld   int     // items in state stHeld
	ready   readyQueue
	delayed entryHeap
	leased  leaseList
	keys    map[string]*keyState
	dead    []DeadItem
	scratch []*entry  // drainLocked's
	free    *entry    // entries of acked items, for Adds (linked by next)
	nfree   int       // len(free)
	waiters []*waiter // parked Lease calls, FIFO
	items   []Item    // itemLocked's block
	// spare holds idle waiters. It is per queue, not global: a waiter's channel belongs to the
	// goroutines that made it (a testing/synctest bubble, say), like the queue itself.
	spare   sync.Pool
	drainCh chan struct{} // closed when the last lease ends while Shutdown waits
	evTimer *time.Timer   // fires at evAt to run advance (due delays, expired leases) for waiters
	evAt    int64         // clock value; 0: not armed
	closed  bool
}

var _ Batcher = (*Memory)(nil)

// spinRounds is how many times a spinning Lease yields before it parks (some microseconds).
const spinRounds = 64

// NewMemory returns an empty queue (or one recovered from WithJournal's records).
func NewMemory(opts ...Option) (*Memory, error) {
	cfg := memConfig{lease: 30 * time.Second, logger: zap.NewNop()}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.lease <= 0 {
		return nil, fmt.Errorf("%w: lease duration %v must be positive", ErrInvalid, cfg.lease)
	}
	if cfg.maxAttempts < 0 {
		return nil, fmt.Errorf("%w: max attempts %d must not be negative", ErrInvalid, cfg.maxAttempts)
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	q := &Memory{
		cfg:     cfg,
		keys:    make(map[string]*keyState),
		delayed: entryHeap{less: func(a, b *entry) bool { return a.notBefore < b.notBefore }},
	}
	if p := runtime.GOMAXPROCS(0); p > 1 {
		q.spinners = int32(p)
	}
	q.base = time.Now()
	q.seq.Store(cfg.lastID)
	q.spare.New = newWaiter
	q.recover(cfg.recovered)
	return q, nil
}

// clock reads the time as the queue keeps it: one plus the nanoseconds since base on the monotonic
// clock, so that a clock value is never 0 (0 means "no time").
func (q *Memory) clock() int64 { return int64(time.Since(q.base)) + 1 }

// time converts a clock value to a time; 0 is the zero time.
func (q *Memory) time(c int64) time.Time {
	if c == 0 {
		return time.Time{}
	}
	return q.base.Add(time.Duration(c - 1))
}

// clockOf converts a time to a clock value; the zero time is 0.
func (q *Memory) clockOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	c := int64(t.Sub(q.base)) + 1
	if c == 0 { // a nanosecond before base
		c = -1
	}
	return c
}

// waiter is a parked Lease. A wake-up is a token on ch (room for one); the waker has already
// counted the woken Lease as spinning.
type waiter struct {
	ch chan struct{}
}

func newWaiter() any { return &waiter{ch: make(chan struct{}, 1)} }

func (q *Memory) recover(recs []Record) {
	if len(recs) == 0 {
		return
	}
	recs = append([]Record(nil), recs...)
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	now := q.clock()
	var live []*entry
	for _, r := range recs {
		if r.ID > q.seq.Load() {
			q.seq.Store(r.ID)
		}
		if r.Dead {
			q.dead = append(q.dead, deadItem(r, r.Reason, r.Added))
			continue
		}
		e := &entry{
			key: r.Key, payload: r.Payload, prio: r.Priority, attempt: r.Attempt,
			notBefore: q.clockOf(r.NotBefore), deadline: q.clockOf(r.Deadline), added: q.clockOf(r.Added), idx: -1,
		}
		e.setID(r.ID)
		q.live++
		if r.Key != "" {
			ks := q.keys[r.Key]
			if ks == nil {
				ks = &keyState{}
				q.keys[r.Key] = ks
			}
			ks.q = append(ks.q, e)
		}
		live = append(live, e)
	}
	for _, e := range live {
		if e.deadline != 0 && e.deadline > now {
			e.state = stLeased
			q.leased.insert(e)
			q.leasedM.put(e)
			continue
		}
		e.deadline = 0
		e.state = stNew
	}
	for _, e := range live {
		if e.state == stNew {
			q.makeVisible(e, now)
		}
	}
}

func deadItem(r Record, reason string, t time.Time) DeadItem {
	return DeadItem{ID: strconv.FormatUint(r.ID, 10), Key: r.Key, Payload: r.Payload, Attempts: r.Attempt, Reason: reason, Time: t}
}

// drainLocked moves the inbox into the ready lanes, oldest first. With one priority (the common
// case) it copies the pointers and touches no entry: an entry of the inbox is marked ready when it
// is added. The inbox and scratch trade places, so that neither allocates in a steady flow.
// Called with mu held.
func (q *Memory) drainLocked() {
	if !q.inFull.Load() {
		return
	}
	q.inMu.Lock()
	s, p, mixed := q.in, q.inPrio, q.inMixed
	q.in = q.scratch[:0]
	q.inFull.Store(false)
	q.inMu.Unlock()
	q.live += len(s)
	if mixed {
		for _, e := range s {
			q.ready.push(e)
		}
	} else {
		q.ready.pushAll(p, s)
	}
	clear(s)
	if cap(s) > 4096 {
		s = nil
	}
	q.scratch = s
}

// makeVisible puts an entry that is not in any heap where it belongs. Called with mu held.
func (q *Memory) makeVisible(e *entry, now int64) {
	if e.key != "" {
		if ks := q.keys[e.key]; ks != nil && ks.q[0] != e {
			e.state = stParked
			return
		}
	}
	if e.notBefore > now {
		e.state = stDelayed
		q.delayed.push(e)
		q.armLocked(now)
		return
	}
	q.toReady(e)
}

// toReady queues e and makes sure a Lease will look for it. Called with mu held.
func (q *Memory) toReady(e *entry) {
	e.state = stReady
	q.ready.push(e)
	q.wakeLocked()
}

// wakeLocked wakes a parked Lease unless one is spinning (it will find the ready items by itself).
// The woken Lease counts as spinning from now on, so one wake-up is in flight at a time; a Lease
// that takes an item and leaves others ready wakes the next. Called with mu held.
func (q *Memory) wakeLocked() {
	if len(q.waiters) == 0 || q.spinning.Load() != 0 {
		return
	}
	w := q.waiters[0]
	copy(q.waiters, q.waiters[1:])
	q.waiters[len(q.waiters)-1] = nil
	q.waiters = q.waiters[:len(q.waiters)-1]
	q.nparked.Add(-1)
	q.spinning.Add(1)
	w.ch <- struct{}{}
}

// available reports, without the lock, whether a Lease may find something.
func (q *Memory) available() bool {
	return q.inFull.Load() || q.ready.n.Load() > 0
}

// stopSpinning uncounts a spinning Lease that leaves without an item, and hands its search on.
func (q *Memory) stopSpinning() {
	q.spinning.Add(-1)
	if q.nparked.Load() > 0 && q.available() {
		q.mu.Lock()
		q.drainLocked()
		if q.ready.len() > 0 {
			q.wakeLocked()
		}
		q.mu.Unlock()
	}
}

// leaseLocked leases e and copies it out to it: once mu is unlocked, the lease can expire, the item
// be leased and acked by another Lease, and the entry be recycled for a new item. The caller arms
// the event timer. Called with mu held.
func (q *Memory) leaseLocked(e *entry, now int64, it *Item) {
	e.attempt++
	e.deadline = now + int64(q.cfg.lease)
	e.state = stLeased
	q.leased.insert(e)
	q.leasedM.put(e)
	tok := e.name
	if e.attempt != 1 {
		tok = FormatLease(e.id, e.attempt)
	}
	*it = Item{
		ID: e.ids(), Key: e.key, Payload: e.payload, Priority: e.prio,
		Attempt: e.attempt, Lease: tok, Deadline: q.time(e.deadline),
	}
}

// armLocked makes the event timer fire by the next timed event (a delayed item coming due or a
// lease expiring) while Leases are parked, so that they need no timers of their own. The timer is
// re-armed only when the next event moves earlier. Called with mu held.
func (q *Memory) armLocked(now int64) {
	if len(q.waiters) == 0 || q.closed {
		return
	}
	next := q.nextEvent()
	if next == 0 || (q.evAt != 0 && next >= q.evAt) {
		return
	}
	if now == 0 {
		now = q.clock()
	}
	q.evAt = next
	if q.evTimer == nil {
		q.evTimer = time.AfterFunc(time.Duration(next-now), q.onEvent)
	} else {
		q.evTimer.Reset(time.Duration(next - now))
	}
}

func (q *Memory) onEvent() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.evAt = 0
	if q.closed {
		return
	}
	now := q.clock()
	q.advance(now)
	q.armLocked(now)
}

// forget removes a live entry that is in no heap and hands its key's turn on. Called with mu held.
func (q *Memory) forget(e *entry, now int64) {
	q.live--
	if e.key == "" {
		return
	}
	ks := q.keys[e.key]
	if ks == nil {
		return
	}
	for i, x := range ks.q {
		if x == e {
			ks.q = append(ks.q[:i], ks.q[i+1:]...)
			break
		}
	}
	if len(ks.q) == 0 {
		delete(q.keys, e.key)
		return
	}
	if next := ks.q[0]; next.state == stParked {
		q.makeVisible(next, now)
	}
}

// unleaseLocked takes a leased entry out of the leased list and index. Called with mu held.
func (q *Memory) unleaseLocked(e *entry) {
	q.leased.remove(e)
	q.leasedM.del(e.id)
	e.deadline = 0
}

// advance moves due delayed items to ready and expired leases back to ready. Called with mu held.
func (q *Memory) advance(now int64) {
	for {
		e := q.delayed.top()
		if e == nil || e.notBefore > now {
			break
		}
		q.delayed.pop()
		q.toReady(e)
	}
	for {
		e := q.leased.head
		if e == nil || e.deadline > now {
			break
		}
		q.unleaseLocked(e)
		q.toReady(e)
		q.cfg.logger.Debug("lease expired", zap.Uint64("id", e.id), zap.Int("attempt", e.attempt))
	}
	q.checkDrained()
}

func (q *Memory) checkDrained() {
	if q.drainCh != nil && q.leased.n == 0 && q.nheld == 0 {
		close(q.drainCh)
		q.drainCh = nil
	}
}

// nextEvent is when advance next has work, or zero. Called with mu held.
func (q *Memory) nextEvent() int64 {
	var t int64
	if e := q.delayed.top(); e != nil {
		t = e.notBefore
	}
	if e := q.leased.head; e != nil && (t == 0 || e.deadline < t) {
		t = e.deadline
	}
	return t
}

func (q *Memory) commit(ch ...Change) error {
	if q.cfg.journal == nil || len(ch) == 0 {
		return nil
	}
	if err := q.cfg.journal.Commit(ch); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Test hooks, nil outside tests: testHookLeased runs in Lease with mu held right after an item is
// leased, testHookUnlocked right after Lease unlocks mu to return it.
var testHookLeased, testHookUnlocked func()

// Add implements Queue.
func (q *Memory) Add(ctx context.Context, payload []byte, opts AddOptions) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if opts.Delay < 0 {
		return "", fmt.Errorf("%w: negative delay %v", ErrInvalid, opts.Delay)
	}
	if opts.Key == "" && opts.Delay == 0 && q.cfg.journal == nil {
		// The hot path: no lock; the next Lease moves the item into the ready lanes.
		if q.isClosed.Load() {
			return "", ErrClosed
		}
		id, first := q.push(payload, opts.Priority)
		if q.isClosed.Load() {
			// Closed while this pushed: no Lease will take the item, so do not report it added.
			return "", ErrClosed
		}
		// A Lease takes the whole inbox at once, so only the Add that found it empty decides
		// whether to wake one: whoever takes its item takes the later ones too. A Lease stops
		// counting as spinning before it looks, and a parking Lease looks at the inbox after it
		// counts as parked: so either a Lease sees this item or this sees nobody looking and
		// wakes a parked one.
		if first && q.spinning.Load() == 0 && q.nparked.Load() > 0 {
			q.mu.Lock()
			q.drainLocked()
			if q.ready.len() > 0 {
				q.wakeLocked()
			}
			q.mu.Unlock()
		}
		return id, nil
	}
	var now int64 // read only when needed: clock reads are a large part of an Add's cost
	if opts.Delay > 0 || q.cfg.journal != nil {
		now = q.clock()
	}
	e := &entry{idx: -1, state: stNew, key: opts.Key, payload: payload, prio: opts.Priority}
	if q.cfg.journal != nil {
		e.added = now
	}
	if opts.Delay > 0 {
		e.notBefore = now + int64(opts.Delay)
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return "", ErrClosed
	}
	q.drainLocked() // earlier keyless adds go first
	var ks *keyState
	if opts.Key != "" {
		ks = q.keys[opts.Key]
		if ks != nil {
			last := ks.q[len(ks.q)-1]
			if last.attempt == 0 && last.state != stNew && last.state != stLeased {
				id := last.ids()
				q.mu.Unlock()
				return id, nil
			}
		} else {
			ks = &keyState{}
			q.keys[opts.Key] = ks
		}
	}
	id := e.setID(q.seq.Add(1))
	q.live++
	if ks != nil {
		ks.q = append(ks.q, e)
	}
	if q.cfg.journal != nil {
		rec := q.record(e)
		q.mu.Unlock()
		err := q.commit(Change{Op: OpPut, Record: rec})
		q.mu.Lock()
		if err != nil {
			q.forget(e, now)
			q.mu.Unlock()
			return "", err
		}
	}
	q.makeVisible(e, now)
	q.mu.Unlock()
	return id, nil
}

// Lease implements Queue.
func (q *Memory) Lease(ctx context.Context) (*Item, error) {
	_, it, err := q.lease(ctx, nil)
	return it, err
}

// itemBlock is how many Items one allocation of Lease's makes (see itemLocked).
const itemBlock = 16

// itemLocked returns a new Item for Lease: the next one of a block of itemBlock, so that Lease
// allocates once per itemBlock items. Each Item of a block is handed out once and then belongs to
// its caller; an Item kept keeps its block alive. Called with mu held.
func (q *Memory) itemLocked() *Item {
	if len(q.items) == 0 {
		q.items = make([]Item, itemBlock)
	}
	it := &q.items[0]
	q.items = q.items[1:]
	return it
}

// LeaseBatch implements Batcher: one lock and one clock read lease up to len(dst) ready items.
func (q *Memory) LeaseBatch(ctx context.Context, dst []Item) (int, error) {
	if len(dst) == 0 {
		return 0, errEmptyBatch
	}
	n, _, err := q.lease(ctx, dst)
	return n, err
}

// lease is LeaseBatch, and Lease when dst is nil: it leases up to len(dst) > 0 items into dst,
// or one into an Item of itemLocked's, and returns how many and the first.
//
// Wake-ups: an Add of the hot path wakes a parked Lease only when no Lease counts as spinning, so a
// Lease that counts stops counting (under mu, before it drains the inbox) every time it looks: an
// Add that saw it counted pushed its item before that, and the drain finds it; an Add after that
// sees no spinner (or another one, which will look again) and wakes a parked Lease itself.
func (q *Memory) lease(ctx context.Context, dst []Item) (int, *Item, error) {
	max := len(dst)
	if dst == nil {
		max = 1
	}
	spinning := false // counted in q.spinning
	spun := 0
	for {
		if err := ctx.Err(); err != nil {
			if spinning {
				q.stopSpinning()
			}
			return 0, nil, err
		}
		now := q.clock()
		q.mu.Lock()
		if spinning {
			spinning = false
			q.spinning.Add(-1)
		}
		if q.closed {
			q.mu.Unlock()
			return 0, nil, ErrClosed
		}
		q.drainLocked()
		q.advance(now)
		var changes []Change // buried items first, then the leases (with a journal)
		var first *Item
		n := 0
		for n < max && q.ready.len() > 0 {
			e := q.ready.pop()
			if q.cfg.maxAttempts > 0 && e.attempt >= q.cfg.maxAttempts {
				changes = append(changes, q.bury(e, fmt.Sprintf("max attempts (%d) used", q.cfg.maxAttempts), now))
				continue
			}
			var it *Item
			if dst != nil {
				it = &dst[n]
			} else {
				it = q.itemLocked()
			}
			q.leaseLocked(e, now, it)
			if n == 0 {
				first = it
			}
			n++
			if q.cfg.journal != nil {
				changes = append(changes, Change{Op: OpPut, Record: q.record(e)})
			}
		}
		if n > 0 {
			q.armLocked(now)
			if testHookLeased != nil {
				testHookLeased()
			}
			if q.ready.len() > 0 {
				q.wakeLocked() // hand the search on
			}
			q.mu.Unlock()
			if testHookUnlocked != nil {
				testHookUnlocked()
			}
			if q.cfg.journal == nil {
				return n, first, nil
			}
			if lj, ok := q.cfg.journal.(LazyJournal); ok {
				lj.CommitLater(changes)
				return n, first, nil
			}
			if err := q.commit(changes...); err != nil {
				return 0, nil, err
			}
			return n, first, nil
		}
		if spun < spinRounds && q.spinning.Load() < q.spinners {
			// Spin: look again in a moment without the lock.
			spinning = true
			q.spinning.Add(1)
			q.mu.Unlock()
			if err := q.commit(changes...); err != nil {
				q.stopSpinning()
				return 0, nil, err
			}
			for ; spun < spinRounds && !q.available(); spun++ {
				runtime.Gosched()
			}
			spun++
			continue
		}
		// Park until woken, the next timed event, ctx, or Close.
		w := q.spare.Get().(*waiter)
		q.waiters = append(q.waiters, w)
		q.nparked.Add(1)
		if q.inFull.Load() { // an Add that saw no parked Lease did not wake anyone
			q.removeWaiter(w)
			q.mu.Unlock()
			q.spare.Put(w)
			continue
		}
		q.armLocked(now)
		q.mu.Unlock()
		if err := q.commit(changes...); err != nil {
			if !q.dropWaiter(w) {
				q.stopSpinning()
			}
			q.spare.Put(w)
			return 0, nil, err
		}
		select {
		case <-w.ch:
			spinning, spun = true, 0
		case <-ctx.Done():
			if !q.dropWaiter(w) {
				spinning = true // woken meanwhile: the loop's ctx check hands the wake-up on
			}
		}
		q.spare.Put(w)
	}
}

// removeWaiter takes w out of the waiters if it is there. Called with mu held.
func (q *Memory) removeWaiter(w *waiter) bool {
	for i, x := range q.waiters {
		if x == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			q.nparked.Add(-1)
			return true
		}
	}
	return false
}

// dropWaiter removes w from the waiters. If it was woken meanwhile (it counts as spinning), it
// consumes the wake-up and returns false.
func (q *Memory) dropWaiter(w *waiter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.removeWaiter(w) {
		return true
	}
	<-w.ch // sent under mu by whoever removed w
	return false
}

// bury moves a live entry that is in no heap to the dead letters. Called with mu held.
func (q *Memory) bury(e *entry, reason string, now int64) Change {
	q.forget(e, now)
	rec := q.record(e)
	q.dead = append(q.dead, deadItem(rec, reason, q.time(now)))
	rec.Dead, rec.Reason, rec.Deadline = true, reason, time.Time{}
	q.cfg.logger.Info("item buried", zap.Uint64("id", rec.ID), zap.Int("attempts", rec.Attempt), zap.String("reason", reason))
	return Change{Op: OpBury, Record: rec}
}

// held finds the entry a lease token names, if the lease is current (with a zero now, a lease whose
// deadline passed still counts until advance notices). Called with mu held.
func (q *Memory) held(lease string, now int64) (*entry, error) {
	id, attempt, err := ParseLease(lease)
	if err != nil {
		return nil, err
	}
	return q.heldID(id, attempt, now)
}

func (q *Memory) heldID(id uint64, attempt int, now int64) (*entry, error) {
	e := q.leasedM.get(id)
	if e == nil || e.attempt != attempt || (now != 0 && now >= e.deadline) {
		return nil, ErrLeaseLost
	}
	return e, nil
}

// Ack implements Queue. It reads no clock: a lease whose deadline has passed can still be acked
// until the queue has handed the item out again (the work was done, so that is harmless); after
// that the old token gets ErrLeaseLost.
func (q *Memory) Ack(ctx context.Context, lease string) error {
	id, attempt, err := ParseLease(lease)
	if err != nil {
		return err
	}
	q.mu.Lock()
	e, err := q.ackLocked(id, attempt)
	q.checkDrained()
	if err == nil {
		q.recycleLocked(e)
	}
	q.mu.Unlock()
	if err != nil {
		return err
	}
	if q.cfg.journal == nil {
		return nil
	}
	return q.commit(Change{Op: OpDelete, Record: Record{ID: id}})
}

// AckBatch implements Batcher: one lock acks every lease of leases (and one journal commit).
func (q *Memory) AckBatch(ctx context.Context, leases []string) error {
	var errs []error
	var changes []Change
	q.mu.Lock()
	for i, lease := range leases {
		id, attempt, err := ParseLease(lease)
		if err == nil {
			var e *entry
			if e, err = q.ackLocked(id, attempt); err == nil {
				q.recycleLocked(e)
				if q.cfg.journal != nil {
					changes = append(changes, Change{Op: OpDelete, Record: Record{ID: id}})
				}
				continue
			}
		}
		if errs == nil {
			errs = make([]error, len(leases))
		}
		errs[i] = err
	}
	q.checkDrained()
	q.mu.Unlock()
	if err := q.commit(changes...); err != nil {
		if errs == nil {
			errs = make([]error, len(leases))
		}
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	return batchError(errs)
}

// ackLocked ends the lease attempt of item id and forgets the item; the caller recycles the entry
// once it no longer needs it. Called with mu held.
func (q *Memory) ackLocked(id uint64, attempt int) (*entry, error) {
	e, err := q.heldID(id, attempt, 0)
	if err != nil {
		return nil, err
	}
	q.unleaseLocked(e)
	q.forget(e, 0)
	return e, nil
}

// Nack implements Queue.
func (q *Memory) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if delay < 0 {
		return fmt.Errorf("%w: negative delay %v", ErrInvalid, delay)
	}
	now := q.clock()
	q.mu.Lock()
	e, err := q.held(lease, now)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	q.unleaseLocked(e)
	e.notBefore = 0
	if delay > 0 {
		e.notBefore = now + int64(delay)
	}
	if q.cfg.journal != nil {
		e.state = stHeld
		q.nheld++
		rec := q.record(e)
		q.mu.Unlock()
		err := q.commit(Change{Op: OpPut, Record: rec})
		q.mu.Lock()
		q.nheld--
		// On a failed commit the item still becomes ready: the journal holds its older state.
		q.makeVisible(e, q.clock())
		q.checkDrained()
		q.mu.Unlock()
		return err
	}
	q.makeVisible(e, now)
	q.checkDrained()
	q.mu.Unlock()
	return nil
}

// Extend implements Queue. The new deadline is not journaled: after a crash the lease runs to its
// last journaled deadline, which can only make the item come back earlier.
func (q *Memory) Extend(ctx context.Context, lease string) (time.Time, error) {
	now := q.clock()
	q.mu.Lock()
	defer q.mu.Unlock()
	e, err := q.held(lease, now)
	if err != nil {
		return time.Time{}, err
	}
	q.leased.remove(e)
	e.deadline = now + int64(q.cfg.lease)
	q.leased.insert(e)
	return q.time(e.deadline), nil
}

// Bury implements Queue.
func (q *Memory) Bury(ctx context.Context, lease string, reason string) error {
	now := q.clock()
	q.mu.Lock()
	e, err := q.held(lease, now)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	q.unleaseLocked(e)
	ch := q.bury(e, reason, now)
	q.checkDrained()
	q.mu.Unlock()
	if q.cfg.journal == nil {
		return nil
	}
	return q.commit(ch)
}

// Dead implements Queue.
func (q *Memory) Dead(ctx context.Context, max int) ([]DeadItem, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.dead)
	if max >= 0 && max < n {
		n = max
	}
	return append([]DeadItem(nil), q.dead[:n]...), nil
}

// Stats implements Queue.
func (q *Memory) Stats(ctx context.Context) (Stats, error) {
	now := q.clock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.drainLocked()
		q.advance(now)
		if q.ready.len() > 0 {
			q.wakeLocked()
		}
	}
	r, l := int64(q.ready.len()), int64(q.leased.n)
	return Stats{Ready: r, Leased: l, Delayed: int64(q.live) - r - l, Dead: int64(len(q.dead))}, nil
}

// Close stops the queue at once: Add and Lease return ErrClosed (blocked Leases too). Leases already
// handed out may still be acked, nacked, extended or buried. Idempotent.
func (q *Memory) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closeLocked()
	return nil
}

func (q *Memory) closeLocked() {
	if q.closed {
		return
	}
	q.closed = true
	q.isClosed.Store(true)
	if q.evTimer != nil {
		q.evTimer.Stop()
	}
	for _, w := range q.waiters {
		q.spinning.Add(1)
		w.ch <- struct{}{}
	}
	q.waiters = nil
	q.nparked.Store(0)
}

// Shutdown is client-go's ShutDownWithDrain: it closes the queue for Add and Lease and waits until
// every lease handed out has ended (acked, nacked, buried or expired), or ctx ends (ctx.Err()).
func (q *Memory) Shutdown(ctx context.Context) error {
	for {
		now := q.clock()
		q.mu.Lock()
		q.closeLocked()
		q.advance(now)
		if q.leased.n == 0 && q.nheld == 0 {
			q.mu.Unlock()
			return nil
		}
		if q.drainCh == nil {
			q.drainCh = make(chan struct{})
		}
		ch, next := q.drainCh, q.nextEvent()
		q.mu.Unlock()
		var t *time.Timer
		var tc <-chan time.Time
		if next != 0 {
			t = time.NewTimer(time.Duration(next - now))
			tc = t.C
		}
		var err error
		select {
		case <-ch:
		case <-tc:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if t != nil {
			t.Stop()
		}
		if err != nil {
			return err
		}
	}
}

// Statusz reports the queue's counts for a status page.
func (q *Memory) Statusz() (title string, header []string, rows [][]string) {
	s, _ := q.Stats(context.Background())
	return "workqueue (memory)", []string{"key", "value"}, statsRows(s)
}

func statsRows(s Stats) [][]string {
	f := func(n int64) string { return strconv.FormatInt(n, 10) }
	return [][]string{{"ready", f(s.Ready)}, {"delayed", f(s.Delayed)}, {"leased", f(s.Leased)}, {"dead", f(s.Dead)}}
}
