//go:build !amd64 || purego

package sidecar

// plainBlocks reports whether the first len(s)&^63 bytes of s hold no byte that needs JSON escaping
// other than '\n' (see plainLines).
func plainBlocks(s []byte) bool { return plainBlocksGo(s) }
