package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stuckAct plays until its ctx ends, and then never finishes cleaning up.
func stuckAct() act {
	return act{pattern: "stuck cleanup", pkg: "tour-test", run: func(ctx context.Context, s *stage) (string, error) {
		s.say("playing")
		<-ctx.Done()
		s.say("cleaning up")
		time.Sleep(time.Hour)
		return "", ctx.Err()
	}}
}

// TestSecondSignalExitsAtOnce: a second SIGINT while the act the first one stopped hangs in its
// cleanup exits the tour at once, with 130 (128 + SIGINT) and a line on stderr saying why, and the
// scratch directory goes.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT to send on windows")
	}
	dir := t.TempDir()
	cmd := command(t, dir)
	cmd.Env = append(cmd.Env, mainEnv+"=stuck") // the last value wins
	stdout, stderr := start(t, cmd)
	// A tour that does not exit is killed, so that the test fails rather than hangs.
	killer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer killer.Stop()

	var out bytes.Buffer
	sc := bufio.NewScanner(stdout)
	waitLine := func(want string) {
		t.Helper()
		for sc.Scan() {
			fmt.Fprintln(&out, sc.Text())
			if strings.Contains(sc.Text(), want) {
				return
			}
		}
		t.Fatalf("the tour ended before saying %q:\n%s\nstderr:\n%s", want, out.String(), stderr.String())
	}
	waitLine("playing")
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitLine("cleaning up")
	took, err := signalAndWait(t, cmd, syscall.SIGINT, stdout, &out)
	if code := cmd.ProcessState.ExitCode(); code != 130 || took > actCleanup {
		t.Errorf("after a second SIGINT: exit %d (%v) %v later; want 130 within %v\nstdout:\n%s\nstderr:\n%s", code, err, took, actCleanup, out.String(), stderr.String())
	}
	if want := "tour: second interrupt: exiting without waiting for the act to stop"; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q lacks %q", stderr.String(), want)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left %v in the temporary directory", left)
	}
}
