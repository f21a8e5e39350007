package workqueue

import (
	"context"

	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// entry states.
const (
	stNew     uint8 = iota // added, waiting for its journal commit; invisible
	stReady                // in the ready heap
	stDelayed              // in the delayed heap
	stLeased               // in the leased heap
	stParked               // waiting for its key's turn
	stHeld                 // nacked, waiting for its journal commit; invisible
)

type entry struct {
	rec   Record
	state uint8
	idx   int
}

// keyState orders the live items of one key: q[0] is the one whose turn it is.
type keyState struct{ q []*entry }

// Memory is the in-process queue: client-go's workqueue semantics (one key is never leased twice at
// once; an add while its key is leased is kept and runs after the ack; delayed adds; Shutdown drains)
// plus priorities, leases that expire, a ctx-cancellable Lease, and dead letters. With WithJournal it
// is the engine of workqueue/bolt.
type Memory struct {
	cfg memConfig

	mu      sync.Mutex
	seq     uint64
	items   map[uint64]*entry
	ready   readyQueue
	delayed entryHeap
	leased  entryHeap
	keys    map[string]*keyState
	dead    []DeadItem
	waiters []*waiter // blocked Lease calls, FIFO
	// spare holds idle waiters. It is per queue, not global: a waiter's channel and timer belong to
	// the goroutines that made them (a testing/synctest bubble, say), like the queue itself.
	spare   sync.Pool
	drainCh chan struct{} // closed when the last lease ends while Shutdown waits
	evTimer *time.Timer   // fires at evAt to run advance (due delays, expired leases) for waiters
	evAt    time.Time
	closed  bool
}

var _ Queue = (*Memory)(nil)

// NewMemory returns an empty queue (or one recovered from WithJournal's records).
func NewMemory(opts ...Option) (*Memory, error) {
	cfg := memConfig{lease: 30 * time.Second, logger: zap.NewNop(), now: time.Now}
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
		items:   make(map[uint64]*entry),
		keys:    make(map[string]*keyState),
		delayed: entryHeap{less: func(a, b *entry) bool { return a.rec.NotBefore.Before(b.rec.NotBefore) }},
		leased:  entryHeap{less: func(a, b *entry) bool { return a.rec.Deadline.Before(b.rec.Deadline) }},
		seq:     cfg.lastID,
	}
	q.spare.New = newWaiter
	q.recover(cfg.recovered)
	return q, nil
}

// waiter is a blocked Lease. An item that becomes ready while a waiter waits is leased to it
// directly (handed over on ch, which has room for one), so the waiter needs no second trip through
// the lock.
type waiter struct {
	ch chan grant
}

// grant is a lease handed to a waiter. The Item is built from it outside the lock: an entry's ID,
// key, payload and priority never change, so they can be read without it.
type grant struct {
	e        *entry
	attempt  int
	deadline time.Time
	closed   bool // the queue closed instead
}

func (g grant) item() *Item {
	tok := FormatLease(g.e.rec.ID, g.attempt)
	return &Item{
		ID: tok[:strings.IndexByte(tok, '.')], Key: g.e.rec.Key, Payload: g.e.rec.Payload, Priority: g.e.rec.Priority,
		Attempt: g.attempt, Lease: tok, Deadline: g.deadline,
	}
}

func newWaiter() any { return &waiter{ch: make(chan grant, 1)} }

func (q *Memory) recover(recs []Record) {
	if len(recs) == 0 {
		return
	}
	recs = append([]Record(nil), recs...)
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	now := q.cfg.now()
	var live []*entry
	for _, r := range recs {
		if r.ID > q.seq {
			q.seq = r.ID
		}
		if r.Dead {
			q.dead = append(q.dead, deadItem(r, r.Reason, r.Added))
			continue
		}
		e := &entry{rec: r, idx: -1}
		q.items[r.ID] = e
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
		if !e.rec.Deadline.IsZero() && e.rec.Deadline.After(now) {
			e.state = stLeased
			q.leased.push(e)
			continue
		}
		e.rec.Deadline = time.Time{}
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

// makeVisible puts an entry that is not in any heap where it belongs. Called with mu held.
func (q *Memory) makeVisible(e *entry, now time.Time) {
	if e.rec.Key != "" {
		if ks := q.keys[e.rec.Key]; ks != nil && ks.q[0] != e {
			e.state = stParked
			return
		}
	}
	if e.rec.NotBefore.After(now) {
		e.state = stDelayed
		q.delayed.push(e)
		q.armLocked(now)
		return
	}
	q.toReady(e, now)
}

// toReady hands e to the longest-waiting Lease, or queues it. Called with mu held.
func (q *Memory) toReady(e *entry, now time.Time) {
	if len(q.waiters) > 0 && (q.cfg.maxAttempts == 0 || e.rec.Attempt < q.cfg.maxAttempts) {
		if now.IsZero() {
			now = q.cfg.now()
		}
		w := q.waiters[0]
		copy(q.waiters, q.waiters[1:])
		q.waiters[len(q.waiters)-1] = nil
		q.waiters = q.waiters[:len(q.waiters)-1]
		w.ch <- q.leaseLocked(e, now)
		return
	}
	e.state = stReady
	q.ready.push(e)
}

// leaseLocked leases e and returns the grant for the caller. Called with mu held.
func (q *Memory) leaseLocked(e *entry, now time.Time) grant {
	e.rec.Attempt++
	e.rec.Deadline = now.Add(q.cfg.lease)
	e.state = stLeased
	q.leased.push(e)
	q.armLocked(now)
	return grant{e: e, attempt: e.rec.Attempt, deadline: e.rec.Deadline}
}

// armLocked makes the event timer fire by the next timed event (a delayed item coming due or a
// lease expiring), so that blocked Leases need no timers of their own. The timer is re-armed only
// when the next event moves earlier. Called with mu held.
func (q *Memory) armLocked(now time.Time) {
	next := q.nextEvent()
	if next.IsZero() || q.closed || (!q.evAt.IsZero() && !next.Before(q.evAt)) {
		return
	}
	if now.IsZero() {
		now = q.cfg.now()
	}
	q.evAt = next
	if q.evTimer == nil {
		q.evTimer = time.AfterFunc(next.Sub(now), q.onEvent)
	} else {
		q.evTimer.Reset(next.Sub(now))
	}
}

func (q *Memory) onEvent() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.evAt = time.Time{}
	if q.closed {
		return
	}
	now := q.cfg.now()
	q.advance(now)
	q.armLocked(now)
}

// unlease undoes a lease nobody saw (a waiter gave up as the item arrived). Called with mu held.
func (q *Memory) unlease(g grant, now time.Time) {
	e, err := q.heldID(g.e.rec.ID, g.attempt, now)
	if err != nil {
		return // expired meanwhile: it is ready again already
	}
	q.leased.remove(e.idx)
	e.rec.Attempt--
	e.rec.Deadline = time.Time{}
	q.toReady(e, now)
}

// forget removes a live entry from the maps and hands its key's turn on. Called with mu held.
func (q *Memory) forget(e *entry, now time.Time) {
	delete(q.items, e.rec.ID)
	if e.rec.Key == "" {
		return
	}
	ks := q.keys[e.rec.Key]
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
		delete(q.keys, e.rec.Key)
		return
	}
	if next := ks.q[0]; next.state == stParked {
		q.makeVisible(next, now)
	}
}

// advance moves due delayed items to ready and expired leases back to ready. Called with mu held.
func (q *Memory) advance(now time.Time) {
	for {
		e := q.delayed.top()
		if e == nil || e.rec.NotBefore.After(now) {
			break
		}
		q.delayed.pop()
		q.toReady(e, now)
	}
	for {
		e := q.leased.top()
		if e == nil || e.rec.Deadline.After(now) {
			break
		}
		q.leased.pop()
		e.rec.Deadline = time.Time{}
		q.toReady(e, now)
		q.cfg.logger.Debug("lease expired", zap.Uint64("id", e.rec.ID), zap.Int("attempt", e.rec.Attempt))
	}
	q.checkDrained()
}

func (q *Memory) checkDrained() {
	if q.drainCh != nil && q.leased.len() == 0 && q.heldCount() == 0 {
		close(q.drainCh)
		q.drainCh = nil
	}
}

func (q *Memory) heldCount() int {
	n := 0
	for _, e := range q.items {
		if e.state == stHeld {
			n++
		}
	}
	return n
}

// nextEvent is when advance next has work, or zero. Called with mu held.
func (q *Memory) nextEvent() time.Time {
	var t time.Time
	if e := q.delayed.top(); e != nil {
		t = e.rec.NotBefore
	}
	if e := q.leased.top(); e != nil && (t.IsZero() || e.rec.Deadline.Before(t)) {
		t = e.rec.Deadline
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

// Add implements Queue.
func (q *Memory) Add(ctx context.Context, payload []byte, opts AddOptions) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if opts.Delay < 0 {
		return "", fmt.Errorf("%w: negative delay %v", ErrInvalid, opts.Delay)
	}
	var now time.Time // read only when needed: clock reads are a large part of an Add's cost
	if opts.Delay > 0 || q.cfg.journal != nil {
		now = q.cfg.now()
	}
	e := &entry{idx: -1, state: stNew, rec: Record{Key: opts.Key, Payload: payload, Priority: opts.Priority, Added: now}}
	if opts.Delay > 0 {
		e.rec.NotBefore = now.Add(opts.Delay)
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return "", ErrClosed
	}
	var ks *keyState
	if opts.Key != "" {
		ks = q.keys[opts.Key]
		if ks != nil {
			last := ks.q[len(ks.q)-1]
			if last.rec.Attempt == 0 && last.state != stNew && last.state != stLeased {
				id := last.rec.ID
				q.mu.Unlock()
				return strconv.FormatUint(id, 10), nil
			}
		} else {
			ks = &keyState{}
			q.keys[opts.Key] = ks
		}
	}
	q.seq++
	e.rec.ID = q.seq
	q.items[e.rec.ID] = e
	if ks != nil {
		ks.q = append(ks.q, e)
	}
	if q.cfg.journal != nil {
		rec := e.rec
		q.mu.Unlock()
		err := q.commit(Change{Op: OpPut, Record: rec})
		q.mu.Lock()
		if err != nil {
			q.forget(e, now)
			q.mu.Unlock()
			return "", err
		}
	}
	id := e.rec.ID
	q.makeVisible(e, now)
	q.mu.Unlock()
	return strconv.FormatUint(id, 10), nil
}

// Lease implements Queue.
func (q *Memory) Lease(ctx context.Context) (*Item, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := q.cfg.now()
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, ErrClosed
		}
		q.advance(now)
		var buried []Change
		for q.ready.len() > 0 {
			e := q.ready.pop()
			if q.cfg.maxAttempts > 0 && e.rec.Attempt >= q.cfg.maxAttempts {
				buried = append(buried, q.bury(e, fmt.Sprintf("max attempts (%d) used", q.cfg.maxAttempts), now))
				continue
			}
			g := q.leaseLocked(e, now)
			if q.cfg.journal == nil {
				q.mu.Unlock()
				return g.item(), nil
			}
			rec := e.rec
			q.mu.Unlock()
			return q.leased1(g.item(), append(buried, Change{Op: OpPut, Record: rec}))
		}
		// Nothing ready: wait for a hand-over, the next timed event, ctx, or Close.
		w := q.spare.Get().(*waiter)
		q.waiters = append(q.waiters, w)
		q.armLocked(now)
		q.mu.Unlock()
		if err := q.commit(buried...); err != nil {
			if g, ok := q.dropWaiter(w); ok {
				q.giveBack(g)
			}
			return nil, err
		}
		var g grant
		ok := false
		select {
		case g = <-w.ch:
			ok = true
		case <-ctx.Done():
			if g, ok = q.dropWaiter(w); ok {
				q.giveBack(g)
				ok = false
			}
		}
		q.spare.Put(w)
		if ok {
			if g.closed {
				return nil, ErrClosed
			}
			return q.leased1(g.item(), nil)
		}
	}
}

// leased1 journals a lease (if there is a journal) and returns the item.
func (q *Memory) leased1(it *Item, ch []Change) (*Item, error) {
	if q.cfg.journal != nil {
		if ch == nil {
			q.mu.Lock()
			id, _, _ := ParseLease(it.Lease)
			if e := q.items[id]; e != nil && e.state == stLeased {
				ch = []Change{{Op: OpPut, Record: e.rec}}
			}
			q.mu.Unlock()
		}
		if lj, ok := q.cfg.journal.(LazyJournal); ok {
			lj.CommitLater(ch)
			return it, nil
		}
		if err := q.commit(ch...); err != nil {
			return nil, err
		}
	}
	return it, nil
}

func (q *Memory) giveBack(g grant) {
	if g.closed {
		return
	}
	q.mu.Lock()
	q.unlease(g, q.cfg.now())
	q.mu.Unlock()
}

// dropWaiter removes w from the waiters. If a lease was granted to w meanwhile, it returns it.
func (q *Memory) dropWaiter(w *waiter) (grant, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, x := range q.waiters {
		if x == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			return grant{}, false
		}
	}
	select {
	case g := <-w.ch:
		return g, true
	default:
		return grant{}, false
	}
}

// bury moves a live entry that is in no heap to the dead letters. Called with mu held.
func (q *Memory) bury(e *entry, reason string, now time.Time) Change {
	q.forget(e, now)
	q.dead = append(q.dead, deadItem(e.rec, reason, now))
	rec := e.rec
	rec.Dead, rec.Reason, rec.Deadline = true, reason, time.Time{}
	q.cfg.logger.Info("item buried", zap.Uint64("id", rec.ID), zap.Int("attempts", rec.Attempt), zap.String("reason", reason))
	return Change{Op: OpBury, Record: rec}
}

// held finds the entry a lease token names, if the lease is current (with a zero now, a lease whose
// deadline passed still counts until advance notices). Called with mu held.
func (q *Memory) held(lease string, now time.Time) (*entry, error) {
	id, attempt, err := ParseLease(lease)
	if err != nil {
		return nil, err
	}
	return q.heldID(id, attempt, now)
}

func (q *Memory) heldID(id uint64, attempt int, now time.Time) (*entry, error) {
	e := q.items[id]
	if e == nil || e.state != stLeased || e.rec.Attempt != attempt || (!now.IsZero() && !now.Before(e.rec.Deadline)) {
		return nil, ErrLeaseLost
	}
	return e, nil
}

// Ack implements Queue. It reads no clock: a lease whose deadline has passed can still be acked
// until the queue has handed the item out again (the work was done, so that is harmless); after
// that the old token gets ErrLeaseLost.
func (q *Memory) Ack(ctx context.Context, lease string) error {
	var now time.Time
	id, attempt, err := ParseLease(lease)
	if err != nil {
		return err
	}
	q.mu.Lock()
	e, err := q.heldID(id, attempt, now)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	q.leased.remove(e.idx)
	q.forget(e, now)
	q.checkDrained()
	q.mu.Unlock()
	if q.cfg.journal == nil {
		return nil
	}
	return q.commit(Change{Op: OpDelete, Record: Record{ID: e.rec.ID}})
}

// Nack implements Queue.
func (q *Memory) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if delay < 0 {
		return fmt.Errorf("%w: negative delay %v", ErrInvalid, delay)
	}
	now := q.cfg.now()
	q.mu.Lock()
	e, err := q.held(lease, now)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	q.leased.remove(e.idx)
	e.rec.Deadline = time.Time{}
	e.rec.NotBefore = time.Time{}
	if delay > 0 {
		e.rec.NotBefore = now.Add(delay)
	}
	if q.cfg.journal != nil {
		e.state = stHeld
		rec := e.rec
		q.mu.Unlock()
		err := q.commit(Change{Op: OpPut, Record: rec})
		q.mu.Lock()
		// On a failed commit the item still becomes ready: the journal holds its older state.
		q.makeVisible(e, q.cfg.now())
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
	now := q.cfg.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	e, err := q.held(lease, now)
	if err != nil {
		return time.Time{}, err
	}
	e.rec.Deadline = now.Add(q.cfg.lease)
	q.leased.fix(e.idx)
	return e.rec.Deadline, nil
}

// Bury implements Queue.
func (q *Memory) Bury(ctx context.Context, lease string, reason string) error {
	now := q.cfg.now()
	q.mu.Lock()
	e, err := q.held(lease, now)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	q.leased.remove(e.idx)
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
	now := q.cfg.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.advance(now)
	}
	r, l := int64(q.ready.len()), int64(q.leased.len())
	return Stats{Ready: r, Leased: l, Delayed: int64(len(q.items)) - r - l, Dead: int64(len(q.dead))}, nil
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
	if q.evTimer != nil {
		q.evTimer.Stop()
	}
	for _, w := range q.waiters {
		w.ch <- grant{closed: true}
	}
	q.waiters = nil
}

// Shutdown is client-go's ShutDownWithDrain: it closes the queue for Add and Lease and waits until
// every lease handed out has ended (acked, nacked, buried or expired), or ctx ends (ctx.Err()).
func (q *Memory) Shutdown(ctx context.Context) error {
	for {
		now := q.cfg.now()
		q.mu.Lock()
		q.closeLocked()
		q.advance(now)
		if q.leased.len() == 0 && q.heldCount() == 0 {
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
		if !next.IsZero() {
			t = time.NewTimer(next.Sub(now))
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
