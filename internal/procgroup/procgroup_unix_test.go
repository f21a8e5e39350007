//go:build unix

package procgroup

import (
	"bufio"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
)

// startGroup starts sh with script in a group of its own and returns the first line it prints.
func startGroup(t *testing.T, script string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = Attr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = Kill(cmd.Process)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the first line: %v", err)
	}
	return cmd, strings.TrimSpace(line)
}

// Kill reaches what the command started, not only the command's process.
func TestKillReachesTheGroup(t *testing.T) {
	cmd, line := startGroup(t, "sleep 30 & echo $!; wait")
	job, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("job pid %q: %v", line, err)
	}
	if !Alive(cmd.Process) {
		t.Fatal("Alive = false for a running group")
	}
	if err := Kill(cmd.Process); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	_ = cmd.Wait()
	// The job was the shell's child: an orphan now, which process 1 may never collect (Alive does
	// not count zombies on Linux). Elsewhere only a signal can tell it is gone.
	await.True(t, "the group gone", 10*time.Second, func() bool {
		if runtime.GOOS == "linux" {
			return !Alive(cmd.Process)
		}
		return syscall.Kill(job, 0) != nil
	})
}

// A group whose processes all exited and wait to be collected (zombies) is not alive on Linux.
func TestAliveDoesNotCountZombies(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("zombies are told apart from /proc, on Linux")
	}
	cmd, _ := startGroup(t, "echo started")
	// Not waited for: the process stays a zombie.
	await.True(t, "the group's only process a zombie", 10*time.Second, func() bool { return !Alive(cmd.Process) })
	if err := syscall.Kill(-cmd.Process.Pid, 0); err != nil {
		t.Fatalf("kill(-pgid, 0) = %v: the zombie should still hold the group", err)
	}
}
