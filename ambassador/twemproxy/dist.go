package twemproxy

import (
	"crypto/md5"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
)

const (
	ketamaPointsPerServer = 160
	ketamaPointsPerHash   = 4
)

type point struct {
	value uint32
	index uint32
}

// Continuum maps key hashes to server indexes the way one of twemproxy's distributions does. It is
// immutable once built and safe for concurrent use.
type Continuum struct {
	dist   Distribution
	points []point // ketama: sorted by value; modula/random: one entry per weight unit
}

// BuildContinuum builds the distribution over the servers whose live flag is true (all of them when
// live is nil), in the given order, as nutcracker builds it for a pool (ketama_update,
// modula_update, random_update). Server indexes in the result refer to the full servers slice.
func BuildContinuum(dist Distribution, servers []ServerConfig, live []bool) *Continuum {
	c := &Continuum{dist: dist}
	isLive := func(i int) bool { return live == nil || live[i] }
	nlive, total := 0, 0
	for i, s := range servers {
		if isLive(i) {
			nlive++
			total += s.Weight
		}
	}
	if nlive == 0 {
		return c
	}
	switch dist {
	case Ketama:
		var host []byte
		for i, s := range servers {
			if !isLive(i) {
				continue
			}
			// nutcracker computes this in single precision; each step is rounded to float32 here too.
			pct := float32(s.Weight) / float32(total)
			x := float32(pct * float32(ketamaPointsPerServer))
			x = float32(x / 4)
			x = float32(x * float32(nlive))
			perServer := uint32(math.Floor(float64(x)+0.0000000001)) * 4
			for pi := uint32(0); pi < perServer/ketamaPointsPerHash; pi++ {
				host = append(host[:0], s.Name...)
				host = append(host, '-')
				host = strconv.AppendUint(host, uint64(pi), 10)
				if len(host) > 85 { // snprintf into char[86]
					host = host[:85]
				}
				sum := md5.Sum(host)
				for a := range ketamaPointsPerHash {
					c.points = append(c.points, point{value: binary.LittleEndian.Uint32(sum[a*4:]), index: uint32(i)})
				}
			}
		}
		sort.SliceStable(c.points, func(a, b int) bool { return c.points[a].value < c.points[b].value })
	default: // modula, random: one slot per unit of weight
		for i, s := range servers {
			if !isLive(i) {
				continue
			}
			for range s.Weight {
				c.points = append(c.points, point{index: uint32(i)})
			}
		}
	}
	return c
}

// Empty reports whether the continuum has no live server.
func (c *Continuum) Empty() bool { return len(c.points) == 0 }

// Dispatch returns the server index for a key hash. The continuum must not be empty.
func (c *Continuum) Dispatch(hash uint32) int {
	switch c.dist {
	case Ketama:
		p := c.points
		lo, hi := 0, len(p) // first point with value >= hash, as ketama_dispatch finds it
		for lo < hi {
			mid := int(uint(lo+hi) >> 1)
			if p[mid].value < hash {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		if lo == len(p) {
			lo = 0
		}
		return int(p[lo].index)
	case Modula:
		return int(c.points[hash%uint32(len(c.points))].index)
	default:
		return int(c.points[rand.Uint32()%uint32(len(c.points))].index)
	}
}

// HashTagged returns the part of key nutcracker hashes under a two-character hash_tag: the bytes
// between the first tag[0] and the next tag[1] after it, if that span is non-empty; else all of key.
func HashTagged(key []byte, tag string) []byte {
	if len(tag) != 2 {
		return key
	}
	for i, b := range key {
		if b != tag[0] {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == tag[1] {
				if j-i > 1 {
					return key[i+1 : j]
				}
				return key
			}
		}
		return key
	}
	return key
}

// Placer decides which server of a pool a key goes to, exactly as nutcracker does
// (server_pool_idx): hash_tag, then the pool's hash, then its distribution.
type Placer struct {
	hash    HashFunc
	tag     string
	nserver int
	c       *Continuum
}

// NewPlacer returns the placer for p with the given live servers (nil: all live).
func NewPlacer(p *PoolConfig, live []bool) *Placer {
	h := p.HashFunc
	if h == nil {
		h = hashes[DefaultHash]
	}
	return &Placer{hash: h, tag: p.HashTag, nserver: len(p.Servers), c: BuildContinuum(p.Distribution, p.Servers, live)}
}

// Place returns the index (into PoolConfig.Servers) of key's server, or -1 when no server is live.
func (pl *Placer) Place(key []byte) int {
	if pl.c.Empty() {
		return -1
	}
	if pl.nserver == 1 {
		return int(pl.c.points[0].index)
	}
	if pl.tag != "" {
		key = HashTagged(key, pl.tag)
	}
	var h uint32
	if len(key) > 0 && pl.c.dist != Random {
		h = pl.hash(key)
	}
	return pl.c.Dispatch(h)
}
