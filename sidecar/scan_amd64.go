//go:build amd64 && !purego

package sidecar

// scanBlocks counts the '\n' bytes in the first len(s)&^63 bytes of s and reports whether those
// bytes hold a flagged one (see scanText): 64 bytes per step, in 32-byte AVX2 registers where the
// processor has them, else in SSE2's 16-byte ones (every amd64 processor has those).
func scanBlocks(s []byte, json bool) (newlines int, flagged bool) {
	if hasAVX2 {
		return scanBlocksAVX2(s, json)
	}
	return scanBlocksSSE2(s, json)
}

var hasAVX2 = cpuAVX2()

//go:noescape
func scanBlocksSSE2(s []byte, json bool) (newlines int, flagged bool)

//go:noescape
func scanBlocksAVX2(s []byte, json bool) (newlines int, flagged bool)

func cpuAVX2() bool
