package procgroup

import (
	"syscall"
	"testing"
)

// A group /proc lists no process of (a /proc of another pid namespace, one mounted with hidepid)
// is not taken for a group of zombies: nothing is known of it. onlyZombies used to be true then,
// and Alive false for a group whose processes ran.
func TestOnlyZombiesNeedsAMember(t *testing.T) {
	if onlyZombies(1 << 30) { // above any pid_max: no process has it
		t.Error("onlyZombies = true for a group /proc lists no process of")
	}
}

// WaitExited returns once the child exited, and leaves it to be collected: its pid, and so its
// group's id, stays taken until Wait.
func TestWaitExitedDoesNotCollect(t *testing.T) {
	cmd, _ := startGroup(t, "echo started")
	if err := WaitExited(cmd.Process); err != nil {
		t.Fatalf("WaitExited: %v", err)
	}
	if err := syscall.Kill(-cmd.Process.Pid, 0); err != nil {
		t.Fatalf("kill(-pgid, 0) = %v after WaitExited: the child was collected", err)
	}
	if Alive(cmd.Process) {
		t.Error("Alive = true for a group whose only process exited")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("Wait after WaitExited: %v", err)
	}
}
