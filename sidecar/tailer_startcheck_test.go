package sidecar

import (
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCheckAfterReadSeesCopyTruncateBehindTheRead runs the start check that follows a read as
// readOnce does, with copytruncate falling between the read and the check, and app.log regrown
// with the same first line: the fingerprint (that line) still matches, but the bytes just read are
// no longer in the file. The check must notice and start over, keeping the old content's
// fingerprint for the copy, so that the copy is read from where app.log was delivered and every
// line ships once. The check used to take the regrown file's first bytes into the fingerprint
// instead (no byte after the fingerprinted line was compared): after the truncation showed, the copy
// no longer matched that fingerprint and was shipped again from its start.
func TestCheckAfterReadSeesCopyTruncateBehindTheRead(t *testing.T) {
	c := startCopyTruncate(t, 1) // app.log is "old-0000\n", delivered and fingerprinted
	app, tl, rs, step := c.app, c.tl, c.rs, c.step
	tf := rs.byPath[app]
	if tf == nil || tf.fpLen != int64(len(c.data)) {
		t.Fatalf("app.log not tracked with its first line fingerprinted: %+v", tf)
	}
	mid := numbered("mid", 0, 3)
	appendFile(t, app, mid...)
	// The read, as readOnce makes it.
	base := tf.off + int64(len(tf.partial))
	data := make([]byte, 64)
	n, _ := tf.f.ReadAt(data, base)
	data = data[:n]
	if n == 0 {
		t.Fatal("nothing to read")
	}
	// copytruncate, and the writer starts app.log again with the same first line.
	whole, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(app+".1", whole, 0o644); err != nil {
		t.Fatal(err)
	}
	settled := time.Now().Add(-2 * time.Second) // not a copy still being written
	if err := os.Chtimes(app+".1", settled, settled); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(app, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, app, c.old[0], "new-0000")

	// The check after the read.
	if !tl.resetIfStartChanged(rs, tf, base, data) {
		t.Errorf("content read gone from app.log not noticed; fingerprint now covers %q", tf.head)
		if read := append(c.data, data...); !bytes.HasPrefix(read, tf.head) {
			t.Errorf("fingerprint grew to bytes that were not read: %q, read %q", tf.head, read)
		}
		return
	}
	step()
	step()
	stopStepped(tl, rs)
	want := append(append(append([]string(nil), c.old...), mid...), c.old[0], "new-0000")
	if diff := cmp.Diff(want, lines(readShipped(t, c.out))); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}
