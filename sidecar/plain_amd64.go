//go:build amd64 && !purego

package sidecar

// plainBlocks reports whether the first len(s)&^63 bytes of s hold no byte that needs JSON escaping
// other than '\n' (see plainLines). SSE2, which every amd64 processor has: 64 bytes per step.
//
//go:noescape
func plainBlocks(s []byte) bool
