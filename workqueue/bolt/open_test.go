package bolt_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// TestOpenRefusesBadOptionsWithoutCreatingTheFile: invalid options are refused with ErrInvalid
// before the file is created, so a typo leaves nothing behind. A negative open timeout used to be
// taken (as one try of the lock).
func TestOpenRefusesBadOptionsWithoutCreatingTheFile(t *testing.T) {
	for name, opt := range map[string]bolt.Option{
		"max attempts -1":  bolt.WithMaxAttempts(-1),
		"lease 0":          bolt.WithLeaseDuration(0),
		"lease -1s":        bolt.WithLeaseDuration(-1e9),
		"open timeout -1s": bolt.WithOpenTimeout(-time.Second),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.db")
			q, err := bolt.Open(context.Background(), path, opt)
			if err == nil {
				q.Close()
			}
			if !errors.Is(err, workqueue.ErrInvalid) {
				t.Errorf("Open: %v, want ErrInvalid", err)
			} else if strings.HasPrefix(name, "open timeout") && !strings.Contains(err.Error(), name) {
				t.Errorf("Open: %q, want it to name the %s", err, name)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Open with a bad option left the file: %v", err)
			}
		})
	}
}

// TestOpenTimeoutZero: an open timeout of 0 (wait for as long as the file is held) opens a file
// nobody holds at once.
func TestOpenTimeoutZero(t *testing.T) {
	q, err := bolt.Open(context.Background(), filepath.Join(t.TempDir(), "q.db"), bolt.WithOpenTimeout(0))
	if err != nil {
		t.Fatalf("Open with an open timeout of 0: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenLockedSaysSo: an Open of a file that another Open holds (here, in this process) waits
// for WithOpenTimeout and then says that the file is locked and how long it waited, naming the path
// once; the error is ErrLocked (and still bbolt's ErrTimeout).
func TestOpenLockedSaysSo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	openT(t, path)
	start := time.Now()
	q, err := bolt.Open(context.Background(), path, bolt.WithOpenTimeout(300*time.Millisecond))
	took := time.Since(start)
	if err == nil {
		q.Close()
		t.Fatal("second Open of a file held by another: no error")
	}
	want := "open " + path + ": workqueue/bolt: file locked by another Open, in this process or another: gave up after 300ms (WithOpenTimeout"
	if !strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), path) != 1 || !errors.Is(err, bolt.ErrLocked) || !errors.Is(err, berrors.ErrTimeout) {
		t.Errorf("second Open: %v, want ErrLocked (and bbolt's ErrTimeout) beginning %q", err, want)
	}
	if took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("second Open gave up after %v, want about 300ms", took)
	}
}

// TestOpenMissingDirNamesPathOnce: an Open whose file cannot be made says so as the OS does,
// naming the path once, and is fs.ErrNotExist for a missing directory.
func TestOpenMissingDirNamesPathOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "q.db")
	q, err := bolt.Open(context.Background(), path)
	if err == nil {
		q.Close()
		t.Fatal("Open in a missing directory: no error")
	}
	if !errors.Is(err, fs.ErrNotExist) || strings.Count(err.Error(), path) != 1 || !strings.HasPrefix(err.Error(), "open "+path+": ") {
		t.Errorf("Open in a missing directory: %q, want fs.ErrNotExist as \"open %s: ...\", the path once", err, path)
	}
}
