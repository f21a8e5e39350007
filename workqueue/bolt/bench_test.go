package bolt_test

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// enqueueAck runs Add, Lease, Ack per iteration from 256 goroutines (128 per core): the durable throughput that
// group commit gives (the goal: >= 20k enqueue+ack per second).
func enqueueAck(b *testing.B, q workqueue.Queue) {
	ctx := context.Background()
	payload := make([]byte, 100)
	b.ReportAllocs()
	b.SetParallelism(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := q.Add(ctx, payload, workqueue.AddOptions{}); err != nil {
				b.Error(err)
				return
			}
			it, err := q.Lease(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			if err := q.Ack(ctx, it.Lease); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

func BenchmarkBoltEnqueueAck(b *testing.B) {
	q, err := bolt.Open(context.Background(), filepath.Join(b.TempDir(), "q.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	enqueueAck(b, q)
}

// BenchmarkBoltEnqueueAsyncAck is the same with WithAsyncAck (adds durable on return, acks within 5ms).
func BenchmarkBoltEnqueueAsyncAck(b *testing.B) {
	q, err := bolt.Open(context.Background(), filepath.Join(b.TempDir(), "q.db"), bolt.WithAsyncAck())
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	enqueueAck(b, q)
}

// BenchmarkMemoryEnqueueAck is the baseline: the same engine without the journal.
func BenchmarkMemoryEnqueueAck(b *testing.B) {
	q, _ := workqueue.NewMemory()
	defer q.Close()
	enqueueAck(b, q)
}

// BenchmarkRawBoltBatch is bbolt's own DB.Batch doing the same three writes per item (put, update,
// delete) from 256 goroutines (128 per core): what a straightforward use of bbolt gives.
func BenchmarkRawBoltBatch(b *testing.B) {
	db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err })
	payload := make([]byte, 100)
	var seq uint64
	b.ReportAllocs()
	b.SetParallelism(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var k [8]byte
		for pb.Next() {
			var id uint64
			db.Batch(func(tx *bbolt.Tx) error {
				seq++
				id = seq
				binary.BigEndian.PutUint64(k[:], id)
				return tx.Bucket([]byte("b")).Put(k[:], payload)
			})
			db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put(k[:], payload) })
			db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Delete(k[:]) })
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}
