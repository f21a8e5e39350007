package redis_test

import (
	"testing"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
)

// BenchmarkReadRequest parses pipelined GETs and SETs shaped as redis-benchmark's, 4-key MGETs, and
// inline commands, plain and with quotes and escapes.
func BenchmarkReadRequest(b *testing.B) {
	b.Run("get", func(b *testing.B) {
		twemproxytest.BenchmarkReadRequest(b, &redis.Protocol{}, encode("GET", "key:000123"), 5)
	})
	b.Run("set", func(b *testing.B) {
		twemproxytest.BenchmarkReadRequest(b, &redis.Protocol{}, encode("SET", "key:__rand_int__", "xxx"), 7)
	})
	b.Run("mget", func(b *testing.B) {
		twemproxytest.BenchmarkReadRequest(b, &redis.Protocol{}, encode("MGET", "key:000001", "key:000002", "key:000003", "key:000004"), 11)
	})
	b.Run("inline-get", func(b *testing.B) {
		twemproxytest.BenchmarkReadRequest(b, &redis.Protocol{}, "GET key:000123\r\n", 1)
	})
	b.Run("inline-quoted", func(b *testing.B) {
		twemproxytest.BenchmarkReadRequest(b, &redis.Protocol{}, `SET "key 000123" "a\x41 b\n" 'it\'s'`+"\r\n", 1)
	})
}
