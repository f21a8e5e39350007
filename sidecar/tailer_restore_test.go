package sidecar

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRestoreReadsTheStartOnce restores a file from its checkpoint entry. The scan reads the file's
// first bytes once, checks them against the entry's fingerprint and keeps them, so the start check
// after the next read compares them instead of hashing them again; that check's read also serves
// the fingerprint's growth. restore used to read and hash them in fingerprint and drop them, the
// check after the next read read and hashed them a second time, and updateFP read them a third.
func TestRestoreReadsTheStartOnce(t *testing.T) {
	for _, active := range []bool{true, false} {
		name := map[bool]string{true: "app.log", false: "app.log.1"}[active]
		t.Run(name, func(t *testing.T) {
			e := newTailEnv(t)
			path := filepath.Join(e.logs, name)
			appendFile(t, path, "line-0", "line-1")
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			id := statID(t, path, fi)
			start := []byte("line-0\nline-1\n")
			tl := e.tailer(t)
			rs := tl.newRun()
			defer func() {
				for _, tf := range rs.files {
					tf.close()
				}
			}()
			rs.restored[id] = checkpointEntry{Path: path, Dev: id.dev, Ino: id.ino, FP: hashFP(start), FPLen: int64(len(start)), Offset: 7}

			tl.scan(rs, false)
			tf := rs.files[id]
			if tf == nil {
				t.Fatal("file not restored")
			}
			if rs.startReads != 1 || !bytes.Equal(tf.head, start) {
				t.Errorf("after restoring: %d reads of the start, head %q; want 1 read, head %q", rs.startReads, tf.head, start)
			}

			// Append and read: an active file's start is checked after the read by comparing tf.head.
			appendFile(t, path, "line-2")
			if _, err := tl.readOnce(context.Background(), rs, tf); err != nil {
				t.Fatal(err)
			}
			// One more read of the start: for the active file, the check, which also takes the
			// bytes the fingerprint grows to; for the rotated one, that growth alone.
			all := []byte("line-0\nline-1\nline-2\n")
			if rs.startReads != 2 || tf.off != int64(len(all)) || !bytes.Equal(tf.head, all) || tf.fp != hashFP(all) {
				t.Errorf("after the read: %d reads of the start, offset %d, head %q; want 2, %d, %q",
					rs.startReads, tf.off, tf.head, len(all), all)
			}
			if err := e.sink.Close(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"line-1", "line-2"}, lines(readShipped(t, e.out))); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
		})
	}
}
