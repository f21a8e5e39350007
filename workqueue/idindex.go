package workqueue

import "sync"

// idIndex maps the IDs of leased items to their entries: an open-addressing hash table with linear
// probing and backward-shift deletion (no tombstones). IDs are mostly consecutive, and a
// multiplicative hash spreads them, so an operation touches one or two slots where a Go map hashes,
// probes control bytes and writes through a barrier-checked bucket. The zero value is empty.
type idIndex struct {
	slots []idSlot // e nil: free; len is a power of two
	n     int
	shift uint8 // 64 - log2(len(slots))
}

// idSlot keeps the ID beside the entry, so that probing and shifting read no entry.
type idSlot struct {
	id uint64
	e  *entry
}

func (x *idIndex) home(id uint64) int { return int((id * 0x9E3779B97F4A7C15) >> x.shift) }

func (x *idIndex) get(id uint64) *entry {
	if x.n == 0 {
		return nil
	}
	mask := len(x.slots) - 1
	for i := x.home(id); ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.e == nil || s.id == id {
			return s.e
		}
	}
}

// put adds e, whose ID is not in x.
func (x *idIndex) put(e *entry) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.grow()
	}
	mask := len(x.slots) - 1
	i := x.home(e.id)
	for x.slots[i].e != nil {
		i = (i + 1) & mask
	}
	x.slots[i] = idSlot{e.id, e}
	x.n++
}

// del removes the entry with ID id, if there is one.
func (x *idIndex) del(id uint64) {
	if x.n == 0 {
		return
	}
	mask := len(x.slots) - 1
	i := x.home(id)
	for {
		s := &x.slots[i]
		if s.e == nil {
			return
		}
		if s.id == id {
			break
		}
		i = (i + 1) & mask
	}
	// Shift back the entries after i whose home is not between the hole and them.
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		s := x.slots[j]
		if s.e == nil {
			break
		}
		h := x.home(s.id)
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			x.slots[i] = s
			i = j
		}
	}
	x.slots[i] = idSlot{}
	x.n--
	if len(x.slots) > 64 && x.n*8 < len(x.slots) {
		x.resize(len(x.slots) / 2)
	}
}

func (x *idIndex) grow() {
	if len(x.slots) == 0 {
		x.resize(16)
		return
	}
	x.resize(len(x.slots) * 2)
}

func (x *idIndex) resize(size int) {
	old := x.slots
	x.slots = make([]idSlot, size)
	x.shift = 64
	for s := size; s > 1; s >>= 1 {
		x.shift--
	}
	x.n = 0
	for _, s := range old {
		if s.e != nil {
			x.put(s.e)
		}
	}
}

// nshards is how many leaseShards a Memory spreads its leases over (a power of two).
const nshards = 16

// leaseShard holds the leases of the items whose ID is its number modulo nshards: in deadline order
// and by ID, with its own lock, so that a Lease of the hot path and an Ack of a keyless item take
// only the lock of their item's shard, not the queue's. It also keeps the entries of the items
// acked there for the Leases of items from the fast lane, and the block Lease cuts Items from. Lock order: the queue's mu, then
// a shard's mu; never two shards at once.
type leaseShard struct {
	mu    sync.Mutex
	ring  leaseRing
	index idIndex
	free  *entry // entries of acked items (linked by next)
	nfree int
	items []Item // the rest of the block Lease cuts Items from
	_     [64]byte
}

// held finds the entry a lease names if the lease is current (with a zero now, a lease whose
// deadline passed still counts until the queue notices). Called with s.mu held.
func (s *leaseShard) held(id uint64, attempt int, now int64) (*entry, error) {
	e := s.index.get(id)
	if e == nil || e.attempt != attempt || (now != 0 && now >= e.deadline) {
		return nil, ErrLeaseLost
	}
	return e, nil
}

// insert records a leased entry. Called with s.mu held.
func (s *leaseShard) insert(e *entry) {
	s.ring.push(e)
	s.index.put(e)
}

// unlease takes a leased entry out of the shard; its deadline stays. Called with s.mu held.
func (s *leaseShard) unlease(e *entry) {
	s.ring.remove(e)
	s.index.del(e.id)
}

// leased is how many leases s holds.
func (s *leaseShard) leased() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ring.n
}

// recycle keeps the entry of an acked item, which nothing refers to any more, for a later Lease,
// up to maxFree/nshards per shard. Called with s.mu held.
func (s *leaseShard) recycle(e *entry) {
	if s.nfree >= maxFree/nshards {
		return
	}
	// Field by field, and the pointers only where set: *e = entry{...} would put every pointer
	// field through the write barrier while the garbage collector marks.
	e.id, e.prio, e.attempt, e.notBefore, e.deadline, e.added, e.idx, e.state = 0, 0, 0, 0, 0, 0, -1, 0
	e.name = ""
	if e.key != "" {
		e.key = ""
	}
	if e.payload != nil {
		e.payload = nil
	}
	e.next = s.free
	s.free = e
	s.nfree++
}

// entry returns a zero entry for a lease: an acked one from the free list, or a new one. Called
// with s.mu held.
func (s *leaseShard) entry() *entry {
	e := s.free
	if e == nil {
		return &entry{idx: -1}
	}
	s.free, e.next = e.next, nil
	s.nfree--
	return e
}

// item returns a new Item for Lease: the next one of a block of itemBlock, so that Lease
// allocates once per itemBlock items. Each Item of a block is handed out once and then belongs to
// its caller; an Item kept keeps its block alive. Called with s.mu held.
func (s *leaseShard) item() *Item {
	if len(s.items) == 0 {
		s.items = make([]Item, itemBlock)
	}
	it := &s.items[0]
	s.items = s.items[1:]
	return it
}
