// Package cmdlinetest checks, from a command's tests, that the built command ends as the flag
// package's commands do: help asked for (-h, -help, --help) prints the usage and exits 0; an
// unknown flag prints the flag package's message and the usage and exits 2.
package cmdlinetest

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// timeout bounds one run: a command that is to print its usage and exit must not start serving.
const timeout = 30 * time.Second

// Run runs cmd with no stdin and returns its exit status and what it wrote on stdout and stderr
// together. It fails the test if cmd cannot start or does not exit within 30 s (it is then killed).
func Run(t testing.TB, cmd *exec.Cmd) (status int, output string) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running after %v (output %q)", cmd, timeout, out.String())
	}
	if ee := (*exec.ExitError)(nil); err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", cmd, err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// TestHelpAndBadFlag runs the command cmd (its path, arguments, environment and directory) with
// each of -h, -help and --help appended, and wants exit status 0 and output that holds usage (a
// flag's name, say) and no error; then with an undefined flag appended, and wants exit status 2, the
// flag package's "flag provided but not defined" naming it, and the usage. cmd itself is not run.
func TestHelpAndBadFlag(t testing.TB, usage string, cmd *exec.Cmd) {
	t.Helper()
	with := func(arg string) *exec.Cmd {
		c := exec.Command(cmd.Path, append(cmd.Args[1:len(cmd.Args):len(cmd.Args)], arg)...)
		c.Env, c.Dir = cmd.Env, cmd.Dir
		return c
	}
	for _, help := range []string{"-h", "-help", "--help"} {
		c := with(help)
		status, out := Run(t, c)
		if status != 0 || !strings.Contains(out, usage) || strings.Contains(out, "help requested") {
			t.Errorf("%s: exit %d, output %q; want exit 0 and the usage (with %q), no error", c, status, out, usage)
		}
	}
	const bad = "-no-such-flag"
	c := with(bad)
	status, out := Run(t, c)
	if want := "flag provided but not defined: " + bad; status != 2 || !strings.Contains(out, want) || !strings.Contains(out, usage) {
		t.Errorf("%s: exit %d, output %q; want exit 2, %q and the usage (with %q)", c, status, out, want, usage)
	}
}
