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

// readyQueue holds ready entries: one FIFO lane per priority, higher priorities first.
type readyQueue struct {
	lanes []*lane      // by priority, highest first
	n     atomic.Int64 // changed under the queue's lock; read without it by spinning Leases
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
	r.n.Add(1)
}

// pushAll queues es, all of priority p, in order.
func (r *readyQueue) pushAll(p int, es []*entry) {
	l := r.lane(p)
	l.buf = append(l.buf, es...)
	r.n.Add(int64(len(es)))
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
		r.n.Add(-1)
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

// leaseList holds leased entries in deadline order. A lease's deadline is the lease time plus a
// fixed duration, so a new or extended lease nearly always goes at the tail: insert walks from there.
type leaseList struct {
	head, tail *entry
	n          int
}

func (l *leaseList) insert(e *entry) {
	p := l.tail
	for p != nil && p.deadline > e.deadline {
		p = p.prev
	}
	e.prev = p
	if p == nil {
		e.next = l.head
		l.head = e
	} else {
		e.next = p.next
		p.next = e
	}
	if e.next == nil {
		l.tail = e
	} else {
		e.next.prev = e
	}
	l.n++
}

func (l *leaseList) remove(e *entry) {
	if e.prev == nil {
		l.head = e.next
	} else {
		e.prev.next = e.next
	}
	if e.next == nil {
		l.tail = e.prev
	} else {
		e.next.prev = e.prev
	}
	e.next, e.prev = nil, nil
	l.n--
}
