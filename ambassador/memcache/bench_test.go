package memcache_test

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// BenchmarkReadRequest parses pipelined sets; "lines-only" is the baseline: splitting the same
// bytes into lines with bufio.
func BenchmarkReadRequest(b *testing.B) {
	one := "set key:000123 0 0 10\r\n0123456789\r\n"
	in := []byte(strings.Repeat(one, 1024))
	b.Run("lines-only", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(one)))
		rd := bytes.NewReader(in)
		br := bufio.NewReaderSize(rd, 16<<10)
		for b.Loop() {
			for range 2 {
				if _, err := br.ReadSlice('\n'); err != nil {
					rd.Reset(in)
					br.Reset(rd)
				}
			}
		}
	})
	b.Run("memcache", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(one)))
		p := &memcache.Protocol{}
		rd := bytes.NewReader(in)
		br := bufio.NewReaderSize(rd, 16<<10)
		var r twemproxy.Request
		for b.Loop() {
			if err := p.ReadRequest(br, &r); err != nil {
				rd.Reset(in)
				br.Reset(rd)
			}
		}
	})
}
