package workqueue

// idIndex maps the IDs of leased items to their entries: an open-addressing hash table with linear
// probing and backward-shift deletion (no tombstones). IDs are mostly consecutive, and a
// multiplicative hash spreads them, so an operation touches one or two slots where a Go map hashes,
// probes control bytes and writes through a barrier-checked bucket. The zero value is empty.
type idIndex struct {
	slots []*entry // nil: free; len is a power of two
	n     int
	shift uint8 // 64 - log2(len(slots))
}

func (x *idIndex) home(id uint64) int { return int((id * 0x9E3779B97F4A7C15) >> x.shift) }

func (x *idIndex) get(id uint64) *entry {
	if x.n == 0 {
		return nil
	}
	mask := len(x.slots) - 1
	for i := x.home(id); ; i = (i + 1) & mask {
		e := x.slots[i]
		if e == nil || e.id == id {
			return e
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
	for x.slots[i] != nil {
		i = (i + 1) & mask
	}
	x.slots[i] = e
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
		e := x.slots[i]
		if e == nil {
			return
		}
		if e.id == id {
			break
		}
		i = (i + 1) & mask
	}
	// Shift back the entries after i whose home is not between the hole and them.
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		e := x.slots[j]
		if e == nil {
			break
		}
		h := x.home(e.id)
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			x.slots[i] = e
			i = j
		}
	}
	x.slots[i] = nil
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
	x.slots = make([]*entry, size)
	x.shift = 64
	for s := size; s > 1; s >>= 1 {
		x.shift--
	}
	x.n = 0
	for _, e := range old {
		if e != nil {
			x.put(e)
		}
	}
}
