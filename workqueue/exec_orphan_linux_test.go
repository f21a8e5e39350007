//go:build linux

package workqueue_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
)

// envOrphanRoot is the work root of TestExecWorkerOrphanHelperProcess; envHelperStarted names the
// file where its command writes the pid of the process it leaves behind.
const envOrphanRoot = "PODBLOCKS_WQ_ORPHAN_ROOT"

// TestExecWorkerOrphanHelperProcess is the worker process that TestExecWorkerSweepKillsOrphans
// SIGKILLs while its command runs; it does nothing in a normal run. Its command starts a process
// in the background (in the command's group) and waits for it.
func TestExecWorkerOrphanHelperProcess(t *testing.T) {
	root := os.Getenv(envOrphanRoot)
	if root == "" {
		t.Skip("the worker process of TestExecWorkerSweepKillsOrphans")
	}
	w, err := workqueue.NewExecWorker([]string{"sh", "-c", `sleep 300 & echo $! > "$STARTED.tmp" && mv "$STARTED.tmp" "$STARTED"; wait`},
		workqueue.WithWorkRoot(root), workqueue.WithEnv("STARTED="+os.Getenv(envHelperStarted)))
	if err != nil {
		t.Fatal(err)
	}
	err = w.Handle(context.Background(), &workqueue.Item{ID: "orphaned", Payload: []byte("x"), Attempt: 1})
	t.Errorf("Handle returned (%v) before the process was killed", err)
}

// TestExecWorkerSweepKillsOrphans: a worker SIGKILLed while its command runs leaves what the
// command started running (the kernel's parent-death signal reaches the command alone), in the
// item's work directory, and with -output writing into the output dir the next attempt uses. The
// next ExecWorker's sweep kills that process group before it removes the directory; a group that
// is not the dead command's (an unrelated process) is left alone.
func TestExecWorkerSweepKillsOrphans(t *testing.T) {
	root := t.TempDir()
	started := filepath.Join(t.TempDir(), "started")
	helper := exec.Command(os.Args[0], "-test.run=^TestExecWorkerOrphanHelperProcess$")
	helper.Env = append(os.Environ(), envOrphanRoot+"="+root, envHelperStarted+"="+started)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	await.True(t, "the helper's command to start its background process", 30*time.Second, func() bool {
		_, err := os.Stat(started)
		return err == nil
	})
	orphan := readPid(t, started)
	pgid, err := syscall.Getpgid(orphan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })

	// An unrelated process whose group is not the command's, also in the work root.
	bystander := exec.Command("sleep", "300")
	bystander.Dir = root
	bystander.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bystander.Process.Kill(); bystander.Wait() })

	helper.Process.Kill() // SIGKILL: the worker runs no code of its own
	helper.Wait()
	if err := syscall.Kill(orphan, 0); err != nil {
		t.Fatalf("the command's background process died with the worker (%v): nothing to test", err)
	}
	if cwd, err := os.Readlink("/proc/" + strconv.Itoa(orphan) + "/cwd"); err != nil || !strings.HasPrefix(cwd, root) {
		t.Fatalf("the orphan's cwd %q (%v), want in the work root %s", cwd, err, root)
	}

	w, err := workqueue.NewExecWorker([]string{"true"}, workqueue.WithWorkRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Handle(context.Background(), &workqueue.Item{ID: "next", Attempt: 1}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	awaitDead(t, orphan)
	if err := syscall.Kill(bystander.Process.Pid, 0); err != nil {
		t.Errorf("the sweep killed an unrelated process in the work root: %v", err)
	}
	if names := dirNames(t, root); len(names) != 0 {
		t.Errorf("the work root holds %q after the sweep, want nothing", names)
	}
}
