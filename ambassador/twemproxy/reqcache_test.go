package twemproxy

import "testing"

// The poller's request stash keeps at most reqCacheMax requests, none with a buffer over
// reqCacheBytes (those go to the sync.Pool, or are dropped over maxPooledBuf), and hands back the
// requests it keeps reset, their fragments with them.
func TestReqCacheBounds(t *testing.T) {
	var rc reqCache
	big := &Request{Resp: make([]byte, 0, reqCacheBytes+1)}
	rc.put(big)
	if len(rc.free) != 0 {
		t.Fatalf("a request with a %d-byte reply buffer was kept", cap(big.Resp))
	}
	parent := &Request{Buf: []byte("*1\r\n$4\r\nPING\r\n"), done: true}
	parent.frags = append(parent.frags, &Request{Buf: []byte("x")})
	rc.put(parent)
	if len(rc.free) != 2 {
		t.Fatalf("%d requests kept after putting one with a fragment, want 2", len(rc.free))
	}
	for range 2 {
		r := rc.get()
		if len(r.Buf) != 0 || len(r.frags) != 0 || r.done {
			t.Fatalf("a kept request was not reset: %+v", r)
		}
	}
	for range reqCacheMax + 10 {
		rc.put(new(Request))
	}
	if len(rc.free) != reqCacheMax {
		t.Fatalf("%d requests kept, want at most %d", len(rc.free), reqCacheMax)
	}
	var none *reqCache // the sync.Pool only
	none.put(none.get())
}
