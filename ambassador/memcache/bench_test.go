package memcache_test

import (
	"testing"

	"github.com/podblocks/podblocks/ambassador/memcache"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
)

// BenchmarkReadRequest parses pipelined sets.
func BenchmarkReadRequest(b *testing.B) {
	twemproxytest.BenchmarkReadRequest(b, &memcache.Protocol{}, "set key:000123 0 0 10\r\n0123456789\r\n", 2)
}
