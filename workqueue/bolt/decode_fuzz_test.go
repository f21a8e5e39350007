package bolt

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

func TestEncodeDecode(t *testing.T) {
	now := time.Unix(0, time.Now().UnixNano())
	tests := []workqueue.Record{
		{ID: 1},
		{ID: 2, Key: "k", Payload: []byte("p"), Priority: -3, Attempt: 2, NotBefore: now, Deadline: now.Add(time.Second), Added: now},
		{ID: 3, Dead: true, Reason: "max attempts", Payload: []byte{0, 1, 2}},
	}
	for _, r := range tests {
		got, err := decode(encode(r))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		if r.Payload == nil {
			r.Payload = []byte{}
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(workqueue.Record{ID: 1}))
	f.Add(encode(workqueue.Record{ID: 2, Key: "k", Payload: []byte("p"), Attempt: 2, Dead: true, Reason: "r"}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decode(b)
		if err != nil {
			return
		}
		// A record that decodes re-encodes to one that decodes the same.
		r2, err := decode(encode(r))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if r2.ID != r.ID || r2.Key != r.Key || r2.Reason != r.Reason || string(r2.Payload) != string(r.Payload) || r2.Attempt != r.Attempt {
			t.Fatalf("round trip changed %+v to %+v", r, r2)
		}
	})
}
