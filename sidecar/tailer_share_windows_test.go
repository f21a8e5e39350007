//go:build windows

package sidecar

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestOpenedLogCanBeRenamedAndDeleted opens a log file the way the Tailer opens the files it lists,
// then renames it and deletes it, as a writer rotating it does: both succeed, and the open handle
// still reads the file. With os.Open, which does not share delete access, the rename failed with a
// sharing violation.
func TestOpenedLogCanBeRenamedAndDeleted(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, "a-0")
	tl := e.tailer(t)
	c, ok := tl.openCandidate(tl.newRun(), app, true)
	if !ok {
		t.Fatal("openCandidate failed")
	}
	defer c.f.Close()
	rotated := app + ".1"
	if err := os.Rename(app, rotated); err != nil {
		t.Fatalf("rename while the Tailer has the file open: %v", err)
	}
	appendFile(t, rotated, "a-1")
	if err := os.Remove(rotated); err != nil {
		t.Fatalf("delete while the Tailer has the file open: %v", err)
	}
	b := make([]byte, 16)
	n, _ := c.f.ReadAt(b, 0)
	if got := string(b[:n]); got != "a-0\na-1\n" {
		t.Errorf("read through the open handle after rename and delete: %q, want %q", got, "a-0\na-1\n")
	}
}

// TestTailerFollowsRotationByRenameAndDelete runs a Tailer while the writer rotates its file: the
// file is renamed away and later deleted while the Tailer follows it, and a new file takes its
// name. Every line is shipped.
func TestTailerFollowsRotationByRenameAndDelete(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, "a-0", "a-1")
	stop := runTailer(t, e.tailer(t))
	defer stop()
	e.waitLines(t, 2) // the Tailer has app.log open
	rotated := app + ".1"
	if err := os.Rename(app, rotated); err != nil {
		t.Fatalf("rename while the Tailer follows the file: %v", err)
	}
	appendFile(t, rotated, "a-2")
	appendFile(t, app, "b-0")
	e.waitLines(t, 4)
	if err := os.Remove(rotated); err != nil {
		t.Fatalf("delete while the Tailer follows the file: %v", err)
	}
	appendFile(t, app, "b-1")
	got := lines(e.waitLines(t, 5))
	stop()
	slices.Sort(got) // the two files are read side by side
	if diff := cmp.Diff([]string{"a-0", "a-1", "a-2", "b-0", "b-1"}, got); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}
