package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	"github.com/podblocks/podblocks/workqueue"
)

// TestEncodeDecode round-trips records of both versions: version 1 when the lease has no epoch (or
// there is no lease), version 2 when it has one.
func TestEncodeDecode(t *testing.T) {
	now := time.Unix(0, time.Now().UnixNano())
	recs := []workqueue.Record{
		{ID: 1},
		{ID: 2, Key: "k", Payload: []byte("p"), Priority: -3, Attempt: 2, NotBefore: now, Deadline: now.Add(time.Second), Added: now},
		{ID: 3, Dead: true, Reason: "max attempts", Payload: []byte{0, 1, 2}},
	}
	for _, r := range recs {
		for _, epoch := range []uint64{0, 1, 1 << 40} {
			b := encode(r, epoch)
			if want := map[bool]byte{true: recVersion1, false: recVersion}[epoch == 0]; b[0] != want {
				t.Errorf("encode(%+v, epoch %d) has version %d, want %d", r, epoch, b[0], want)
			}
			got, gotEpoch, err := decode(b)
			if err != nil {
				t.Fatalf("decode(encode(%+v, %d)): %v", r, epoch, err)
			}
			want := r
			if want.Payload == nil {
				want.Payload = []byte{}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("round trip with epoch %d (-want +got):\n%s", epoch, diff)
			}
			if gotEpoch != epoch {
				t.Errorf("round trip of epoch %d: %d", epoch, gotEpoch)
			}
		}
	}
}

// decodeVersion1 is decode as it was before lease epochs (version 1 only), what an older binary
// reads a file with.
func decodeVersion1(b []byte) (workqueue.Record, error) {
	var r workqueue.Record
	if len(b) < 9 || b[0] != recVersion1 {
		return r, errors.New("bad header")
	}
	r.ID = binary.BigEndian.Uint64(b[1:9])
	b = b[9:]
	var ints [5]int64
	for i := range ints {
		v, n := binary.Varint(b)
		if n <= 0 {
			return r, errors.New("bad varint")
		}
		ints[i], b = v, b[n:]
	}
	r.Attempt, r.Priority = int(ints[0]), int(ints[1])
	r.NotBefore, r.Deadline, r.Added = fromNano(ints[2]), fromNano(ints[3]), fromNano(ints[4])
	if len(b) < 1 {
		return r, errors.New("short record")
	}
	r.Dead, b = b[0] == 1, b[1:]
	var strs [2]string
	for i := range strs {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return r, errors.New("bad string")
		}
		strs[i], b = string(b[n:n+int(l)]), b[n+int(l):]
	}
	r.Key, r.Reason = strs[0], strs[1]
	r.Payload = append([]byte{}, b...)
	return r, nil
}

// TestFileWithoutLeasesReadsAsVersion1: every record of a file whose leases have all ended (acked,
// nacked, released, buried) decodes with the version 1 decoder, so an older binary can open it.
func TestFileWithoutLeasesReadsAsVersion1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(context.Background(), path, WithLeaseDuration(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := q.Add(ctx, []byte{byte(i)}, workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	end := []func(string) error{
		func(l string) error { return q.Ack(ctx, l) },
		func(l string) error { return q.Nack(ctx, l, time.Hour) },
		func(l string) error { return q.Release(ctx, l) },
		func(l string) error { return q.Bury(ctx, l, "r") },
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, f := range end {
		it, err := q.Lease(lctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := f(it.Lease); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := readVersion1(t, path)
	if err != nil {
		t.Error(err)
	}
	if n != 5 {
		t.Errorf("%d records in the file, want 5 (6 added, 1 acked)", n)
	}
}

// readVersion1 reads every record of the closed file at path with the version 1 decoder, as an
// older binary would: how many there are, and the first error.
func readVersion1(t *testing.T, path string) (n int, err error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketItems, bucketDead} {
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				n++
				if _, err := decodeVersion1(v); err != nil {
					return fmt.Errorf("%s record %x: %v", name, k, err)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// TestExpiredLeaseKeepsVersion2UntilNextLeaseEnds: a lease that ran out writes nothing, so its
// record stays version 2 (an older binary cannot open the file), even after a Shutdown, until the
// item's next lease ends by a Nack (see the record formats).
func TestExpiredLeaseKeepsVersion2UntilNextLeaseEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(context.Background(), path, WithLeaseDuration(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Lease(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.Shutdown(ctx); err != nil { // returns once the lease ran out
		t.Fatal(err)
	}
	if _, err := readVersion1(t, path); err == nil {
		t.Error("the record of a lease that ran out reads as version 1, want version 2")
	}
	q, err = Open(context.Background(), path, WithLeaseDuration(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Nack(ctx, it.Lease, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := readVersion1(t, path); err != nil || n != 1 {
		t.Errorf("after the next lease was nacked: %d records, %v; want 1 that reads as version 1", n, err)
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
