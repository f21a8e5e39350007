package sidecar

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// A copy recognised as the copy of app.log by comparing it with app.log's current start waits for
// app.log's truncation. When the Tailer has read nothing of app.log since its last truncation (it was
// held back for a deferred sibling, or the scan came before its read), only those compared bytes
// tell a truncation of it: if app.log then regrows past the Tailer's offset (0) before the Tailer
// looks, the copy waited for good and its lines were never shipped (70 lines of app.log.36 in a
// TestCopyTruncateCountsOnlyTheInherentWindow run on a loaded machine). The scan, the truncation and
// the reads are driven step by step here to put them in that order.
func TestCopyOfAnUnreadFileSeesItsTruncation(t *testing.T) {
	c := startCopyTruncate(t, 200)
	app, tl, rs := c.app, c.tl, c.rs
	// First rotation: the Tailer notices it at the next scan, app.log is then at offset 0.
	if err := os.WriteFile(app+".1", c.data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(app, 0); err != nil {
		t.Fatal(err)
	}
	mid := numbered("mid", 0, 200) // over 1 KiB: the copy is not deferred as maybe incomplete
	appendFile(t, app, mid...)
	// Second rotation's copy, seen by a scan before app.log is read again and before the truncation.
	data, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(app+".2", data, 0o644); err != nil {
		t.Fatal(err)
	}
	tl.scan(rs, false)
	// The truncation, and app.log regrows past the Tailer's offset before any read of it.
	if err := os.Truncate(app, 0); err != nil {
		t.Fatal(err)
	}
	fresh := numbered("new", 0, 300)
	appendFile(t, app, fresh...)
	for range 3 {
		c.step()
	}
	stopStepped(tl, rs)
	want := append(append(c.old, mid...), fresh...)
	if diff := cmp.Diff(want, lines(readShipped(t, c.out))); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

// The Tailer can read lines written to app.log after copytruncate's copy and before its truncation,
// and its fingerprint then covers more than the copy holds. The copy is still the copy of what was
// delivered, and must be read from there (its end), not from its start (23 lines shipped twice in a
// TestCopyTruncateCountsOnlyTheInherentWindow run on a loaded machine).
func TestCopyShorterThanTheFingerprint(t *testing.T) {
	c := startCopyTruncate(t, 10) // under 1 KiB: the fingerprint covers every byte read
	app, tl, rs := c.app, c.tl, c.rs
	settledCopy(t, app+".1", c.data)
	late := numbered("late", 0, 5) // written between the copy and the truncation, and read
	appendFile(t, app, late...)
	if _, err := tl.readAll(context.Background(), rs); err != nil { // no scan yet: the copy is not seen
		t.Fatal(err)
	}
	c.truncateAndCheck(t, append(c.old, late...))
}

// settledCopy writes data to path, a copy of app.log, with an mtime a minute ago: settled, a scan
// does not defer it as a copy maybe still being written.
func settledCopy(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// truncateAndCheck truncates app.log, steps the Tailer three times, stops it and checks that it
// shipped want.
func (c *copyTruncateRun) truncateAndCheck(t *testing.T, want []string) {
	t.Helper()
	if err := os.Truncate(c.app, 0); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c.step()
	}
	stopStepped(c.tl, c.rs)
	if diff := cmp.Diff(want, lines(readShipped(t, c.out))); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

// copytruncate's truncation can fall between the scan's check of app.log and its look at the copy
// (as in TestCopyFoundBeforeTheTruncationIsNoticed), and app.log can have regrown by then with lines
// that begin like its old content (64 bytes or more): the copy then matches app.log's current start.
// It is still the copy of what was delivered from app.log before the truncation, and must be read
// from there, not told to wait for app.log's next truncation (which read it from app.log's new
// offset then, shipping its old lines again: 190 duplicates here). A second copytruncate follows.
func TestCopyMatchingTheRegrownStartOfItsOriginal(t *testing.T) {
	c := startCopyTruncate(t, 200)
	app, tl, rs := c.app, c.tl, c.rs
	copyTruncate(t, app, app+".1")
	again := c.old[:10] // 90 bytes, the same as the old content's start
	appendFile(t, app, again...)
	cand, ok := tl.openCandidate(rs, app+".1", false)
	if !ok {
		t.Fatal("app.log.1 not opened")
	}
	tl.discover(rs, &cand, false, time.Now())
	tl.reorder(rs)
	for range 3 {
		if _, err := tl.readAll(context.Background(), rs); err != nil {
			t.Fatal(err)
		}
	}
	// The second copytruncate of app.log.
	data, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	settledCopy(t, app+".2", data)
	c.truncateAndCheck(t, append(append([]string{}, c.old...), again...))
}
