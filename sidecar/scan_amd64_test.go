//go:build amd64 && !purego

package sidecar

import "testing"

// scanImpls are the assembly versions of scanBlocks this processor runs, by name.
func scanImpls() map[string]func([]byte, bool) (int, bool) {
	impls := map[string]func([]byte, bool) (int, bool){"scanBlocksSSE2": scanBlocksSSE2}
	if hasAVX2 {
		impls["scanBlocksAVX2"] = scanBlocksAVX2
	}
	return impls
}

// BenchmarkScanBlocks scans a read chunk of log lines like bench/sidecar's, raw and for JSON.
func BenchmarkScanBlocks(b *testing.B) {
	line := []byte("2026-11-25T23:00:00.000Z INFO request handled path=/api/v1/items/123456 status=200 dur=42ms\n")
	var s []byte
	for len(s) < 256<<10 {
		s = append(s, line...)
	}
	for name, scan := range scanImpls() {
		for _, json := range []bool{false, true} {
			mode := "raw"
			if json {
				mode = "json"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				b.SetBytes(int64(len(s)))
				for b.Loop() {
					scan(s, json)
				}
			})
		}
	}
}
