package redis_test

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// BenchmarkReadRequest parses pipelined GETs; "lines-only" is the baseline: splitting the same
// bytes into lines with bufio, the least any RESP reader does.
func BenchmarkReadRequest(b *testing.B) {
	one := encode("GET", "key:000123")
	in := []byte(strings.Repeat(one, 1024))
	b.Run("lines-only", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(one)))
		rd := bytes.NewReader(in)
		br := bufio.NewReaderSize(rd, 16<<10)
		for b.Loop() {
			for range 5 { // a GET is five lines
				if _, err := br.ReadSlice('\n'); err != nil {
					rd.Reset(in)
					br.Reset(rd)
				}
			}
		}
	})
	b.Run("redis", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(one)))
		p := &redis.Protocol{}
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
