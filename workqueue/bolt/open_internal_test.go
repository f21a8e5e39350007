package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// TestOpenSyncsEpochWithNoSync: with WithNoSync, Open fsyncs the file once after it commits its
// epoch (without, a machine crash could lose the epoch, and the next Open's tokens would be this
// one's); without WithNoSync, the commit's own fsync does. A failed fsync fails Open and unlocks
// the file.
func TestOpenSyncsEpochWithNoSync(t *testing.T) {
	var syncs int
	var fail error
	syncDB = func(db *bbolt.DB) error {
		syncs++
		if fail != nil {
			return fail
		}
		return db.Sync()
	}
	defer func() { syncDB = (*bbolt.DB).Sync }()
	path := filepath.Join(t.TempDir(), "q.db")
	for _, tt := range []struct {
		opts  []Option
		syncs int
	}{
		{nil, 0},
		{[]Option{WithNoSync()}, 1},
	} {
		syncs = 0
		q, err := Open(context.Background(), path, tt.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if syncs != tt.syncs {
			t.Errorf("Open with %d options: %d fsyncs of its own, want %d", len(tt.opts), syncs, tt.syncs)
		}
	}
	fail = errors.New("disk gone")
	if q, err := Open(context.Background(), path, WithNoSync()); !errors.Is(err, fail) {
		if err == nil {
			q.Close()
		}
		t.Fatalf("Open with a failing fsync: %v, want %v", err, fail)
	}
	fail = nil
	q, err := Open(context.Background(), path, WithNoSync(), WithOpenTimeout(time.Second))
	if err != nil {
		t.Fatalf("Open after an Open whose fsync failed: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}
