package bolt_test

import (
	"errors"
	"os"
	"path/filepath"
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
