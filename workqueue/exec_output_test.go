//go:build unix

package workqueue_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

// TestExecWorkerKeepsOutputItFindsThere: with an output root, OUTPUT_DIR is DIR/<ID> and starts
// empty, and what an earlier run left in it is moved aside, not removed: a Memory queue numbers its
// items anew after a restart, so a new item 1 must not wipe the results of the old item 1. A
// retry's partial results are kept the same way. An empty directory is simply reused. ExecWorker
// used to empty DIR/<ID> before each attempt, so the second item 1 replaced the first's results.
func TestExecWorkerKeepsOutputItFindsThere(t *testing.T) {
	out := t.TempDir()
	w, err := workqueue.NewExecWorker([]string{"sh", "-c", `ls -A "$OUTPUT_DIR" > "$WORK_ITEM_FILE.seen" && test ! -s "$WORK_ITEM_FILE.seen" && cp "$WORK_ITEM_FILE" "$OUTPUT_DIR/result"`},
		workqueue.WithOutputRoot(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"first", "second", "third"} {
		if err := w.Handle(context.Background(), &workqueue.Item{ID: "1", Payload: []byte(p), Attempt: 1}); err != nil {
			t.Fatalf("Handle %s: %v (OUTPUT_DIR not empty at the start?)", p, err)
		}
	}
	if err := os.Mkdir(filepath.Join(out, "2"), 0o755); err != nil { // empty: nothing to keep
		t.Fatal(err)
	}
	if err := w.Handle(context.Background(), &workqueue.Item{ID: "2", Payload: []byte("two"), Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err = filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(out, path)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"1/result": "third", "1.1/result": "first", "1.2/result": "second", "2/result": "two"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output root (-want +got):\n%s", diff)
	}
}
