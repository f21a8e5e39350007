package twemproxy_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
)

// heapInUse returns the bytes of live heap objects after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// A client's reply buffer grown by one large reply is not kept once the reply is written: 32
// clients that each got one 512 KiB value hold no more than 4 MiB between them afterwards. The old
// code kept each client's grown buffer for the life of its connection when the socket took the
// whole reply at once: 32 clients held 16.2 MiB more (a 512 KiB array each).
func TestLargeReplyBufferNotKept(t *testing.T) {
	const (
		clients = 32
		size    = 512 << 10
		most    = 4 << 20
	)
	be := startFakeRedis(t, bigValues(strings.Repeat("x", size)))
	for _, mode := range clientModes {
		t.Run(mode.name, func(t *testing.T) {
			addr, _, _ := twemproxytest.StartPool(t, "r", true, "", []string{be.addr()}, twemproxy.Protocols{Redis: &redis.Protocol{}}, mode.opts...)
			cs := make([]*respClient, clients)
			for i := range cs {
				cs[i] = dialResp(t, addr)
				if got := cs[i].do(t, "GET", "small"); got != "$v-small" {
					t.Fatalf("GET small: %q", got)
				}
			}
			before := heapInUse()
			for _, c := range cs {
				if got := c.do(t, "GET", "big"); len(got) != 1+len("big")+size {
					t.Fatalf("GET big: %d bytes, want %d", len(got), 1+len("big")+size)
				}
			}
			grown := heapInUse() - before
			t.Logf("%d clients after one %d KiB reply each: heap grew %.1f MiB", clients, size>>10, float64(grown)/(1<<20))
			if grown > most {
				t.Errorf("%d clients after one %d KiB reply each hold %.1f MiB more heap, want at most %d MiB",
					clients, size>>10, float64(grown)/(1<<20), most>>20)
			}
			runtime.KeepAlive(cs)
		})
	}
}

// A large reply is held whole on its way, in its request's buffer, but not copied again to the
// client's out: the proxy allocates at most 1.5 times a 1 MiB reply for it (the backend sends a
// reply made once; the client discards it as it reads). The old code copied it into out: 2.02
// times the reply where out had no room (portable clients, whose out a stall always replaces), 1.01
// where the client's out kept the array of its last large reply (see TestLargeReplyBufferNotKept).
func TestLargeReplyAllocations(t *testing.T) {
	const size = 1 << 20
	value := bulk(strings.Repeat("x", size)) // made once: the backend allocates nothing for it
	be := startFakeRedis(t, func(conn, n int, args []string) string { return value })
	for _, mode := range clientModes {
		t.Run(mode.name, func(t *testing.T) {
			addr, _, _ := twemproxytest.StartPool(t, "r", true, "", []string{be.addr()}, twemproxy.Protocols{Redis: &redis.Protocol{}}, mode.opts...)
			c := dialResp(t, addr)
			reply := int64(len(value))
			res := measureRounds(t, c, []byte(encodeCmd("GET", "big")), reply)
			perReply := float64(res.AllocedBytesPerOp()) / float64(reply)
			t.Logf("%d-byte reply: %d B/op, %d allocs/op (%.2f times the reply), %v/op",
				reply, res.AllocedBytesPerOp(), res.AllocsPerOp(), perReply, time.Duration(res.NsPerOp()))
			if perReply > 1.5 {
				t.Errorf("the proxy allocated %.2f times a %d-byte reply for it, want at most 1.5", perReply, reply)
			}
		})
	}
}

// A client's out grown past maxPooledBuf by many small pipelined replies, none of them large, is
// kept: a 1000-GET batch of 100-byte values (108 KB of replies per write) allocates per request no
// more than 1.5 times what a 200-GET batch (21.6 KB) does. 41eef2e dropped out whenever its array
// passed maxPooledBuf, whatever grew it, so a native client reallocated it for every batch: 3.26
// times the 200-GET batch's bytes per request.
func TestPipelinedSmallRepliesKeepOut(t *testing.T) {
	val := strings.Repeat("y", 100)
	be := startFakeRedis(t, func(conn, n int, args []string) string { return bulk(val) })
	for _, mode := range clientModes {
		t.Run(mode.name, func(t *testing.T) {
			addr, _, _ := twemproxytest.StartPool(t, "r", true, "", []string{be.addr()}, twemproxy.Protocols{Redis: &redis.Protocol{}}, mode.opts...)
			perReq := func(batchN int) float64 {
				res := measureRounds(t, dialResp(t, addr), getBatch(batchN), int64(batchN*len(bulk(val))))
				return float64(res.AllocedBytesPerOp()) / float64(batchN)
			}
			small, large := perReq(200), perReq(1000)
			t.Logf("B per request: batch 200 %.0f, batch 1000 %.0f (%.2fx)", small, large, large/small)
			if large > 1.5*small {
				t.Errorf("a 1000-GET batch allocates %.0f B per request, %.2f times a 200-GET batch's %.0f: out is reallocated per batch",
					large, large/small, small)
			}
		})
	}
}
