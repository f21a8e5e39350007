// Package jsonstr appends strings as JSON string literals, without reflection and without
// allocating: for writers that build JSON by hand on a hot path (the sidecar's log records) or in
// a fixed layout (the sharding ambassador's nutcracker stats).
//
// The escaping is encoding/json's, but for HTML characters, which stay as they are (as with
// Encoder.SetEscapeHTML(false)), and for '\b' and '\f', written as \u0008 and \u000c: '"', '\\',
// '\n', '\r' and '\t' are escaped with a backslash, other bytes below 0x20 as \u00XX, each byte
// that is not part of valid UTF-8 as \ufffd, and U+2028 and U+2029 as \u2028 and \u2029.
// Everything else, non-ASCII text included, is written as it is.
package jsonstr

import (
	"encoding/binary"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// PlainWord reports whether none of the 8 bytes of x needs escaping: no control byte (< 0x20), no
// '"', no '\\' and no byte >= 0x80.
func PlainWord(x uint64) bool { return BadBits(x)&msb == 0 }

// BadBits has the high bit of a byte set (at least for the first such byte) where x holds a byte
// that needs escaping, so that several words' results can be or-ed before one test.
func BadBits(x uint64) uint64 {
	q := x ^ (lsb * '"')
	b := x ^ (lsb * '\\')
	return (x-lsb*0x20)&^x | (q-lsb)&^q | (b-lsb)&^b | x
}

// AppendString appends s to dst as a JSON string, quotes included.
func AppendString(dst []byte, s string) []byte { return Append(dst, []byte(s)) }

// Append appends s to dst as a JSON string, quotes included, eight plain bytes at a time.
func Append(dst, s []byte) []byte {
	dst = append(dst, '"')
	start, i := 0, 0
	for i < len(s) {
		for i+8 <= len(s) && PlainWord(binary.LittleEndian.Uint64(s[i:])) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
