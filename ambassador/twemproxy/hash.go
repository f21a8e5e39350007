package twemproxy

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"
)

// HashFunc maps a key to a 32-bit value, as one of twemproxy's key hashes does. Keys are bytes;
// where twemproxy's C code reads a key through a signed char, the byte is sign-extended here too,
// so keys with bytes >= 0x80 hash exactly as nutcracker hashes them.
type HashFunc func(key []byte) uint32

// hashes holds every hash function twemproxy's "hash:" directive accepts, by name.
var hashes = map[string]HashFunc{
	"one_at_a_time": HashOneAtATime,
	"md5":           HashMD5,
	"crc16":         HashCRC16,
	"crc32":         HashCRC32,
	"crc32a":        HashCRC32a,
	"fnv1_64":       HashFNV1_64,
	"fnv1a_64":      HashFNV1a64,
	"fnv1_32":       HashFNV1_32,
	"fnv1a_32":      HashFNV1a32,
	"hsieh":         HashHsieh,
	"murmur":        HashMurmur,
	"jenkins":       HashJenkins,
}

// LookupHash returns the hash function twemproxy calls name, or an error for an unknown name.
func LookupHash(name string) (HashFunc, error) {
	h, ok := hashes[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownHash, name)
	}
	return h, nil
}

// HashNames lists the accepted hash names, sorted.
func HashNames() []string {
	names := make([]string, 0, len(hashes))
	for n := range hashes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// signed returns b as C's (uint32_t)(char)b on a platform with a signed char.
func signed(b byte) uint32 { return uint32(int32(int8(b))) }

// HashOneAtATime is Bob Jenkins' one-at-a-time hash ("one_at_a_time").
func HashOneAtATime(key []byte) uint32 {
	var v uint32
	for _, b := range key {
		v += signed(b)
		v += v << 10
		v ^= v >> 6
	}
	v += v << 3
	v ^= v >> 11
	v += v << 15
	return v
}

// HashMD5 is the first four bytes of the key's MD5 digest, little-endian ("md5").
func HashMD5(key []byte) uint32 {
	sum := md5.Sum(key)
	return binary.LittleEndian.Uint32(sum[:4])
}

// crc16Table is the CRC-16/XMODEM (polynomial 0x1021) table.
var crc16Table = func() (t [256]uint32) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = uint32(c)
	}
	return t
}()

// HashCRC16 is nutcracker 0.5.0's "crc16" (the version Debian ships): the XMODEM table driven with
// a 32-bit register that is never masked to 16 bits, so the result keeps bits of earlier bytes
// above bit 15. (Later twemproxy releases switched to the kernel's CRC-16; placement follows 0.5.0.)
func HashCRC16(key []byte) uint32 {
	var crc uint32
	for _, b := range key {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^b]
	}
	return crc
}

// HashCRC32 is libmemcached's crc32 variant: bits 16..30 of the IEEE CRC-32 ("crc32").
func HashCRC32(key []byte) uint32 {
	return (crc32.ChecksumIEEE(key) >> 16) & 0x7fff
}

// HashCRC32a is the IEEE CRC-32 of the key ("crc32a").
func HashCRC32a(key []byte) uint32 { return crc32.ChecksumIEEE(key) }

const (
	fnv64Init  = 0xcbf29ce484222325
	fnv64Prime = 0x100000001b3
	fnv32Init  = 2166136261
	fnv32Prime = 16777619
)

// HashFNV1_64 is 64-bit FNV-1 truncated to 32 bits ("fnv1_64").
func HashFNV1_64(key []byte) uint32 {
	var h uint64 = fnv64Init
	for _, b := range key {
		h *= fnv64Prime
		h ^= uint64(int64(int8(b)))
	}
	return uint32(h)
}

// HashFNV1a64 is twemproxy's "fnv1a_64", the default: FNV-1a computed in 32 bits with the 64-bit
// offset basis and prime truncated to 32 bits (so it is not the textbook FNV-1a 64).
func HashFNV1a64(key []byte) uint32 {
	h := uint32(fnv64Init & 0xffffffff)
	for _, b := range key {
		h ^= signed(b)
		h *= uint32(fnv64Prime & 0xffffffff)
	}
	return h
}

// HashFNV1_32 is 32-bit FNV-1 ("fnv1_32").
func HashFNV1_32(key []byte) uint32 {
	h := uint32(fnv32Init)
	for _, b := range key {
		h *= fnv32Prime
		h ^= signed(b)
	}
	return h
}

// HashFNV1a32 is 32-bit FNV-1a ("fnv1a_32").
func HashFNV1a32(key []byte) uint32 {
	h := uint32(fnv32Init)
	for _, b := range key {
		h ^= signed(b)
		h *= fnv32Prime
	}
	return h
}

func get16(b []byte) uint32 { return uint32(b[1])<<8 | uint32(b[0]) }

// HashHsieh is Paul Hsieh's SuperFastHash ("hsieh").
func HashHsieh(key []byte) uint32 {
	if len(key) == 0 {
		return 0
	}
	var h uint32
	rem := len(key) & 3
	n := len(key) >> 2
	p := key
	for ; n > 0; n-- {
		h += get16(p)
		tmp := get16(p[2:])<<11 ^ h
		h = h<<16 ^ tmp
		p = p[4:]
		h += h >> 11
	}
	switch rem {
	case 3:
		h += get16(p)
		h ^= h << 16
		h ^= signed(p[2]) << 18
		h += h >> 11
	case 2:
		h += get16(p)
		h ^= h << 11
		h += h >> 17
	case 1:
		h += uint32(p[0])
		h ^= h << 10
		h += h >> 1
	}
	h ^= h << 3
	h += h >> 5
	h ^= h << 4
	h += h >> 17
	h ^= h << 25
	h += h >> 6
	return h
}

// HashMurmur is MurmurHash2 seeded with 0xdeadbeef*len, little-endian ("murmur").
func HashMurmur(key []byte) uint32 {
	const m = 0x5bd1e995
	const r = 24
	length := uint32(len(key))
	h := (0xdeadbeef * length) ^ length
	p := key
	for len(p) >= 4 {
		k := binary.LittleEndian.Uint32(p)
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		p = p[4:]
	}
	switch len(p) {
	case 3:
		h ^= uint32(p[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(p[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(p[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

func rot(x uint32, k uint) uint32 { return x<<k | x>>(32-k) }

// HashJenkins is Bob Jenkins' lookup3 hashlittle with initval 13, as libmemcached uses it ("jenkins").
func HashJenkins(key []byte) uint32 {
	length := uint32(len(key))
	a := 0xdeadbeef + length + 13
	b, c := a, a
	k := key
	for len(k) > 12 {
		a += binary.LittleEndian.Uint32(k)
		b += binary.LittleEndian.Uint32(k[4:])
		c += binary.LittleEndian.Uint32(k[8:])
		a -= c
		a ^= rot(c, 4)
		c += b
		b -= a
		b ^= rot(a, 6)
		a += c
		c -= b
		c ^= rot(b, 8)
		b += a
		a -= c
		a ^= rot(c, 16)
		c += b
		b -= a
		b ^= rot(a, 19)
		a += c
		c -= b
		c ^= rot(b, 4)
		b += a
		k = k[12:]
	}
	if len(k) == 0 {
		return c
	}
	var tail [12]byte
	copy(tail[:], k)
	a += binary.LittleEndian.Uint32(tail[0:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	c ^= b
	c -= rot(b, 14)
	a ^= c
	a -= rot(c, 11)
	b ^= a
	b -= rot(a, 25)
	c ^= b
	c -= rot(b, 16)
	a ^= c
	a -= rot(c, 4)
	b ^= a
	b -= rot(a, 14)
	c ^= b
	c -= rot(b, 24)
	return c
}
