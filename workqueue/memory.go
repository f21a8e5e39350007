package workqueue

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
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
	next      *entry // free list
	idx       int32  // index in the delayed heap; position in the lease ring
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

// maxFree bounds the entries an idle queue keeps for reuse (about 1 MiB), over all its shards.
const maxFree = 4096

// push is the hot-path Add without mu: under inMu, which only Adds take, it gives the item the next
// ID and appends it to the fast lane (by value: it gets an entry only when it leaves the lane). It
// returns the ID and the item's index in the lane; ok is false, and nothing is added, if the lane
// holds items of another priority (the caller takes the slow path then).
func (q *Memory) push(payload []byte, prio int) (id string, idx uint64, ok bool) {
	l := &q.lane
	q.inMu.Lock()
	if int64(prio) != l.prio.Load() {
		if !l.empty() {
			q.inMu.Unlock()
			return "", 0, false
		}
		l.prio.Store(int64(prio))
	}
	q.seq++
	n := q.seq
	name := q.names.format(n)
	idx = l.put(n, prio, name, q.names.cur, payload)
	q.inMu.Unlock()
	return name[:len(name)-2], idx, true
}

// nameChunk is the size of the byte arrays the hot-path Adds cut the names of their items from.
const nameChunk = 512

// maxNameLen is the longest name: the digits of a uint64 and ".1".
const maxNameLen = 20 + 2

// nameCopy is how many bytes nameArena.format writes for a name: the name and room to spare, in
// one copy of a fixed size (a copy of the name's own length was a call to memmove).
const nameCopy = 24

// minChunkNames is how many names an array of nameChunk bytes holds at least (see segChunks):
// format cuts names from it while nameCopy bytes are left.
const minChunkNames = (nameChunk-nameCopy)/maxNameLen + 1

// nameArena makes the names ("<id>.1") of the hot-path Adds' items: it cuts them from shared
// arrays of nameChunk bytes instead of allocating each, so that an Add allocates nothing but its
// share of an array and of a lane segment. The arrays hold no pointers: the garbage collector does not
// scan them. A byte of an array is written only before a string holds it (format writes past the
// end of a name, where the next one goes), never after. The cost: a string kept (an ID, a lease
// token) keeps its whole array alive.
type nameArena struct {
	cur  *[nameChunk]byte // the array the last name was cut from
	buf  []byte           // the rest of cur (len 0)
	last uint64           // the ID of the last name made
	dig  [nameCopy]byte   // the last name: its digits dig[:nd], then ".1"
	nd   int
}

// format returns FormatLease(id, 1), cut from a.cur. The hot-path Adds' IDs mostly follow each
// other, so it counts the last ID's digits up by one instead of formatting each (the divisions
// were a tenth of an Add).
func (a *nameArena) format(id uint64) string {
	if cap(a.buf) < nameCopy {
		a.cur = new([nameChunk]byte)
		a.buf = a.cur[:0]
	}
	dst := (*[nameCopy]byte)(a.buf[:nameCopy])
	if id == a.last+1 && a.nd > 0 {
		// Copy the last name first and count up both copies after: the copy's wide loads of
		// bytes that this call had just stored one by one could not be forwarded from the store
		// buffer, a stall of every Add. dig's stores are a call old when the next one copies.
		*dst = a.dig
		countUp(dst, a.nd)
		a.nd = countUp(&a.dig, a.nd)
	} else {
		a.nd = len(strconv.AppendUint(a.dig[:0], id, 10))
		a.dig[a.nd], a.dig[a.nd+1] = '.', '1'
		*dst = a.dig
	}
	a.last = id
	n := a.nd + 2
	name := unsafe.String(unsafe.SliceData(a.buf), n)
	a.buf = a.buf[n:n]
	return name
}

// countUp adds one to the decimal number in d[:nd], which ".1" follows, and returns its new
// number of digits.
func countUp(d *[nameCopy]byte, nd int) int {
	i := nd - 1
	for i >= 0 && d[i] == '9' {
		d[i] = '0'
		i--
	}
	if i >= 0 {
		d[i]++
		return nd
	}
	// 99...9 + 1: one digit more
	d[nd] = '0'
	d[0] = '1'
	nd++
	d[nd], d[nd+1] = '.', '1'
	return nd
}

// keyState orders the live items of one key: q[0] is the one whose turn it is.
type keyState struct{ q []*entry }

// Memory is the in-process queue: client-go's workqueue semantics (one key is never leased twice at
// once; an add while its key is leased is kept and runs after the ack; delayed adds; Shutdown drains)
// plus priorities, leases that expire, a ctx-cancellable Lease, and dead letters. With WithJournal it
// is the engine of workqueue/bolt.
//
// The hot path (a keyless Add without delay, Lease or LeaseBatch, Ack or AckBatch) is built for
// many items per second and takes no lock that all workers share. Such an Add appends to the fast
// lane under a lock of the Adds' own (see fastLane), by value: the item has no entry while it waits
// there, and the ID, which is also the first lease's token, is cut from a shared byte array (see
// nameArena). A Lease claims the lane's oldest item with one compare-and-swap when nothing else can
// come first (no item in the ready lanes: the lane is blocked then; no delay due, no lease expired:
// two atomic reads), and records its lease in the item's leaseShard, under that shard's lock only,
// on an entry of an item acked there before (or a new one); an Ack of a keyless item takes only
// that lock too and leaves the entry there. Everything else (keys, delays, nacks, expiries,
// priorities other than the lane's, journals) goes through mu and the ready lanes, and whatever
// puts an item into the ready lanes first moves the fast lane there, so that add order holds.
// Leases are kept per shard in deadline order in a list (a lease's deadline is now plus a fixed
// duration, so it goes at the tail); leaseMin is a lower bound of all their deadlines, so that
// Leases look for expired ones only when one may be due. A Lease that finds nothing spins (yielding)
// for a few microseconds before it parks; an Add wakes a parked Lease only when all items before
// its own have been taken and no Lease is spinning, and a Lease that leaves items behind wakes the
// next, so a steady flow of items needs few wake-ups. Lease hands out Items cut from blocks of
// itemBlock (one allocation per block).
//
// Memory use: the queue keeps every payload in RAM, live or dead. A live item (ready, delayed,
// leased or waiting for its key) holds its payload until it is acked; a dead letter (buried, or
// past WithMaxAttempts) keeps its payload in the dead list, and dead letters accumulate: nothing
// removes them (Dead only lists them; there is no call that deletes them), so a queue that buries
// items grows until it is closed. With a Journal (workqueue/bolt) the same holds across restarts:
// every record, live or dead, is read back into RAM.
type Memory struct {
	cfg       memConfig
	base      time.Time    // clock() is the monotonic time since: one clock read, not two
	spinners  int32        // how many Leases may spin at once (0 with GOMAXPROCS 1)
	spinning  atomic.Int32 // Leases looking for work that will see a new item without a wake-up
	nparked   atomic.Int32 // len(waiters)
	isClosed  atomic.Bool
	draining  atomic.Bool  // drainCh != nil: an Ack must check whether it ended the last lease
	leaseMin  atomic.Int64 // clock value at or before every lease's deadline; math.MaxInt64: none
	delayedAt atomic.Int64 // clock value when the first delayed item is due; math.MaxInt64: none
	evAt      atomic.Int64 // clock value when the event timer fires; 0: not armed (written under mu)

	// What an Add writes and what a Lease writes sit on separate cache lines, so that a producer
	// and the workers on other cores do not invalidate each other's lines.
	_    [64]byte
	lane fastLane
	// inMu serializes the hot-path Adds (see push); it guards names and seq, the last ID given
	// (the slow path takes it for its IDs too: a plain counter costs an Add one locked
	// instruction less than an atomic one).
	inMu  sync.Mutex
	seq   uint64
	names nameArena
	_     [64]byte

	shards [nshards]leaseShard

	mu      sync.Mutex
	live    int // items in the ready lanes, delayed, waiting for their key, held or new (not leased)
	nheld   int // items in state stHeld
	ready   readyQueue
	delayed entryHeap
	keys    map[string]*keyState
	dead    []DeadItem
	scratch []*entry // drainLocked's and expireLocked's
	// laneScratch is drainLocked's: up to 4096 items claimed at once.
	laneScratch []laneItem
	waiters     []*waiter // parked Lease calls, FIFO
	// spare holds idle waiters. It is per queue, not global: a waiter's channel belongs to the
	// goroutines that made it (a testing/synctest bubble, say), like the queue itself.
	spare   sync.Pool
	drainCh chan struct{} // closed when the last lease ends while Shutdown waits
	evTimer *time.Timer   // fires at evAt to run advance (due delays, expired leases) for waiters
	closed  bool
	// run is random, this queue's: the HTTP API ends its lease tokens with it, so that a server's
	// next run (a new Memory, numbering items from 1 again) refuses a token of this one.
	run uint64

	// For the metrics, which read them at scrape time (see counts): seq as NewMemory left it, and
	// the leases that expired (under mu; expireLocked counts them, off the hot path).
	seq0    uint64
	expired uint64
	// metricsReg is the registerer the metrics are registered with until Close (under mu).
	metricsReg prometheus.Registerer
	metrics    prometheus.Collector
}

// shard is the leaseShard of item id.
func (q *Memory) shard(id uint64) *leaseShard { return &q.shards[id&(nshards-1)] }

// lowerLeaseMin makes leaseMin at most d.
func (q *Memory) lowerLeaseMin(d int64) {
	for {
		m := q.leaseMin.Load()
		if d >= m || q.leaseMin.CompareAndSwap(m, d) {
			return
		}
	}
}

// leasedCount is how many items are leased.
func (q *Memory) leasedCount() int64 {
	var n int64
	for i := range q.shards {
		n += int64(q.shards[i].leased())
	}
	return n
}

var _ Batcher = (*Memory)(nil)

// maxLease is the longest lease, about 146 years (half of what time.Duration holds): a longer
// WithLeaseDuration is taken as it, a lease that never runs out in practice.
const maxLease = math.MaxInt64 / 2

// spinRounds is how many times a spinning Lease yields before it parks (some microseconds).
const spinRounds = 64

// NewMemory returns an empty queue (or one recovered from WithJournal's records). With
// WithRegisterer it registers the queue's metrics, and returns the registerer's error if that fails.
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
	// A deadline is the clock plus the lease, and the clock starts at 0: capped, the sum cannot
	// overflow before the process has run for as long as maxLease.
	cfg.lease = min(cfg.lease, maxLease)
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
	q.run = rand.Uint64()
	q.leaseMin.Store(math.MaxInt64)
	q.delayedAt.Store(math.MaxInt64)
	q.lane.init()
	q.ready.fast = &q.lane
	q.seq = cfg.lastID
	q.spare.New = newWaiter
	q.recover(cfg.recovered)
	q.seq0 = q.seq
	if cfg.name != "" {
		q.cfg.logger = cfg.logger.With(zap.String("queue", cfg.name))
	}
	if cfg.reg != nil {
		c, err := register(cfg.reg, newMemoryCollector(q))
		if err != nil {
			return nil, registerErr(componentQueue, cfg.name, err)
		}
		q.metricsReg, q.metrics = cfg.reg, c
	}
	return q, nil
}

// counts are what the queue counted since NewMemory, for its metrics: the IDs it handed out and
// the leases that expired.
func (q *Memory) counts() (added, expired uint64) {
	q.inMu.Lock()
	added = q.seq - q.seq0
	q.inMu.Unlock()
	q.mu.Lock()
	expired = q.expired
	q.mu.Unlock()
	return added, expired
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

// clockOf converts a time to a clock value; the zero time is 0. It saturates as after does: a time
// too far ahead for the clock (a record's delay of hundreds of years) is math.MaxInt64, never due.
func (q *Memory) clockOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	d := t.Sub(q.base) // saturated by Sub itself
	if d == math.MaxInt64 {
		return math.MaxInt64
	}
	c := int64(d) + 1
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
	var live, leased []*entry
	for _, r := range recs {
		if r.ID > q.seq {
			q.seq = r.ID
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
			leased = append(leased, e)
			continue
		}
		q.live++
		e.deadline = 0
		e.state = stNew
	}
	// In deadline order, as each shard keeps them.
	sort.SliceStable(leased, func(i, j int) bool { return leased[i].deadline < leased[j].deadline })
	for _, e := range leased {
		q.shard(e.id).insert(e)
		q.lowerLeaseMin(e.deadline)
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

// drainLocked moves the fast lane into the ready lanes, oldest first, so that what the caller puts
// there next comes after it. It claims the lane's items at once and touches no entry: an entry of
// the lane is marked ready when it is added, and the lane holds one priority. Called with mu held.
func (q *Memory) drainLocked() {
	if !q.lane.nonEmpty() {
		return
	}
	// Block Leases without the lock before claiming: between the claim and the push below, one
	// could otherwise claim an item added after these and hand it out before them. The push keeps
	// the lane blocked (see readyQueue.count); nothing else can have unblocked it, as mu is held.
	q.lane.head.Or(laneBlocked)
	li := q.laneScratch
	for {
		li = q.lane.claimN(4096, li[:0], true)
		if len(li) == 0 {
			break
		}
		if testHookDrainClaimed != nil {
			testHookDrainClaimed()
		}
		s := q.scratch[:0]
		for i := range li {
			s = append(s, laneEntry(&li[i]))
		}
		q.live += len(s)
		q.ready.pushAll(s[0].prio, s)
		clear(s)
		q.scratch = s
		clear(li)
	}
	q.laneScratch = li
	if q.ready.len() == 0 {
		q.lane.head.And(^laneBlocked) // nothing was pushed after all
	}
}

// laneEntry makes a ready entry for an item out of the fast lane.
func laneEntry(li *laneItem) *entry {
	e := &entry{idx: -1}
	e.fromLane(li)
	return e
}

// fromLane makes the recycled (zero) entry e the entry of an item out of the fast lane.
func (e *entry) fromLane(li *laneItem) { e.setLane(li.id, li.prio, li.name, li.payload) }

// setLane is fromLane with the item's fields (see laneSeg.takeParts).
func (e *entry) setLane(id uint64, prio int, name string, payload []byte) {
	e.id, e.name, e.prio, e.state = id, name, prio, stReady
	if payload != nil { // e's is nil: no pointer write (and write barrier) for none
		e.payload = payload
	}
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
		q.syncDelayed()
		q.armLocked(now)
		return
	}
	q.toReady(e)
}

// syncDelayed publishes when the first delayed item is due. Called with mu held.
func (q *Memory) syncDelayed() {
	at := int64(math.MaxInt64)
	if e := q.delayed.top(); e != nil {
		at = e.notBefore
	}
	q.delayedAt.Store(at)
}

// toReady queues e after the fast lane's items and makes sure a Lease will look for it. Called
// with mu held.
func (q *Memory) toReady(e *entry) {
	q.drainLocked()
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
	return q.ready.n.Load() > 0 || q.lane.nonEmpty()
}

// wakeIfIdle wakes a parked Lease if items are available, some Lease is parked and none spins:
// what a Lease that leaves items behind, or stops spinning without one, does to hand the search on.
func (q *Memory) wakeIfIdle() {
	if q.nparked.Load() > 0 && q.spinning.Load() == 0 && q.available() {
		q.mu.Lock()
		if q.available() {
			q.wakeLocked()
		}
		q.mu.Unlock()
	}
}

// stopSpinning uncounts a spinning Lease that leaves without an item, and hands its search on.
func (q *Memory) stopSpinning() {
	q.spinning.Add(-1)
	q.wakeIfIdle()
}

// leaseEntry leases e, which the caller took out of every structure, and copies it out to it (or,
// if it is nil, to a new Item from the shard's block), which it returns. The Item is complete
// before the lease is in its shard: from then on the lease can expire, the item be leased and acked
// by another Lease, and the entry be recycled for a new item. The caller arms the event timer.
func (q *Memory) leaseEntry(e *entry, now int64, it *Item) *Item {
	s := q.shard(e.id)
	s.mu.Lock()
	if it == nil {
		it = s.item()
	}
	q.copyOut(e, now, it)
	s.insert(e)
	s.mu.Unlock()
	q.lowerLeaseMin(now + int64(q.cfg.lease)) // e.deadline, which e may no longer hold now
	return it
}

// leaseLane leases the item of slot k of seg, which the caller claimed from the fast lane, on an
// entry from its shard's free list, and copies it out to it (or, if it is nil, to a new Item from
// the shard's block), which it returns; as leaseEntry.
func (q *Memory) leaseLane(seg *laneSeg, k uint64, now int64, it *Item) *Item {
	id, prio, name, payload := seg.takeParts(k)
	s := q.shard(id)
	s.mu.Lock()
	if it == nil {
		it = s.item()
	}
	e := s.entry()
	e.setLane(id, prio, name, payload)
	q.copyOut(e, now, it)
	s.insert(e)
	s.mu.Unlock()
	q.lowerLeaseMin(now + int64(q.cfg.lease)) // e.deadline, which e may no longer hold now
	return it
}

// copyOut starts e's lease attempt at now and copies the item out to it.
func (q *Memory) copyOut(e *entry, now int64, it *Item) {
	e.attempt++
	e.deadline = now + int64(q.cfg.lease)
	e.state = stLeased
	tok := e.name
	if e.attempt != 1 {
		tok = FormatLease(e.id, e.attempt)
	}
	// Field by field, and the key and payload only when either side has one: a fresh Item is
	// zero, and while the garbage collector marks, every pointer written costs a write barrier (a
	// struct copy puts all of an Item's through the bulk barrier).
	it.ID = e.ids()
	if e.key != "" || it.Key != "" {
		it.Key = e.key
	}
	if e.payload != nil || it.Payload != nil {
		it.Payload = e.payload
	}
	it.Priority, it.Attempt = e.prio, e.attempt
	it.Lease = tok
	it.Deadline = q.time(e.deadline)
}

// leaseLanes is leaseLane for up to 64 items into dst[:len(lis)]: it takes each shard's lock once.
func (q *Memory) leaseLanes(lis []laneItem, now int64, dst []Item) {
	var done uint64 // bit i: lis[i] is leased
	for i := range lis {
		if done&(1<<i) != 0 {
			continue
		}
		sh := lis[i].id & (nshards - 1)
		s := &q.shards[sh]
		s.mu.Lock()
		for j := i; j < len(lis); j++ {
			if done&(1<<j) == 0 && lis[j].id&(nshards-1) == sh {
				e := s.entry()
				e.fromLane(&lis[j])
				q.copyOut(e, now, &dst[j])
				s.insert(e)
				done |= 1 << j
			}
		}
		s.mu.Unlock()
	}
	q.lowerLeaseMin(now + int64(q.cfg.lease))
}

// armLocked makes the event timer fire by the next timed event (a delayed item coming due or a
// lease expiring) while Leases are parked, so that they need no timers of their own. The timer is
// re-armed only when the next event moves earlier. Called with mu held.
func (q *Memory) armLocked(now int64) {
	if len(q.waiters) == 0 || q.closed {
		return
	}
	next := q.nextEvent()
	if ev := q.evAt.Load(); next == 0 || (ev != 0 && next >= ev) {
		return
	}
	if now == 0 {
		now = q.clock()
	}
	q.evAt.Store(next)
	if q.evTimer == nil {
		q.evTimer = time.AfterFunc(time.Duration(next-now), q.onEvent)
	} else {
		q.evTimer.Reset(time.Duration(next - now))
	}
}

func (q *Memory) onEvent() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.evAt.Store(0)
	if q.closed {
		return
	}
	now := q.clock()
	q.advance(now)
	q.armLocked(now)
}

// forget hands the key's turn of an entry that is in no heap and no shard on, as its item leaves
// for good (acked or buried). Called with mu held.
func (q *Memory) forget(e *entry, now int64) {
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

// takeLeased ends the lease with this id and attempt if it is current (see leaseShard.held) and
// returns its entry, out of its shard. Called with mu held (or, for keyless items, without).
func (q *Memory) takeLeased(id uint64, attempt int, now int64) (*entry, error) {
	s := q.shard(id)
	s.mu.Lock()
	e, err := s.held(id, attempt, now)
	if err == nil {
		s.unlease(e)
		e.deadline = 0
	}
	s.mu.Unlock()
	return e, err
}

// recycle keeps the entry of an acked item in its shard for a later Add.
func (q *Memory) recycle(e *entry) {
	s := q.shard(e.id)
	s.mu.Lock()
	s.recycle(e)
	s.mu.Unlock()
}

// advance moves due delayed items to ready and expired leases back to ready. Called with mu held.
func (q *Memory) advance(now int64) {
	if now >= q.delayedAt.Load() {
		for {
			e := q.delayed.top()
			if e == nil || e.notBefore > now {
				break
			}
			q.delayed.pop()
			q.toReady(e)
		}
		q.syncDelayed()
	}
	if now >= q.leaseMin.Load() {
		q.expireLocked(now)
	}
	q.checkDrained()
}

// expireLocked takes the leases whose deadline is not after now out of the shards and makes their
// items ready again, earliest deadline first, and sets leaseMin to the earliest deadline left.
// leaseMin is reset before the shards are read, so a lease recorded meanwhile lowers it after.
// Called with mu held.
func (q *Memory) expireLocked(now int64) {
	q.leaseMin.Store(math.MaxInt64)
	exp := q.scratch[:0]
	first := int64(math.MaxInt64)
	for i := range q.shards {
		s := &q.shards[i]
		s.mu.Lock()
		for r := s.ring.first(); r != nil && r.deadline <= now; r = s.ring.first() {
			e := r.e
			s.unlease(e)
			exp = append(exp, e)
		}
		if r := s.ring.first(); r != nil && r.deadline < first {
			first = r.deadline
		}
		s.mu.Unlock()
	}
	q.lowerLeaseMin(first)
	if len(exp) > 1 {
		sort.Slice(exp, func(i, j int) bool {
			a, b := exp[i], exp[j]
			return a.deadline < b.deadline || (a.deadline == b.deadline && a.id < b.id)
		})
	}
	q.scratch = nil // toReady drains the fast lane into q.scratch
	q.expired += uint64(len(exp))
	for _, e := range exp {
		e.deadline = 0
		q.live++
		q.toReady(e)
		q.cfg.logger.Debug("lease expired", zap.Uint64("id", e.id), zap.Int("attempt", e.attempt))
	}
	clear(exp)
	if q.scratch == nil {
		q.scratch = exp
	}
}

func (q *Memory) checkDrained() {
	if q.drainCh != nil && q.nheld == 0 && q.leasedCount() == 0 {
		close(q.drainCh)
		q.drainCh = nil
		q.draining.Store(false)
	}
}

// nextEvent is when advance next has work (or may have: leaseMin is a lower bound), or zero.
// Called with mu held.
func (q *Memory) nextEvent() int64 {
	t := min(q.delayedAt.Load(), q.leaseMin.Load())
	if t == math.MaxInt64 {
		return 0
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

// Test hooks, nil outside tests: testHookLeased runs in Lease right after an item is leased (with
// mu held on the locked path), testHookUnlocked right before Lease returns it.
var testHookLeased, testHookUnlocked func()

// testHookFastChecked, nil outside tests, runs in a Lease between its decision to take the fast
// lane and its claim there.
var testHookFastChecked func()

// testHookDrainClaimed, nil outside tests, runs in drainLocked between its claim of the fast
// lane's items and their push into the ready lanes.
var testHookDrainClaimed func()

// Add implements Queue.
func (q *Memory) Add(ctx context.Context, payload []byte, opts AddOptions) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if opts.Delay < 0 {
		return "", fmt.Errorf("%w: negative delay %v", ErrInvalid, opts.Delay)
	}
	if opts.Key == "" && opts.Delay == 0 && q.cfg.journal == nil {
		// The hot path: no lock of the workers'; a Lease takes the item from the fast lane.
		if q.isClosed.Load() {
			return "", ErrClosed
		}
		if id, idx, ok := q.push(payload, opts.Priority); ok {
			// The item is in the queue now, also if it closed meanwhile (then it stays there, as an
			// item added before the close that no Lease took does, and Stats counts it; or a Lease
			// that looked before the close has it already): so it is added.
			// A Lease that takes an item and sees more wakes the next (wakeIfIdle), so only an
			// Add whose item is the first not taken decides whether to wake one. A Lease stops
			// counting as spinning before it looks, and a parking Lease looks at the lane after it
			// counts as parked: so either a Lease sees this item or this sees nobody looking and
			// wakes a parked one.
			if q.lane.claimed() >= idx {
				q.wakeIfIdle()
			}
			return id, nil
		}
		// The lane holds another priority: the slow path puts the item after them in order.
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
		e.notBefore = after(now, opts.Delay)
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
				if !q.hastenLocked(last, e.notBefore, now) {
					q.mu.Unlock()
					return id, nil
				}
				if err := q.commitHeldUnlock(last); err != nil {
					return "", err
				}
				return id, nil
			}
		} else {
			ks = &keyState{}
			q.keys[opts.Key] = ks
		}
	}
	q.inMu.Lock()
	q.seq++
	seq := q.seq
	q.inMu.Unlock()
	id := e.setID(seq)
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
			q.live--
			q.forget(e, now)
			q.mu.Unlock()
			return "", err
		}
	}
	q.makeVisible(e, now)
	q.mu.Unlock()
	return id, nil
}

// after is the clock value d after now, saturating: a delay too long for the clock never comes due.
func after(now int64, d time.Duration) int64 {
	if int64(d) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(d)
}

// hastenLocked applies an Add absorbed by e, a waiting item of the same key never leased: the item
// becomes ready no later than the absorbed add asked (notBefore, 0 for now), as if both adds had
// been kept and the earlier one had run. An add that would not bring it forward changes nothing (and
// writes nothing). A LazyJournal gets e's new record at once, in order with the leases that follow
// under mu. With any other journal, e leaves the delayed heap and hastenLocked returns true: the
// caller then calls commitHeldUnlock, still under mu, which holds it out of sight. Called with mu
// held.
func (q *Memory) hastenLocked(e *entry, notBefore, now int64) bool {
	if e.notBefore == 0 || notBefore != 0 && notBefore >= e.notBefore {
		return false
	}
	if e.state == stHeld {
		// Its commit is under way: it becomes visible by its notBefore as it is then. The journal
		// keeps the record being committed, so a crash loses only this hastening.
		e.notBefore = notBefore
		return false
	}
	if e.state != stDelayed && e.state != stParked {
		return false
	}
	e.notBefore = notBefore
	if q.cfg.journal != nil {
		if _, lazy := q.cfg.journal.(LazyJournal); !lazy {
			if e.state == stDelayed {
				q.delayed.remove(int(e.idx))
				q.syncDelayed()
			}
			return true
		}
	}
	if e.state == stDelayed {
		if notBefore <= now { // 0 (no delay) or due already
			q.delayed.remove(int(e.idx))
			q.syncDelayed()
			q.toReady(e)
		} else {
			q.delayed.up(int(e.idx))
			q.syncDelayed()
			q.armLocked(now) // after syncDelayed: it reads delayedAt
		}
	}
	if lj, ok := q.cfg.journal.(LazyJournal); ok {
		lj.CommitLater([]Change{{Op: OpPut, Record: q.record(e)}})
	}
	return false
}

// commitHeldUnlock holds e out of sight (stHeld, counted in nheld), commits its record without mu,
// then makes it visible and unlocks mu: no lease of it, and so no ack, can reach the journal before
// this put. On a failed commit the item still becomes visible: the journal holds its
// older state. Called with mu held; returns with it released.
func (q *Memory) commitHeldUnlock(e *entry) error {
	e.state = stHeld
	q.nheld++
	rec := q.record(e)
	q.mu.Unlock()
	err := q.commit(Change{Op: OpPut, Record: rec})
	q.mu.Lock()
	q.nheld--
	q.makeVisible(e, q.clock())
	q.checkDrained()
	q.mu.Unlock()
	return err
}

// Lease implements Queue.
func (q *Memory) Lease(ctx context.Context) (*Item, error) {
	_, it, err := q.lease(ctx, nil)
	return it, err
}

// itemBlock is how many Items one allocation of Lease's makes (see leaseShard.item).
const itemBlock = 4

// LeaseBatch implements Batcher: one clock read leases up to len(dst) ready items; from the fast
// lane, up to 64 with one claim and each shard's lock once; from the ready lanes, with mu once and
// each item's shard lock.
func (q *Memory) LeaseBatch(ctx context.Context, dst []Item) (int, error) {
	if len(dst) == 0 {
		return 0, errEmptyBatch
	}
	n, _, err := q.lease(ctx, dst)
	return n, err
}

// leaseFast is lease's path without mu: when nothing can come before the fast lane's items (no
// item in the ready lanes: the claim checks that, see fastLane; no delayed item due, no lease that
// may have expired), it claims up to max of them and leases them into dst, or one into an Item of
// a shard's block when dst is nil. It returns how many and the first; 0 when it did not find any
// (the caller takes the locked path).
func (q *Memory) leaseFast(now int64, dst []Item, max int) (int, *Item, error) {
	if now >= q.delayedAt.Load() || now >= q.leaseMin.Load() {
		return 0, nil, nil
	}
	if testHookFastChecked != nil {
		testHookFastChecked()
	}
	var first *Item
	n := 0
	if max == 1 {
		seg, k, ok := q.lane.claimSlot(false)
		if !ok {
			return 0, nil, nil
		}
		var it *Item
		if dst != nil {
			it = &dst[0]
		}
		first = q.leaseLane(seg, k, now, it)
		n = 1
	} else {
		var buf [64]laneItem
		lis := q.lane.claimN(min(max, len(buf)), buf[:0], false)
		if len(lis) == 0 {
			return 0, nil, nil
		}
		q.leaseLanes(lis, now, dst)
		first, n = &dst[0], len(lis)
	}
	if q.isClosed.Load() {
		// Closed meanwhile: Shutdown may have counted the leases before these were recorded, so
		// give the items back instead of handing them out.
		q.unleaseClosed(dst, first, n)
		return 0, nil, ErrClosed
	}
	if testHookLeased != nil {
		testHookLeased()
	}
	q.wakeIfIdle() // hand the search on
	if q.nparked.Load() > 0 {
		// Parked Leases wait for the timer: make it fire by these leases' deadline.
		if ev := q.evAt.Load(); ev == 0 || now+int64(q.cfg.lease) < ev {
			q.mu.Lock()
			q.armLocked(now)
			q.mu.Unlock()
		}
	}
	if testHookUnlocked != nil {
		testHookUnlocked()
	}
	return n, first, nil
}

// unleaseClosed gives back the n items leaseFast leased (into dst, or first when dst is nil) once
// the queue closed: they go back to the ready lanes as they were before the lease.
func (q *Memory) unleaseClosed(dst []Item, first *Item, n int) {
	q.mu.Lock()
	for i := range n {
		it := first
		if dst != nil {
			it = &dst[i]
		}
		id, attempt, err := ParseLease(it.Lease)
		if err != nil {
			continue
		}
		e, err := q.takeLeased(id, attempt, 0)
		if err != nil {
			continue // expired and made ready meanwhile
		}
		e.attempt--
		q.live++
		e.state = stReady
		q.ready.push(e)
	}
	q.checkDrained()
	q.mu.Unlock()
}

// popLocked takes the next item in order: the ready lanes' first unless the fast lane's priority is
// higher (at the same priority the ready lanes' items came first: whatever put them there moved the
// fast lane there first). Called with mu held.
func (q *Memory) popLocked() *entry {
	if q.ready.len() > 0 && (!q.lane.nonEmpty() || int64(q.ready.topPrio()) >= q.lane.prio.Load()) {
		q.live--
		return q.ready.pop()
	}
	if li, ok := q.lane.claim(true); ok {
		return laneEntry(&li)
	}
	if q.ready.len() > 0 { // a Lease without mu took the lane's items meanwhile
		q.live--
		return q.ready.pop()
	}
	return nil
}

// lease is LeaseBatch, and Lease when dst is nil: it leases up to len(dst) > 0 items into dst,
// or one into an Item of a shard's block, and returns how many and the first.
//
// Wake-ups: an Add of the hot path wakes a parked Lease only when no Lease counts as spinning, so a
// Lease that counts stops counting every time before it looks: an Add that saw it counted published
// its item before that, and the Lease finds it; an Add after that sees no spinner (or another one,
// which will look again) and wakes a parked Lease itself.
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
		if spinning {
			spinning = false
			q.spinning.Add(-1)
		}
		if q.isClosed.Load() {
			return 0, nil, ErrClosed
		}
		now := q.clock()
		if n, first, err := q.leaseFast(now, dst, max); n > 0 || err != nil {
			return n, first, err
		}
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return 0, nil, ErrClosed
		}
		q.advance(now)
		var changes []Change // buried items first, then the leases (with a journal)
		var first *Item
		n := 0
		for n < max {
			e := q.popLocked()
			if e == nil {
				break
			}
			if q.cfg.maxAttempts > 0 && e.attempt >= q.cfg.maxAttempts {
				changes = append(changes, q.bury(e, fmt.Sprintf("max attempts (%d) used", q.cfg.maxAttempts), now))
				continue
			}
			var it *Item
			if dst != nil {
				it = &dst[n]
			}
			it = q.leaseEntry(e, now, it)
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
			if q.available() {
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
		if q.lane.nonEmpty() { // an Add that saw no parked Lease did not wake anyone
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

// bury moves an entry that is in no heap and no shard to the dead letters. Called with mu held.
func (q *Memory) bury(e *entry, reason string, now int64) Change {
	q.forget(e, now)
	rec := q.record(e)
	q.dead = append(q.dead, deadItem(rec, reason, q.time(now)))
	rec.Dead, rec.Reason, rec.Deadline = true, reason, time.Time{}
	q.cfg.logger.Info("item buried", zap.Uint64("id", rec.ID), zap.Int("attempts", rec.Attempt), zap.String("reason", reason))
	return Change{Op: OpBury, Record: rec}
}

// Ack implements Queue. It reads no clock: a lease whose deadline has passed can still be acked
// until the queue has handed the item out again (the work was done, so that is harmless); after
// that the old token gets ErrLeaseLost. A keyless item's Ack takes only its shard's lock.
func (q *Memory) Ack(ctx context.Context, lease string) error {
	id, attempt, err := ParseLease(lease)
	if err != nil {
		return err
	}
	if err := q.ack(id, attempt); err != nil {
		return err
	}
	if q.cfg.journal == nil {
		return nil
	}
	return q.commit(Change{Op: OpDelete, Record: Record{ID: id}})
}

// ack ends the lease attempt of item id, forgets the item and recycles its entry.
func (q *Memory) ack(id uint64, attempt int) error {
	s := q.shard(id)
	s.mu.Lock()
	e, err := s.held(id, attempt, 0)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if e.key == "" {
		s.unlease(e)
		s.recycle(e)
		s.mu.Unlock()
		if q.draining.Load() {
			q.mu.Lock()
			q.checkDrained()
			q.mu.Unlock()
		}
		return nil
	}
	// A key's turn passes under mu, which comes before a shard's lock.
	s.mu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	e, err = q.takeLeased(id, attempt, 0)
	if err != nil {
		return err
	}
	q.forget(e, 0)
	q.recycle(e)
	q.checkDrained()
	return nil
}

// AckBatch implements Batcher: it acks every lease of leases, taking the lock of each shard once
// per 64 leases (and mu for keyed items), and makes one journal commit.
func (q *Memory) AckBatch(ctx context.Context, leases []string) error {
	var errs []error
	setErr := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(leases))
		}
		errs[i] = err
	}
	var changes []Change
	acked := func(id uint64) {
		if q.cfg.journal != nil {
			changes = append(changes, Change{Op: OpDelete, Record: Record{ID: id}})
		}
	}
	var ids [64]uint64
	var attempts [64]int
	for base := 0; base < len(leases); base += len(ids) {
		part := leases[base:min(base+len(ids), len(leases))]
		var todo uint64 // bit i: part[i] parsed, not yet acked
		for i, l := range part {
			id, attempt, err := ParseLease(l)
			if err != nil {
				setErr(base+i, err)
				continue
			}
			ids[i], attempts[i] = id, attempt
			todo |= 1 << i
		}
		for todo != 0 {
			i := bits.TrailingZeros64(todo)
			sh := ids[i] & (nshards - 1)
			s := &q.shards[sh]
			var keyed uint64
			s.mu.Lock()
			for j := i; j < len(part); j++ {
				if todo&(1<<j) == 0 || ids[j]&(nshards-1) != sh {
					continue
				}
				todo &^= 1 << j
				e, err := s.held(ids[j], attempts[j], 0)
				switch {
				case err != nil:
					setErr(base+j, err)
				case e.key != "":
					keyed |= 1 << j
				default:
					s.unlease(e)
					s.recycle(e)
					acked(ids[j])
				}
			}
			s.mu.Unlock()
			for keyed != 0 {
				j := bits.TrailingZeros64(keyed)
				keyed &^= 1 << j
				if err := q.ack(ids[j], attempts[j]); err != nil {
					setErr(base+j, err)
				} else {
					acked(ids[j])
				}
			}
		}
	}
	if q.draining.Load() {
		q.mu.Lock()
		q.checkDrained()
		q.mu.Unlock()
	}
	if err := q.commit(changes...); err != nil {
		for i := range leases {
			if errs == nil || errs[i] == nil {
				setErr(i, err)
			}
		}
	}
	return batchError(errs)
}

// heldLocked ends the lease a token names if it is current, for Nack and Bury. Called with mu held.
func (q *Memory) heldLocked(lease string, now int64) (*entry, error) {
	id, attempt, err := ParseLease(lease)
	if err != nil {
		return nil, err
	}
	return q.takeLeased(id, attempt, now)
}

// Nack implements Queue.
func (q *Memory) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if delay < 0 {
		return fmt.Errorf("%w: negative delay %v", ErrInvalid, delay)
	}
	return q.giveBack(lease, delay, false)
}

// Release gives a lease back as if it had not been made: the item is ready again at once and the
// lease's attempt is not counted, so the next lease has the same attempt number and lease token.
// It is for a lease whose item nobody worked on, or whose work was abandoned rather than failed,
// given back by the only holder of its token (the HTTP API for a client that was gone before the
// answer reached it, a stopping Join for the items at its barrier, a Pool's drain for the items its
// budget cut off); a worker that tried the item and failed uses Nack.
func (q *Memory) Release(ctx context.Context, lease string) error {
	return q.giveBack(lease, 0, true)
}

// giveBack ends a lease and makes the item ready after delay, uncounting the attempt for Release.
func (q *Memory) giveBack(lease string, delay time.Duration, uncount bool) error {
	now := q.clock()
	q.mu.Lock()
	e, err := q.heldLocked(lease, now)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	if uncount {
		e.attempt--
	}
	q.live++
	e.notBefore = 0
	if delay > 0 {
		e.notBefore = after(now, delay)
	}
	if q.cfg.journal != nil {
		return q.commitHeldUnlock(e)
	}
	q.makeVisible(e, now)
	q.checkDrained()
	q.mu.Unlock()
	return nil
}

// Extend implements Queue. It takes only the lease's shard's lock. A LazyJournal gets the new
// deadline (OpExtend) with its next commit, so that after a crash a holder that kept extending its
// lease can go on; another Journal does not, and after a crash the lease runs to its last journaled
// deadline, which can only make the item come back earlier.
func (q *Memory) Extend(ctx context.Context, lease string) (time.Time, error) {
	id, attempt, err := ParseLease(lease)
	if err != nil {
		return time.Time{}, err
	}
	now := q.clock()
	s := q.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.held(id, attempt, now)
	if err != nil {
		return time.Time{}, err
	}
	s.unlease(e)
	e.deadline = now + int64(q.cfg.lease)
	s.insert(e)
	q.lowerLeaseMin(e.deadline)
	if lj, ok := q.cfg.journal.(LazyJournal); ok {
		// Under the shard's lock, so that it goes into the journal before the delete of an Ack
		// that ends this lease (an Ack takes the lock, then commits).
		lj.CommitLater([]Change{{Op: OpExtend, Record: q.record(e)}})
	}
	return q.time(e.deadline), nil
}

// Bury implements Queue.
func (q *Memory) Bury(ctx context.Context, lease string, reason string) error {
	now := q.clock()
	q.mu.Lock()
	e, err := q.heldLocked(lease, now)
	if err != nil {
		q.mu.Unlock()
		return err
	}
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

// Stats implements Queue. After Close, or once a Shutdown has begun, it returns ErrClosed: the
// items a closed queue still holds are in no queue anyone can lease from, so a scrape of a Pool's
// depth over it leaves them out (and the queue's own metrics are unregistered as it closes).
func (q *Memory) Stats(ctx context.Context) (Stats, error) {
	now := q.clock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return Stats{}, ErrClosed
	}
	q.advance(now)
	if q.available() {
		q.wakeLocked()
	}
	return q.statsLocked(), nil
}

// statsLocked counts the items the queue holds, by state, open or closed. Called with mu held.
func (q *Memory) statsLocked() Stats {
	r := int64(q.ready.len())
	q.inMu.Lock()
	inLane := int64(q.lane.n) - int64(q.lane.claimed())
	q.inMu.Unlock()
	return Stats{Ready: r + max(inLane, 0), Leased: q.leasedCount(), Delayed: int64(q.live) - r, Dead: int64(len(q.dead))}
}

// Close stops the queue at once: Add and Lease return ErrClosed (blocked Leases too). Leases already
// handed out may still be acked, nacked, extended or buried. It unregisters the queue's metrics
// (see WithRegisterer). Idempotent.
func (q *Memory) Close() error {
	q.mu.Lock()
	q.closeLocked()
	q.mu.Unlock()
	q.unregister()
	return nil
}

// unregister unregisters the queue's metrics, once.
func (q *Memory) unregister() {
	q.mu.Lock()
	reg := q.metricsReg
	q.metricsReg = nil
	q.mu.Unlock()
	if reg != nil {
		reg.Unregister(q.metrics)
	}
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
// every lease handed out has ended (acked, nacked, buried or expired), or ctx ends (ctx.Err()). As
// it returns it unregisters the queue's metrics, as Close does.
func (q *Memory) Shutdown(ctx context.Context) error {
	defer q.unregister()
	for {
		now := q.clock()
		q.mu.Lock()
		q.closeLocked()
		if q.drainCh == nil {
			// Set before the leases are counted (checkDrained): an Ack that ends one after it
			// counted its shard sees draining and checks again.
			q.drainCh = make(chan struct{})
			q.draining.Store(true)
		}
		q.advance(now) // checkDrained
		if q.drainCh == nil {
			q.mu.Unlock()
			return nil
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
	s, err := q.Stats(context.Background())
	if err != nil {
		return "workqueue (memory)", []string{"key", "value"}, [][]string{{"error", err.Error()}}
	}
	return "workqueue (memory)", []string{"key", "value"}, statsRows(s)
}

func statsRows(s Stats) [][]string {
	f := func(n int64) string { return strconv.FormatInt(n, 10) }
	return [][]string{{"ready", f(s.Ready)}, {"delayed", f(s.Delayed)}, {"leased", f(s.Leased)}, {"dead", f(s.Dead)}}
}
