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
	bystander, bystanderDied := startSleeper(t, root)

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
	select {
	case <-bystanderDied:
		t.Errorf("the sweep killed an unrelated process in the work root: %v", bystander.ProcessState)
	case <-time.After(200 * time.Millisecond):
	}
	if names := dirNames(t, root); len(names) != 0 {
		t.Errorf("the work root holds %q after the sweep, want nothing", names)
	}
}

// TestExecWorkerSweepSparesReusedGroup: a dead worker's work directory whose group file names a
// live group that is not its command's (the kernel gave the id to another group since: here an
// unrelated process in a group of its own, working elsewhere) is removed, and that group is not
// killed.
func TestExecWorkerSweepSparesReusedGroup(t *testing.T) {
	root, elsewhere := t.TempDir(), t.TempDir()
	other, died := startSleeper(t, elsewhere)
	dead := filepath.Join(root, "podblocks-item-x-123")
	if err := os.Mkdir(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, "pgid"), []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := workqueue.NewExecWorker([]string{"true"}, workqueue.WithWorkRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Handle(context.Background(), &workqueue.Item{ID: "next", Attempt: 1}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if names := dirNames(t, root); len(names) != 0 {
		t.Fatalf("the work root holds %q after the sweep, want nothing (the sweep did not run?)", names)
	}
	select {
	case <-died:
		t.Errorf("the sweep killed a group whose id the dead directory named but that is not its command's: %v", other.ProcessState)
	case <-time.After(200 * time.Millisecond):
	}
}

// startSleeper starts a process that sleeps in dir, in a process group of its own, and waits for
// it in a goroutine (Kill(pid, 0) succeeds on a zombie, so it cannot tell a killed process): the
// channel is closed when it has died. The cleanup kills it and waits.
func startSleeper(t *testing.T, dir string) (*exec.Cmd, <-chan struct{}) {
	cmd := exec.Command("sleep", "300")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	died := make(chan struct{})
	go func() { cmd.Wait(); close(died) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-died })
	return cmd, died
}
