package bolt_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue/bolt"
)

// openFDs counts the file descriptors of this process open on path (-1 where /proc cannot tell).
func openFDs(t *testing.T, path string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

// TestOpenGivesUpTheWait: an Open that waits for a file another Open holds, with no
// open timeout (wait for as long as the file is held), returns soon after its ctx ends, with an
// error that is ErrLocked and the ctx's; it leaves no descriptor of the file open and the holder's
// queue as it was, and once the holder closes the file an Open takes it.
func TestOpenGivesUpTheWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	holder, err := bolt.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	before := openFDs(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	q, err := bolt.Open(ctx, path, bolt.WithOpenTimeout(0))
	took := time.Since(start)
	if err == nil {
		q.Close()
		t.Fatal("Open of a held file: no error")
	}
	if !errors.Is(err, bolt.ErrLocked) || !errors.Is(err, context.Canceled) {
		t.Errorf("Open cancelled while the file is held: %v, want ErrLocked and context.Canceled", err)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Errorf("Open returned after %v; want it soon after its ctx ended (300ms)", took)
	}
	if after := openFDs(t, path); after != before {
		t.Errorf("descriptors open on the file: %d before the cancelled Open, %d after", before, after)
	}
	if err := holder.Close(); err != nil {
		t.Fatalf("the holder's Close: %v", err)
	}
	q, err = bolt.Open(context.Background(), path, bolt.WithOpenTimeout(time.Second))
	if err != nil {
		t.Fatalf("Open once the holder closed the file: %v", err)
	}
	q.Close()
}

// TestOpenEndedCreatesNothing: an Open whose ctx has ended returns its error before
// the file is created.
func TestOpenEndedCreatesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q, err := bolt.Open(ctx, path)
	if err == nil {
		q.Close()
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Open with an ended ctx: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open with an ended ctx left the file: %v", err)
	}
}
