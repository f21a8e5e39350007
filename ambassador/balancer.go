package ambassador

import (
	"crypto/md5"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Balancer chooses one of the endpoints it was built over. Implementations are safe for concurrent
// use, and Pick and Done do not allocate.
type Balancer interface {
	// Pick returns the index (in the slice the balancer was built from) of the endpoint for a request
	// whose hash key is key (balancers that do not hash ignore it), or -1 when it has no endpoints.
	// Every Pick that returns i >= 0 must be followed by one Done(i).
	Pick(key uint64) int
	// Done reports that the request or connection sent to endpoint i has finished.
	Done(i int)
}

// NewBalancer builds a Balancer over eps (each Weight >= 1 once normalised; 0 counts as 1). The
// proxies rebuild their balancer whenever the set of available endpoints or their weights change.
type NewBalancer func(eps []Endpoint) Balancer

// Balancers by name, as the example binary's -balancer flag spells them.
var Balancers = map[string]NewBalancer{
	"rr":     NewRoundRobin,
	"p2c":    NewP2C,
	"ring":   NewRingHash,
	"maglev": NewMaglev,
}

// RetryKey derives the hash key for retry attempt n (n >= 1) from the request's key, so hashing
// balancers move a retried request to another endpoint in a deterministic way.
func RetryKey(key uint64, attempt int) uint64 {
	return mix64(key + uint64(attempt)*0x9e3779b97f4a7c15)
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// --- round robin -------------------------------------------------------------------------------

// roundRobin is smooth weighted round robin (the nginx algorithm): with weights 5,1,1 it yields
// a a b a c a a rather than a a a a a b c. With equal weights it is a lock-free counter.
type roundRobin struct {
	n       int
	equal   bool
	next    atomic.Uint64
	mu      sync.Mutex
	weights []int
	current []int
	total   int
}

// NewRoundRobin returns a smooth weighted round-robin balancer.
func NewRoundRobin(eps []Endpoint) Balancer {
	b := &roundRobin{n: len(eps), equal: true, weights: make([]int, len(eps)), current: make([]int, len(eps))}
	for i, e := range eps {
		b.weights[i] = e.weight()
		b.total += b.weights[i]
		if b.weights[i] != b.weights[0] {
			b.equal = false
		}
	}
	return b
}

func (b *roundRobin) Pick(uint64) int {
	if b.n == 0 {
		return -1
	}
	if b.equal {
		return int((b.next.Add(1) - 1) % uint64(b.n))
	}
	b.mu.Lock()
	best := 0
	for i, w := range b.weights {
		b.current[i] += w
		if b.current[i] > b.current[best] {
			best = i
		}
	}
	b.current[best] -= b.total
	b.mu.Unlock()
	return best
}

func (b *roundRobin) Done(int) {}

// --- power of two choices ----------------------------------------------------------------------

// p2c picks two endpoints at random (in proportion to weight) and sends the request to the one with
// fewer in-flight requests per unit of weight.
type p2c struct {
	cum      []uint64 // cumulative weights, for weighted random choice
	weights  []int64
	inflight []atomic.Int64
}

// NewP2C returns a power-of-two-choices least-request balancer.
func NewP2C(eps []Endpoint) Balancer {
	b := &p2c{cum: make([]uint64, len(eps)), weights: make([]int64, len(eps)), inflight: make([]atomic.Int64, len(eps))}
	var sum uint64
	for i, e := range eps {
		sum += uint64(e.weight())
		b.cum[i] = sum
		b.weights[i] = int64(e.weight())
	}
	return b
}

func (b *p2c) random() int {
	total := b.cum[len(b.cum)-1]
	r := rand.Uint64N(total)
	i, _ := slices.BinarySearch(b.cum, r+1)
	return i
}

func (b *p2c) Pick(uint64) int {
	switch len(b.cum) {
	case 0:
		return -1
	case 1:
		b.inflight[0].Add(1)
		return 0
	}
	x, y := b.random(), b.random()
	for tries := 0; x == y && tries < 4; tries++ {
		y = b.random()
	}
	if x == y {
		y = (x + 1) % len(b.cum)
	}
	// Compare inflight/weight without dividing: lx*wy < ly*wx.
	lx, ly := b.inflight[x].Load(), b.inflight[y].Load()
	pick := x
	if ly*b.weights[x] < lx*b.weights[y] {
		pick = y
	}
	b.inflight[pick].Add(1)
	return pick
}

// take counts a request sent to endpoint i without Pick (see taker).
func (b *p2c) take(i int) { b.inflight[i].Add(1) }

func (b *p2c) Done(i int) {
	if i >= 0 && i < len(b.inflight) {
		b.inflight[i].Add(-1)
	}
}

// --- ring hash ---------------------------------------------------------------------------------

// PointsPerWeight is how many ring points a ring-hash endpoint gets per unit of weight (ketama's 160).
const PointsPerWeight = 160

// maxRingPoints bounds the ring's size whatever the weights are: beyond it every endpoint's points
// are scaled down in proportion (each keeps at least one digest's four). Below it an endpoint's
// points depend on its own address and weight only, so removing one endpoint moves no other
// endpoint's keys; above it the scale depends on the whole set, and removing one moves some keys
// between the others. 1<<20 (160 points per unit of weight: a total weight of 6553) keeps ordinary
// sets below it, and places every key as the ring did before weights were bounded.
const maxRingPoints = 1 << 20

type ringHash struct {
	points []uint32 // sorted
	owner  []int32  // owner[i] is the endpoint of points[i]
}

// NewRingHash returns a ketama-style consistent-hash ring: each endpoint gets PointsPerWeight points
// per unit of weight, four per MD5 digest of "addr-N", so removing an endpoint only moves its keys.
// Past maxRingPoints in all, every endpoint's share of points is scaled down alike (and an
// endpoint's removal then moves some keys between the others too).
func NewRingHash(eps []Endpoint) Balancer {
	var total int64 // at most len(eps)*MaxWeight*PointsPerWeight: no overflow
	for _, e := range eps {
		total += int64(e.weight()) * PointsPerWeight
	}
	scale := 1.0
	if total > maxRingPoints {
		scale = float64(maxRingPoints) / float64(total)
	}
	digests := make([]int, len(eps))
	n := 0
	for i, e := range eps {
		digests[i] = max(1, int(float64(e.weight()*PointsPerWeight/4)*scale))
		n += digests[i]
	}
	// Each point is its hash above its owner's index, appended in owner order: a stable sort by
	// hash (radixSort) orders points by hash, ties by owner.
	pts := make([]uint64, 0, 4*n)
	var buf []byte
	for i, e := range eps {
		buf = append(buf[:0], e.Addr...)
		buf = append(buf, '-')
		prefix := len(buf)
		for j := range digests[i] {
			buf = strconv.AppendInt(buf[:prefix], int64(j), 10)
			d := md5.Sum(buf)
			for k := range 4 {
				pts = append(pts, uint64(binary.LittleEndian.Uint32(d[k*4:]))<<32|uint64(i))
			}
		}
	}
	radixSort(pts)
	r := &ringHash{points: make([]uint32, len(pts)), owner: make([]int32, len(pts))}
	for i, p := range pts {
		r.points[i], r.owner[i] = uint32(p>>32), int32(uint32(p))
	}
	return r
}

// radixSort sorts pts by their upper 32 bits, stably: four passes of a byte each, several times
// faster than a comparison sort on a ring of 1<<20 points, which a Cluster builds on every change
// of its available endpoints.
func radixSort(pts []uint64) {
	tmp := make([]uint64, len(pts))
	src, dst := pts, tmp
	for shift := 32; shift < 64; shift += 8 {
		var count [257]int
		for _, p := range src {
			count[(p>>shift)&0xff+1]++
		}
		for i := 1; i < len(count); i++ {
			count[i] += count[i-1]
		}
		for _, p := range src {
			d := (p >> shift) & 0xff
			dst[count[d]] = p
			count[d]++
		}
		src, dst = dst, src
	}
	// An even number of passes leaves the result in pts.
}

func (r *ringHash) Pick(key uint64) int {
	if len(r.points) == 0 {
		return -1
	}
	h := uint32(key>>32) ^ uint32(key)
	i, _ := slices.BinarySearch(r.points, h)
	if i == len(r.points) {
		i = 0
	}
	return int(r.owner[i])
}

func (r *ringHash) Done(int) {}

// --- maglev ------------------------------------------------------------------------------------

// MaglevTableSize is the maglev lookup table size (a prime much larger than the endpoint count).
const MaglevTableSize = 65537

type maglev struct{ table []int32 }

// NewMaglev returns a maglev consistent-hash balancer (Eisenbud et al., NSDI 2016) with weights:
// each endpoint fills lookup-table slots along its own permutation in proportion to its weight.
func NewMaglev(eps []Endpoint) Balancer {
	m := &maglev{}
	n := len(eps)
	if n == 0 {
		return m
	}
	const size = MaglevTableSize
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	var wmax int64
	for i, e := range eps {
		offset[i] = xxhash.Sum64String(e.Addr) % size
		skip[i] = xxhash.Sum64String(e.Addr+"#skip")%(size-1) + 1
		wmax = max(wmax, int64(e.weight()))
	}
	m.table = make([]int32, size)
	for i := range m.table {
		m.table[i] = -1
	}
	filled := 0
	count := make([]int64, n) // int64: count*wmax reaches MaglevTableSize*MaxWeight
	for round := int64(1); filled < size; round++ {
		for i, e := range eps {
			// Endpoint i may own at most round*weight/wmax slots after this round.
			if count[i]*wmax >= round*int64(e.weight()) {
				continue
			}
			for {
				c := (offset[i] + next[i]*skip[i]) % size
				next[i]++
				if m.table[c] < 0 {
					m.table[c] = int32(i)
					count[i]++
					filled++
					break
				}
			}
			if filled == size {
				break
			}
		}
	}
	return m
}

func (m *maglev) Pick(key uint64) int {
	if len(m.table) == 0 {
		return -1
	}
	return int(m.table[key%MaglevTableSize])
}

func (m *maglev) Done(int) {}
