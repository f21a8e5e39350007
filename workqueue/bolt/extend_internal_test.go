package bolt

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/podblocks/podblocks/workqueue"
)

// An Extend's new deadline is committed: after a restart past the lease's first deadline, the
// item is still leased, and the holder extends and acks it with its token from before.
func TestExtendSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	const lease = 2 * time.Second
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := Open(context.Background(), path, WithLeaseDuration(lease))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(lease * 3 / 5)
	if _, err := q.Extend(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}
	time.Sleep(lease * 3 / 5) // past the first deadline, well before the extended one
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if time.Now().After(it.Deadline.Add(lease * 3 / 5)) {
		t.Skip("the machine stalled past the extended deadline; nothing to judge")
	}
	q, err = Open(context.Background(), path, WithLeaseDuration(lease))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if s, _ := q.Stats(ctx); s.Leased != 1 || s.Ready != 0 {
		t.Fatalf("after the restart: %+v, want the item still leased", s)
	}
	if _, err := q.Extend(ctx, it.Lease); err != nil {
		t.Errorf("Extend(%q) after the restart: %v", it.Lease, err)
	}
	if err := q.Ack(ctx, it.Lease); err != nil {
		t.Errorf("Ack(%q) after the restart: %v", it.Lease, err)
	}
}

// A recovered lease extended in the next Open keeps the epoch of the Open that handed it out: after
// one more restart, past its first deadline, its holder's token still holds it.
func TestExtendedRecoveredLeaseKeepsEpoch(t *testing.T) {
	ctx := context.Background()
	const lease = 2 * time.Second
	q, old := openRecovered(t, lease)
	path := q.db.Path()
	time.Sleep(lease * 3 / 5)
	if _, err := q.Extend(ctx, old); err != nil {
		t.Fatalf("Extend(%q) of the recovered lease: %v", old, err)
	}
	time.Sleep(lease * 3 / 5)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err := Open(context.Background(), path, WithLeaseDuration(lease))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if s, _ := q.Stats(ctx); s.Leased != 1 {
		t.Fatalf("after the second restart: %+v, want the item still leased", s)
	}
	if err := q.Ack(ctx, old); err != nil {
		t.Errorf("Ack(%q) after the second restart: %v", old, err)
	}
}

// An Extend's change that reaches the file after its lease ended changes nothing: not after the
// item's delete (no acked item comes back), nor over the item's next lease.
func TestLateExtendChangesNothing(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "q.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().Truncate(time.Second)
	rec := func(attempt int, deadline time.Time) workqueue.Record {
		return workqueue.Record{ID: 1, Attempt: attempt, Deadline: deadline, Added: now, Payload: []byte("x")}
	}
	run := func(changes ...workqueue.Change) {
		t.Helper()
		err := db.Update(func(tx *bbolt.Tx) error {
			for _, b := range [][]byte{bucketItems, bucketDead, bucketMeta} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return apply(tx, []*commitReq{{changes: changes}}, 7)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	stored := func() (r workqueue.Record, epoch uint64, ok bool) {
		t.Helper()
		_ = db.View(func(tx *bbolt.Tx) error {
			v := tx.Bucket(bucketItems).Get([]byte{0, 0, 0, 0, 0, 0, 0, 1})
			if v == nil {
				return nil
			}
			r, epoch, err = decode(v)
			ok = err == nil
			return err
		})
		return r, epoch, ok
	}
	run(workqueue.Change{Op: workqueue.OpPut, Record: rec(1, now.Add(time.Minute))},
		workqueue.Change{Op: workqueue.OpDelete, Record: workqueue.Record{ID: 1}},
		workqueue.Change{Op: workqueue.OpExtend, Record: rec(1, now.Add(2*time.Minute))})
	if r, _, ok := stored(); ok {
		t.Errorf("an Extend after the Ack stored %+v", r)
	}
	run(workqueue.Change{Op: workqueue.OpPut, Record: rec(2, now.Add(time.Minute))},
		workqueue.Change{Op: workqueue.OpExtend, Record: rec(1, now.Add(2*time.Minute))})
	if r, epoch, ok := stored(); !ok || r.Attempt != 2 || !r.Deadline.Equal(now.Add(time.Minute)) || epoch != 7 {
		t.Errorf("an Extend of attempt 1 over attempt 2's lease: stored %+v epoch %d, want attempt 2's lease untouched", r, epoch)
	}
	run(workqueue.Change{Op: workqueue.OpExtend, Record: rec(2, now.Add(3*time.Minute))})
	if r, _, _ := stored(); !r.Deadline.Equal(now.Add(3 * time.Minute)) {
		t.Errorf("an Extend of the stored lease: deadline %v, want %v", r.Deadline, now.Add(3*time.Minute))
	}
}
