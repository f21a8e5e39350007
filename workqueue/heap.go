package workqueue

import (
	"sync/atomic"
)

// entryHeap is a binary heap of entries that keeps each entry's index, so an entry can be removed
// or re-sorted in O(log n). An entry is in at most one heap at a time, so one index field suffices.
type entryHeap struct {
	s    []*entry
	less func(a, b *entry) bool
}

func (h *entryHeap) top() *entry {
	if len(h.s) == 0 {
		return nil
	}
	return h.s[0]
}

func (h *entryHeap) push(e *entry) {
	e.idx = int32(len(h.s))
	h.s = append(h.s, e)
	h.up(len(h.s) - 1)
}

func (h *entryHeap) pop() *entry {
	if len(h.s) == 0 {
		return nil
	}
	return h.remove(0)
}

func (h *entryHeap) remove(i int) *entry {
	n := len(h.s) - 1
	e := h.s[i]
	if i != n {
		h.swap(i, n)
	}
	h.s[n] = nil
	h.s = h.s[:n]
	if i != n {
		if !h.down(i) {
			h.up(i)
		}
	}
	e.idx = -1
	return e
}

func (h *entryHeap) swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	h.s[i].idx = int32(i)
	h.s[j].idx = int32(j)
}

func (h *entryHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(h.s[j], h.s[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *entryHeap) down(i0 int) bool {
	i, n := i0, len(h.s)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(h.s[r], h.s[l]) {
			j = r
		}
		if !h.less(h.s[j], h.s[i]) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

// readyQueue holds ready entries: one FIFO lane per priority, higher priorities first. While it
// holds any, the fast lane is blocked (see fastLane): only a Lease that holds the queue's lock,
// and so takes these first, may claim from it.
type readyQueue struct {
	lanes []*lane      // by priority, highest first
	n     atomic.Int64 // changed under the queue's lock; read without it by spinning Leases
	fast  *fastLane
}

// count adds k to n and blocks the fast lane when n leaves 0 or unblocks it when n reaches 0.
func (r *readyQueue) count(k int64) {
	switch n := r.n.Add(k); {
	case n == k:
		r.fast.head.Or(laneBlocked)
	case n == 0:
		r.fast.head.And(^laneBlocked)
	}
}

type lane struct {
	prio int
	buf  []*entry
	head int
}

func (r *readyQueue) len() int { return int(r.n.Load()) }

func (r *readyQueue) push(e *entry) {
	l := r.lane(e.prio)
	l.buf = append(l.buf, e)
	r.count(1)
}

// pushAll queues es, all of priority p, in order.
func (r *readyQueue) pushAll(p int, es []*entry) {
	l := r.lane(p)
	l.buf = append(l.buf, es...)
	r.count(int64(len(es)))
}

// lane returns the lane of priority p, adding it if needed.
func (r *readyQueue) lane(p int) *lane {
	i := 0
	for ; i < len(r.lanes); i++ {
		if r.lanes[i].prio <= p {
			break
		}
	}
	if i == len(r.lanes) || r.lanes[i].prio != p {
		r.lanes = append(r.lanes, nil)
		copy(r.lanes[i+1:], r.lanes[i:])
		r.lanes[i] = &lane{prio: p}
	}
	return r.lanes[i]
}

func (r *readyQueue) pop() *entry {
	for i, l := range r.lanes {
		if l.head == len(l.buf) {
			continue
		}
		e := l.buf[l.head]
		l.buf[l.head] = nil
		l.head++
		r.count(-1)
		switch {
		case l.head == len(l.buf):
			l.buf, l.head = l.buf[:0], 0
			if len(r.lanes) > 1 {
				// Drop an empty lane so that rarely used priorities cost nothing.
				r.lanes = append(r.lanes[:i], r.lanes[i+1:]...)
			}
		case l.head >= 1024 && l.head*2 >= len(l.buf):
			n := copy(l.buf, l.buf[l.head:])
			clear(l.buf[n:])
			l.buf, l.head = l.buf[:n], 0
		}
		return e
	}
	return nil
}

// leaseRing holds the leases of a shard in deadline order: a lease's deadline is the lease time plus
// a fixed duration, so a new or extended lease goes at the tail. It is a ring of records; removing a
// lease clears its record in place (the entry keeps the record's position in idx, which a leased
// entry does not use otherwise), so neither a lease nor an ack touches another entry. Cleared records
// are dropped when they reach the head, and the ring is compacted when it is mostly holes. Leases
// recorded concurrently can reach the ring a little out of deadline order; such a lease expires when
// the one before it does, late by that skew.
type leaseRing struct {
	buf        []leaseRec // len 0 or a power of two
	head, tail uint32     // positions: the records are [head, tail), modulo len(buf)
	n          int        // live records
}

type leaseRec struct {
	e        *entry // nil: removed
	deadline int64
}

func (r *leaseRing) push(e *entry) {
	if r.tail-r.head == uint32(len(r.buf)) {
		r.resize()
	}
	r.buf[r.tail&uint32(len(r.buf)-1)] = leaseRec{e, e.deadline}
	e.idx = int32(r.tail)
	r.tail++
	r.n++
}

func (r *leaseRing) remove(e *entry) {
	r.buf[uint32(e.idx)&uint32(len(r.buf)-1)].e = nil
	e.idx = -1
	r.n--
	r.trim()
}

// first is the live record nearest the head, or nil.
func (r *leaseRing) first() *leaseRec {
	if r.head == r.tail {
		return nil
	}
	return &r.buf[r.head&uint32(len(r.buf)-1)]
}

// trim drops removed records from the head, so that the head record is live (or the ring empty).
func (r *leaseRing) trim() {
	mask := uint32(len(r.buf) - 1)
	for r.head != r.tail && r.buf[r.head&mask].e == nil {
		r.head++
	}
}

// resize makes room in a full ring: it moves the live records, in order, to the start of a buffer
// twice their number (at least 16), which compacts a ring of mostly holes instead of growing it.
func (r *leaseRing) resize() {
	size := 16
	for size < 2*r.n+2 {
		size *= 2
	}
	old, mask := r.buf, uint32(len(r.buf)-1)
	r.buf = make([]leaseRec, size)
	k := uint32(0)
	for p := r.head; p != r.tail; p++ {
		if rec := old[p&mask]; rec.e != nil {
			r.buf[k] = rec
			rec.e.idx = int32(k)
			k++
		}
	}
	r.head, r.tail = 0, k
}

// topPrio is the priority of the item pop would return; call it only when len() > 0.
func (r *readyQueue) topPrio() int {
	for _, l := range r.lanes {
		if l.head != len(l.buf) {
			return l.prio
		}
	}
	return 0
}
