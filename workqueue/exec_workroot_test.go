//go:build unix

package workqueue_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/workqueue"
)

// TestExecWorkerEmptyWorkRootIsTheDefault: WithWorkRoot("") is the default work root, the temp
// dir, for the work directories and for the sweep of those dead workers left there alike (the sweep
// read "" and failed, leaving them).
func TestExecWorkerEmptyWorkRootIsTheDefault(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)                                // os.TempDir
	leftover := filepath.Join(tmp, "podblocks-item-7-123") // a dead worker's: nobody holds it
	if err := os.Mkdir(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	ran := filepath.Join(t.TempDir(), "pwd")
	core, logs := observer.New(zap.DebugLevel)
	w, err := workqueue.NewExecWorker([]string{"sh", "-c", `pwd > "$RAN"`},
		workqueue.WithWorkRoot(""), workqueue.WithEnv("RAN="+ran), workqueue.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Handle(context.Background(), &workqueue.Item{ID: "8", Attempt: 1}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	b, err := os.ReadFile(ran)
	if err != nil {
		t.Fatal(err)
	}
	got, err1 := filepath.EvalSymlinks(filepath.Dir(strings.TrimSpace(string(b))))
	want, err2 := filepath.EvalSymlinks(tmp)
	if err1 != nil || err2 != nil || got != want {
		t.Errorf("the command ran in %q (%v, %v), want a work directory in %s", b, err1, err2, tmp)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("a dead worker's directory in the work root after the first Handle: %v; want it swept", err)
	}
	for _, e := range logs.All() {
		if err, ok := e.ContextMap()["error"]; ok {
			t.Errorf("logged %q with error %v", e.Message, err)
		}
	}
}
