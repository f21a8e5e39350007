package workqueue

import (
	"sync/atomic"
	"unsafe"
)

// segSize is how many items one segment of a fastLane holds: as many as fill the runtime's
// largest small size class, 32 KiB, with the segment's header (see laneSeg). The count is for
// 64-bit platforms; elsewhere a segment is smaller.
const segSize = 1344

// segChunks bounds how many name arrays (see nameArena) the names of one segment's items come
// from: an array holds at least minChunkNames names, and the first name may come from an array
// begun in the segment before.
const segChunks = (segSize-1)/minChunkNames + 2

// laneBlocked is the bit of fastLane.head that blocks claims without the queue's lock.
const laneBlocked uint64 = 1 << 63

// laneItem is an item of the fast lane: what a hot-path Add knows of it. It gets an entry only
// when it leaves the lane (leased, or moved into the ready lanes).
type laneItem struct {
	id      uint64
	prio    int
	name    string // "<id>.1", see entry.name
	payload []byte
}

// laneSlot holds one laneItem by value, without a pointer: the name is its segment's name array
// chunk, at off, nlen bytes long (nlen 0: ""), and a payload (if pay) is in the segment's
// payloads. id is 0 until the item is published; the fields are written before that and read
// only by the claimer that won the item's index.
type laneSlot struct {
	id    atomic.Uint64
	prio  int
	off   uint16
	chunk uint8
	nlen  uint8
	pay   bool
}

// laneSeg is one segment of a fastLane: the items of indexes base to base+segSize-1. Its
// pointers come first, and its slots hold none: the garbage collector scans a segment's
// header (its pointer words end there) and not its slots, so a backlog of items costs it a
// few pointers a segment instead of one or two an item. The names of the segment's items are
// in the name arrays of chunks (a pointer each, where the items' names would take one an
// item), which the producers append to as they cut names from a new one; the payloads are in
// payloads, made with the segment's first payload (a segment of items without one has none).
type laneSeg struct {
	next     atomic.Pointer[laneSeg] // set before the segment's last slot is published
	payloads *[segSize][]byte
	chunks   [segChunks]*[nameChunk]byte
	nchunks  int // the producers'
	base     uint64
	slots    [segSize]laneSlot
}

// take moves the item out of slot k, whose index the caller claimed. It writes to the segment
// only to drop a payload, so that the segment keeps no payload alive.
func (s *laneSeg) take(k uint64) laneItem {
	id, prio, name, payload := s.takeParts(k)
	return laneItem{id: id, prio: prio, name: name, payload: payload}
}

// takeParts is take with the item's fields as results, which stay in registers: a Lease of one
// item writes them into its entry without a laneItem on the stack between (a laneItem returned by
// value went through the stack in 8-byte stores and came back in 16-byte loads, which the store
// buffer cannot forward: a stall of every Lease).
func (s *laneSeg) takeParts(k uint64) (id uint64, prio int, name string, payload []byte) {
	sl := &s.slots[k]
	id, prio = sl.id.Load(), sl.prio
	if sl.nlen != 0 {
		name = unsafe.String(&s.chunks[sl.chunk][sl.off], int(sl.nlen))
	}
	if sl.pay {
		p := &s.payloads[k]
		payload = *p
		*p = nil
	}
	return id, prio, name, payload
}

// fastLane is the FIFO of hot-path Adds (keyless, ready at once, one priority at a time) that
// Leases take from without the queue's lock: producers append under their own lock (put), which
// writes an item into its slot by value and publishes it by storing its ID; a Lease claims the
// next index with one compare-and-swap on head (claim), or a run of them (claimN), once it has
// seen the slot published. The items need no entry of their own while they wait, so a backlog
// costs 24 bytes an item in segments of segSize (and its name, a few bytes of a shared array), none
// of which the garbage collector scans, and the entry is taken when the item is leased,
// from the free list of the shard that records the lease (where acked items leave theirs).
// No counter is shared with the producers, so a producer and the Leases touch the same cache line
// only where they meet in the same slots. Indexes below head are claimed. The segments form a list
// from headSeg on, whose base is never above head, so a claimer that loaded headSeg before head
// finds its index by walking forward.
//
// head also holds laneBlocked, set while the ready lanes hold items (see readyQueue.count): then
// only a claim under the queue's lock (locked) may take items, so that a Lease without the lock
// never hands out an item of the lane before older or higher-priority items of the ready lanes.
// The mark is in the word the claim's compare-and-swap checks, so the check and the claim are one
// step: a Lease that looked at the ready lanes first and claimed afterwards could claim an item
// added after the locked path had moved older ones from the lane into the ready lanes.
type fastLane struct {
	head    atomic.Uint64 // the next index to claim, | laneBlocked
	headSeg atomic.Pointer[laneSeg]
	_       [48]byte
	prio    atomic.Int64 // the priority of every item in the lane (push keeps it one)
	tail    *laneSeg     // the producers' (under their lock), as is n
	n       uint64       // indexes put
}

func (l *fastLane) init() {
	s := &laneSeg{}
	l.headSeg.Store(s)
	l.tail = s
}

// put appends an item (id > 0) and returns its index. Its name is "" or cut from the name
// array chunk. Called with the producers' lock held.
func (l *fastLane) put(id uint64, prio int, name string, chunk *[nameChunk]byte, payload []byte) uint64 {
	i := l.n
	s := l.tail
	k := i - s.base
	if k == segSize-1 {
		n := &laneSeg{base: s.base + segSize}
		s.next.Store(n)
		l.tail = n
	}
	l.n++
	sl := &s.slots[k]
	sl.prio = prio
	if name != "" {
		if s.nchunks == 0 || s.chunks[s.nchunks-1] != chunk {
			s.chunks[s.nchunks] = chunk // segChunks bounds nchunks
			s.nchunks++
		}
		sl.chunk = uint8(s.nchunks - 1)
		sl.off = uint16(uintptr(unsafe.Pointer(unsafe.StringData(name))) - uintptr(unsafe.Pointer(chunk)))
		sl.nlen = uint8(len(name))
	}
	if payload != nil {
		if s.payloads == nil {
			s.payloads = new([segSize][]byte)
		}
		s.payloads[k] = payload
		sl.pay = true
	}
	sl.id.Store(id)
	return i
}

// empty reports whether the producers have put every item claimed so far. Called with their lock
// held.
func (l *fastLane) empty() bool { return l.claimed() >= l.n }

// claimed is the next index to claim: the number of items claimed.
func (l *fastLane) claimed() uint64 { return l.head.Load() &^ laneBlocked }

// nonEmpty reports whether an item is there to claim (under the queue's lock, if blocked).
func (l *fastLane) nonEmpty() bool {
	s := l.headSeg.Load()
	h := l.claimed()
	for h-s.base >= segSize {
		s = s.next.Load()
	}
	return s.slots[h-s.base].id.Load() != 0
}

// advance moves headSeg on to s, whose base is at or below head, unless it is there or beyond
// already. Claimers that claimed segments' last indexes advance it in any order: a claimer that
// moved it only from the segment it claimed in (and not when a later claimer had moved it first)
// could leave it behind for good, which kept every segment after it reachable, and made every
// claim walk the list from there.
func (l *fastLane) advance(s *laneSeg) {
	for {
		c := l.headSeg.Load()
		if c.base >= s.base || l.headSeg.CompareAndSwap(c, s) {
			return
		}
	}
}

// claim takes the oldest item; ok is false if there is none or the lane is blocked and the caller
// does not hold the queue's lock (locked).
func (l *fastLane) claim(locked bool) (it laneItem, ok bool) {
	s, k, ok := l.claimSlot(locked)
	if !ok {
		return laneItem{}, false
	}
	return s.take(k), true
}

// claimSlot claims the oldest item as claim does, but leaves it in its slot: the caller owns slot
// k of s and takes the item out with s.take or s.takeParts.
func (l *fastLane) claimSlot(locked bool) (s *laneSeg, k uint64, ok bool) {
	for {
		s = l.headSeg.Load()
		hw := l.head.Load()
		if hw&laneBlocked != 0 && !locked {
			return nil, 0, false
		}
		h := hw &^ laneBlocked
		for h-s.base >= segSize {
			s = s.next.Load()
		}
		k = h - s.base
		if s.slots[k].id.Load() == 0 {
			return nil, 0, false
		}
		if l.head.CompareAndSwap(hw, hw+1) {
			if k == segSize-1 {
				// s stays reachable through the caller's pointer until it takes the item.
				l.advance(s.next.Load())
			}
			return s, k, true
		}
	}
}

// claimN takes up to max of the oldest items into dst (appending) and returns dst; locked as for
// claim.
func (l *fastLane) claimN(max int, dst []laneItem, locked bool) []laneItem {
	for {
		s := l.headSeg.Load()
		hw := l.head.Load()
		if hw&laneBlocked != 0 && !locked {
			return dst
		}
		h := hw &^ laneBlocked
		for h-s.base >= segSize {
			s = s.next.Load()
		}
		// Count the published items from h on.
		last, k := s, uint64(0)
		for ; k < uint64(max); k++ {
			if h+k-last.base == segSize {
				if last = last.next.Load(); last == nil {
					break
				}
			}
			if last.slots[h+k-last.base].id.Load() == 0 {
				break
			}
		}
		if k == 0 {
			return dst
		}
		if !l.head.CompareAndSwap(hw, hw+k) {
			continue
		}
		t := s
		for i := h; i < h+k; i++ {
			if i-t.base == segSize {
				t = t.next.Load()
			}
			dst = append(dst, t.take(i-t.base))
		}
		// Move headSeg on to the segment of the new head if this claimed a segment's last index
		// (so the segments up to it have their next set).
		if h+k-t.base == segSize {
			t = t.next.Load()
		}
		if t != s {
			l.advance(t)
		}
		return dst
	}
}
