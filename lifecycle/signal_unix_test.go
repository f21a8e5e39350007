//go:build unix

package lifecycle_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/lifecycle"
)

// TestSignalAfterDrainedRunReturned plays Kubernetes' order of deletion against a process: POST
// /prestop drains the app, and SIGTERM follows once the hook has answered, which may be after Run
// has returned and before the process exits. That signal must not kill the process (exit 143): the
// drain is done, and the process exits 0. The child process (this test binary) sends the SIGTERM
// after Run returned, so the window is hit on every run.
func TestSignalAfterDrainedRunReturned(t *testing.T) {
	if os.Getenv("LIFECYCLE_TEST_SIGNAL_CHILD") == "1" {
		signalAfterDrainChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSignalAfterDrainedRunReturned$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LIFECYCLE_TEST_SIGNAL_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v (exit status %d), want exit 0\n%s", err, cmd.ProcessState.ExitCode(), out)
	}
}

// signalAfterDrainChild runs an App that catches SIGTERM, drains it through POST /prestop, waits
// for Run to return, sends itself SIGTERM and exits 0 if it is still alive a moment later.
func signalAfterDrainChild() {
	fail := func(what string, err error) {
		os.Stderr.WriteString("child: " + what + ": " + err.Error() + "\n")
		os.Exit(3)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen", err)
	}
	app, err := lifecycle.NewApp(lifecycle.WithListener(ln), lifecycle.WithSignals(syscall.SIGTERM),
		lifecycle.WithPropagationDelay(0), lifecycle.WithGracePeriod(10*time.Second))
	if err != nil {
		fail("NewApp", err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	select {
	case <-app.Ready():
	case <-time.After(10 * time.Second):
		fail("ready", context.DeadlineExceeded)
	}
	res, err := http.Post("http://"+ln.Addr().String()+"/prestop", "", nil)
	if err != nil {
		fail("POST /prestop", err)
	}
	res.Body.Close()
	select {
	case err := <-done:
		if err != nil {
			fail("Run", err)
		}
	case <-time.After(10 * time.Second):
		fail("Run", context.DeadlineExceeded)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		fail("kill", err)
	}
	time.Sleep(200 * time.Millisecond) // a default action would have ended the process by now
	os.Exit(0)
}
