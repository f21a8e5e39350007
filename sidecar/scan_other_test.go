//go:build !amd64 || purego

package sidecar

// scanImpls are the assembly versions of scanBlocks, by name: none here.
func scanImpls() map[string]func([]byte, bool) (int, bool) { return nil }
