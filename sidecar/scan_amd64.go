//go:build amd64 && !purego

package sidecar

import "golang.org/x/sys/cpu"

// scanBlocks counts the '\n' bytes in the first len(s)&^63 bytes of s and reports whether those
// bytes hold a flagged one (see scanText): 64 bytes per step, in 32-byte AVX2 registers where the
// processor has them, else in SSE2's 16-byte ones (every amd64 processor has those).
func scanBlocks(s []byte, json bool) (newlines int, flagged bool) {
	if hasAVX2 {
		return scanBlocksAVX2(s, json)
	}
	return scanBlocksSSE2(s, json)
}

// hasAVX2: x/sys/cpu checks the highest CPUID leaf, the AVX2 bit, and that the operating system
// saves the YMM registers.
var hasAVX2 = cpu.X86.HasAVX2

//go:noescape
func scanBlocksSSE2(s []byte, json bool) (newlines int, flagged bool)

//go:noescape
func scanBlocksAVX2(s []byte, json bool) (newlines int, flagged bool)
