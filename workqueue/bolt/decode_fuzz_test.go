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
	for i, r := range tests {
		epoch := uint64(i * 1000)
		got, gotEpoch, err := decode(encode(r, epoch))
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		if r.Payload == nil {
			r.Payload = []byte{}
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
		if gotEpoch != epoch {
			t.Errorf("round trip of epoch %d: %d", epoch, gotEpoch)
		}
	}
}

// TestDecodeVersion1 reads a record written before lease epochs: its lease has epoch 0.
func TestDecodeVersion1(t *testing.T) {
	// ID 7, attempt 2, priority -1, not before 0, deadline 10, added 0, not dead, key "k", reason "",
	// payload "p".
	v1 := []byte{1, 0, 0, 0, 0, 0, 0, 0, 7, 4, 1, 0, 20, 0, 0, 1, 'k', 0, 'p'}
	got, epoch, err := decode(v1)
	if err != nil {
		t.Fatal(err)
	}
	want := workqueue.Record{ID: 7, Attempt: 2, Priority: -1, Deadline: time.Unix(0, 10), Key: "k", Payload: []byte("p")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("version 1 record (-want +got):\n%s", diff)
	}
	if epoch != 0 {
		t.Errorf("version 1 record's lease epoch %d, want 0", epoch)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(workqueue.Record{ID: 1}, 0))
	f.Add(encode(workqueue.Record{ID: 2, Key: "k", Payload: []byte("p"), Attempt: 2, Dead: true, Reason: "r"}, 3))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 7, 4, 1, 0, 20, 0, 0, 1, 'k', 0, 'p'})
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, epoch, err := decode(b)
		if err != nil {
			return
		}
		// A record that decodes re-encodes to one that decodes the same.
		r2, epoch2, err := decode(encode(r, epoch))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if r2.ID != r.ID || r2.Key != r.Key || r2.Reason != r.Reason || string(r2.Payload) != string(r.Payload) || r2.Attempt != r.Attempt || epoch2 != epoch {
			t.Fatalf("round trip changed %+v (epoch %d) to %+v (epoch %d)", r, epoch, r2, epoch2)
		}
	})
}
