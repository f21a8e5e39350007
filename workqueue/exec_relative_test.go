//go:build unix

package workqueue_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/podblocks/podblocks/workqueue"
)

// A relative -output (WithOutputRoot) or work root names a directory relative to the worker's
// directory, but the command runs in the item's work directory: OUTPUT_DIR and WORK_ITEM_FILE
// must still name the right files from there (README's own example is `-output out`).
func TestExecWorkerRelativeRoots(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("work", 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := workqueue.NewExecWorker([]string{"sh", "-c", `cat "$WORK_ITEM_FILE" > "$OUTPUT_DIR/result"`},
		workqueue.WithOutputRoot("out"), workqueue.WithWorkRoot("work"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // the roots stay those named when the worker was made
	if err := w.Handle(context.Background(), &workqueue.Item{ID: "5", Payload: []byte("payload"), Attempt: 1}); err != nil {
		t.Fatalf("Handle with relative roots: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out", "5", "result")); err != nil || string(b) != "payload" {
		t.Errorf("out/5/result holds %q (%v), want %q", b, err, "payload")
	}
	if names := dirNames(t, filepath.Join(dir, "work")); len(names) != 0 {
		t.Errorf("work root holds %q after Handle, want it empty", names)
	}
}
