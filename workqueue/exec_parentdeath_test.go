//go:build linux

package workqueue_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
)

// A worker SIGKILLed on a host (not in a container that ends with it) cannot kill its command: the
// kernel must, or the command goes on writing OUTPUT_DIR while the item is redone elsewhere.
func TestExecWorkerCommandDiesWithWorker(t *testing.T) {
	started := filepath.Join(t.TempDir(), "started")
	helper := exec.Command(os.Args[0], "-test.run=^TestExecWorkerHelperProcess$")
	helper.Env = append(os.Environ(), envHelperRoot+"="+t.TempDir(), envHelperStarted+"="+started)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	await.True(t, "the helper's command to start", 30*time.Second, func() bool {
		_, err := os.Stat(started)
		return err == nil
	})
	pid := readPid(t, started)
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) }) // its group, should the kernel not
	helper.Process.Kill()                                     // SIGKILL: the worker runs no code of its own
	helper.Wait()
	awaitDead(t, pid)
}
