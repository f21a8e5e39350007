//go:build !amd64 || purego

package sidecar

// scanBlocks counts the '\n' bytes in the first len(s)&^63 bytes of s and reports whether those
// bytes hold a flagged one (see scanText).
func scanBlocks(s []byte, json bool) (newlines int, flagged bool) { return scanBlocksGo(s, json) }
