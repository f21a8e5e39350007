//go:build unix

package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
)

// Environment of TestExecWorkerHelperProcess, set by TestExecWorkerSweepsDeadWorkersDirs.
const (
	envHelperRoot    = "PODBLOCKS_WQ_HELPER_ROOT"
	envHelperStarted = "PODBLOCKS_WQ_HELPER_STARTED"
)

// TestExecWorkerHelperProcess is the worker process that TestExecWorkerSweepsDeadWorkersDirs
// SIGKILLs while its command runs; it does nothing in a normal run.
func TestExecWorkerHelperProcess(t *testing.T) {
	root := os.Getenv(envHelperRoot)
	if root == "" {
		t.Skip("the worker process of TestExecWorkerSweepsDeadWorkersDirs")
	}
	w, err := workqueue.NewExecWorker([]string{"sh", "-c", `echo $$ > "$STARTED.tmp" && mv "$STARTED.tmp" "$STARTED" && exec sleep 300`},
		workqueue.WithWorkRoot(root), workqueue.WithEnv("STARTED="+os.Getenv(envHelperStarted)))
	if err != nil {
		t.Fatal(err)
	}
	err = w.Handle(context.Background(), &workqueue.Item{ID: "killed", Payload: []byte("x"), Attempt: 1})
	t.Errorf("Handle returned (%v) before the process was killed", err)
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// A worker process SIGKILLed while its command runs cannot remove the item's work directory. The
// next ExecWorker on that work root removes it in its first Handle; a later ExecWorker's sweep
// leaves alone the directory a live Handle holds, and anything not named like a work directory.
func TestExecWorkerSweepsDeadWorkersDirs(t *testing.T) {
	root := t.TempDir()
	started := filepath.Join(t.TempDir(), "started")
	for _, d := range []string{"unrelated", "item-1-123"} { // not ours: a sweep must keep them
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	keep := dirNames(t, root)

	helper := exec.Command(os.Args[0], "-test.run=^TestExecWorkerHelperProcess$")
	helper.Env = append(os.Environ(), envHelperRoot+"="+root, envHelperStarted+"="+started)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	var pgid int
	await.True(t, "the helper's command to start", 30*time.Second, func() bool {
		b, err := os.ReadFile(started)
		pgid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pgid > 0
	})
	helper.Process.Kill() // SIGKILL: no deferred cleanup runs
	helper.Wait()
	syscall.Kill(-pgid, syscall.SIGKILL) // its command, in a process group of its own
	left := dirNames(t, root)
	if len(left) != len(keep)+1 {
		t.Fatalf("after the kill the work root holds %q, want %q and the killed item's directory", left, keep)
	}

	// Worker a: its first Handle sweeps, then its command runs until go exists.
	gate := filepath.Join(t.TempDir(), "go")
	running := filepath.Join(t.TempDir(), "running")
	a, err := workqueue.NewExecWorker([]string{"sh", "-c", `pwd > "$RUNNING.tmp" && mv "$RUNNING.tmp" "$RUNNING"; while [ ! -e "$GATE" ]; do sleep 0.01; done`},
		workqueue.WithWorkRoot(root), workqueue.WithEnv("RUNNING="+running, "GATE="+gate))
	if err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- a.Handle(context.Background(), &workqueue.Item{ID: "live", Attempt: 1}) }()
	var aDir string
	await.True(t, "a's command to run", 30*time.Second, func() bool {
		b, err := os.ReadFile(running)
		aDir = strings.TrimSpace(string(b))
		return err == nil && aDir != ""
	})
	want := append(slices.Clone(keep), filepath.Base(aDir))
	slices.Sort(want)
	if got := dirNames(t, root); !slices.Equal(got, want) {
		t.Errorf("while a runs the work root holds %q, want %q: the dead worker's directory removed", got, want)
	}

	// Worker b's first Handle sweeps too, while a's directory is in use.
	b, err := workqueue.NewExecWorker([]string{"true"}, workqueue.WithWorkRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Handle(context.Background(), &workqueue.Item{ID: "b", Attempt: 1}); err != nil {
		t.Fatalf("b: %v", err)
	}
	if _, err := os.Stat(aDir); err != nil {
		t.Errorf("a's work directory, in use: %v", err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-aDone; err != nil {
		t.Errorf("a: %v", err)
	}
	if got := dirNames(t, root); !slices.Equal(got, keep) {
		t.Errorf("at the end the work root holds %q, want %q", got, keep)
	}
	if _, err := os.Stat(aDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a's work directory after its Handle: %v, want it removed", err)
	}
}

// TestExecWorkerKillsProcessGroup checks that a timeout kills the command and its children.
func TestExecWorkerKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	w, _ := workqueue.NewExecWorker([]string{"sh", "-c", `sleep 300 & echo $! > "$PIDFILE"; wait`}, workqueue.WithEnv("PIDFILE="+pidFile))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := w.Handle(ctx, &workqueue.Item{ID: "slow", Attempt: 1})
	if err == nil {
		t.Fatal("Handle returned nil for a killed command")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Handle took %v after the timeout", el)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("child pid: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	await.True(t, "the background child to die", 20*time.Second, func() bool {
		err := syscall.Kill(pid, 0)
		if err == nil {
			// A zombie still answers kill 0; it is dead if its state is Z.
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			return strings.Contains(string(st), ") Z ")
		}
		return errors.Is(err, syscall.ESRCH)
	})
}
