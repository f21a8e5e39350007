package pdeathsig_test

import (
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/podblocks/podblocks/internal/pdeathsig"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSetKeepsAttrsAndStarts: Set keeps the fields already set, and a command started with it
// from a locked thread runs and is waited for as usual.
func TestSetKeepsAttrsAndStarts(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.SysProcAttr = pdeathsig.Set(nil)
	if pdeathsig.Supported != (cmd.SysProcAttr != nil) {
		t.Fatalf("Supported %v, Set(nil) = %+v", pdeathsig.Supported, cmd.SysProcAttr)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		done <- cmd.Run()
	}()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
