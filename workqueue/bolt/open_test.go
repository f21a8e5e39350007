package bolt_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
)

// TestOpenRefusesBadOptionsWithoutCreatingTheFile: invalid options are refused with ErrInvalid
// before the file is created, so a typo leaves nothing behind.
func TestOpenRefusesBadOptionsWithoutCreatingTheFile(t *testing.T) {
	for name, opt := range map[string]bolt.Option{
		"max attempts -1": bolt.WithMaxAttempts(-1),
		"lease 0":         bolt.WithLeaseDuration(0),
		"lease -1s":       bolt.WithLeaseDuration(-1e9),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.db")
			q, err := bolt.Open(path, opt)
			if err == nil {
				q.Close()
			}
			if !errors.Is(err, workqueue.ErrInvalid) {
				t.Errorf("Open: %v, want ErrInvalid", err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Open with a bad option left the file: %v", err)
			}
		})
	}
}

// TestOpenMissingDirNamesPathOnce: an Open whose file cannot be made says so as the OS does,
// naming the path once, and is fs.ErrNotExist for a missing directory.
func TestOpenMissingDirNamesPathOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "q.db")
	q, err := bolt.Open(path)
	if err == nil {
		q.Close()
		t.Fatal("Open in a missing directory: no error")
	}
	if !errors.Is(err, fs.ErrNotExist) || strings.Count(err.Error(), path) != 1 || !strings.HasPrefix(err.Error(), "open "+path+": ") {
		t.Errorf("Open in a missing directory: %q, want fs.ErrNotExist as \"open %s: ...\", the path once", err, path)
	}
}
