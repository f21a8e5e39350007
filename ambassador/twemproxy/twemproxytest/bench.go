package twemproxytest

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// BenchmarkReadRequest parses one request after another, each one, with p from a buffer of 1024 of
// them; lines is how many lines one has. Its "lines-only" sub-benchmark is the baseline: splitting
// the same bytes into lines with bufio, the least any reader of a line protocol does.
func BenchmarkReadRequest(b *testing.B, p twemproxy.Protocol, one string, lines int) {
	b.Run("lines-only", func(b *testing.B) {
		benchLoop(b, one, func(br *bufio.Reader) error {
			for range lines {
				if _, err := br.ReadSlice('\n'); err != nil {
					return err
				}
			}
			return nil
		})
	})
	b.Run(p.Name(), func(b *testing.B) {
		var r twemproxy.Request
		benchLoop(b, one, func(br *bufio.Reader) error { return p.ReadRequest(br, &r) })
	})
}

// benchLoop runs read on a reader of 1024 times one, from the start again whenever it fails.
func benchLoop(b *testing.B, one string, read func(br *bufio.Reader) error) {
	in := []byte(strings.Repeat(one, 1024))
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	rd := bytes.NewReader(in)
	br := bufio.NewReaderSize(rd, 16<<10)
	for b.Loop() {
		if read(br) != nil {
			rd.Reset(in)
			br.Reset(rd)
		}
	}
}
