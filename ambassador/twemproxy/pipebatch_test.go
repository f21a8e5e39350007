package twemproxy_test

import (
	"fmt"
	"io"
	"strings"
	"testing"
)

// BenchmarkProxyPipelinedValues: one client sends batches of n pipelined GETs of 100-byte values
// and reads the replies; an op is one batch. From 1000 GETs on (108 KB of replies) a batch's
// replies fill more than maxPooledBuf (64 KiB) of the client's out, which B/op shows if it is
// reallocated per batch.
func BenchmarkProxyPipelinedValues(b *testing.B) {
	val := strings.Repeat("y", 100)
	be := startFakeRedis(b, func(conn, n int, args []string) string { return bulk(val) })
	for _, mode := range clientModes {
		addr := startRedisPool(b, []string{be.addr()}, mode.opts...)
		for _, n := range []int{16, 200, 1000, 4000} {
			b.Run(fmt.Sprintf("%s/%d", mode.name, n), func(b *testing.B) {
				c, batch, want := dialResp(b, addr), getBatch(n), int64(n*len(bulk(val)))
				b.ReportAllocs()
				for b.Loop() {
					if err := c.roundTrip(batch, want); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/request")
			})
		}
	}
}

// getBatch returns n pipelined GETs of keys k0, k1, ...
func getBatch(n int) []byte {
	var batch []byte
	for i := range n {
		batch = append(batch, encodeCmd("GET", fmt.Sprintf("k%d", i))...)
	}
	return batch
}

// roundTrip writes req to c and reads want bytes of replies, which it discards.
func (c *respClient) roundTrip(req []byte, want int64) error {
	if _, err := c.c.Write(req); err != nil {
		return err
	}
	_, err := io.CopyN(io.Discard, c.r, want)
	return err
}

// measureRounds benchmarks round trips of req on c (want bytes of replies each), with their
// allocations; an error fails t.
func measureRounds(t *testing.T, c *respClient, req []byte, want int64) testing.BenchmarkResult {
	t.Helper()
	var failed error
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if failed = c.roundTrip(req, want); failed != nil {
				return
			}
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	return res
}
