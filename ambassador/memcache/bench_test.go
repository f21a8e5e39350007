package memcache_test

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
)

// BenchmarkReadRequest parses pipelined sets.
func BenchmarkReadRequest(b *testing.B) {
	twemproxytest.BenchmarkReadRequest(b, &memcache.Protocol{}, "set key:000123 0 0 10\r\n0123456789\r\n", 2)
}

// BenchmarkMerge merges a gets of n keys split over 3 servers, one key in 5 a miss, with 64-byte
// values. Its "concat-only" sub-benchmark is the baseline: joining the fragments' VALUE blocks
// under one END in fragment order, the least any merge does. "read+merge" reads the fragments'
// replies with ReadResponse before it merges them, as the proxy does.
func BenchmarkMerge(b *testing.B) {
	for _, n := range []int{16, 100} {
		p := &memcache.Protocol{}
		line, frag, hits := "gets", make([]int, n), map[string]bool{}
		for i := range n {
			k := fmt.Sprintf("user:%06d", i)
			line += " " + k
			frag[i] = i * 7 % 3
			hits[k] = i%5 != 4
		}
		r, frags := split(b, p, line+"\r\n", frag, hits, func(string) string { return strings.Repeat("v", 64) })
		b.Run(fmt.Sprintf("keys=%d/concat-only", n), func(b *testing.B) {
			b.ReportAllocs()
			var out []byte
			for b.Loop() {
				out = out[:0]
				for _, f := range frags {
					out = append(out, f.Resp[:len(f.Resp)-len("END\r\n")]...)
				}
				out = append(out, "END\r\n"...)
			}
		})
		b.Run(fmt.Sprintf("keys=%d/memcache", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.Resp = r.Resp[:0]
				p.Merge(r, frags)
			}
		})
		replies := make([][]byte, len(frags))
		for f, fr := range frags {
			replies[f] = bytes.Clone(fr.Resp)
		}
		b.Run(fmt.Sprintf("keys=%d/read+merge", n), func(b *testing.B) {
			b.ReportAllocs()
			var rd bytes.Reader
			br := bufio.NewReader(&rd)
			for b.Loop() {
				for f, fr := range frags {
					rd.Reset(replies[f])
					br.Reset(&rd)
					fr.Resp = fr.Resp[:0]
					if err := p.ReadResponse(br, fr); err != nil {
						b.Fatal(err)
					}
				}
				r.Resp = r.Resp[:0]
				p.Merge(r, frags)
			}
		})
	}
}
