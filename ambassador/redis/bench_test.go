package redis_test

import (
	"testing"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
)

// BenchmarkReadRequest parses pipelined GETs, and SETs shaped as redis-benchmark's.
func BenchmarkReadRequest(b *testing.B) {
	b.Run("get", func(b *testing.B) {
		twemproxytest.BenchmarkReadRequest(b, &redis.Protocol{}, encode("GET", "key:000123"), 5)
	})
	b.Run("set", func(b *testing.B) {
		twemproxytest.BenchmarkReadRequest(b, &redis.Protocol{}, encode("SET", "key:__rand_int__", "xxx"), 7)
	})
}
