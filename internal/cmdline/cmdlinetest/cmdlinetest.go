// Package cmdlinetest checks, from a command's tests, that the built command ends as the flag
// package's commands do: help asked for (-h, -help, --help) prints the usage and exits 0; an
// unknown flag prints the flag package's message and the usage and exits 2 ([TestHelpAndBadFlag]);
// and that it ends each command line of a table with the status and reason the table wants
// ([TestExits]).
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
	status = run(t, cmd, &out, &out)
	return status, out.String()
}

// Outputs is [Run] with what cmd wrote on stdout and on stderr apart.
func Outputs(t testing.TB, cmd *exec.Cmd) (status int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	status = run(t, cmd, &out, &errb)
	return status, out.String(), errb.String()
}

func run(t testing.TB, cmd *exec.Cmd, stdout, stderr *bytes.Buffer) int {
	t.Helper()
	cmd.Stdout, cmd.Stderr = stdout, stderr
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
		t.Fatalf("%s: still running after %v (stdout %q, stderr %q)", cmd, timeout, stdout.String(), stderr.String())
	}
	if ee := (*exec.ExitError)(nil); err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", cmd, err)
	}
	return cmd.ProcessState.ExitCode()
}

// with returns a new command that is cmd (its path, arguments, environment and directory) with args
// appended.
func with(cmd *exec.Cmd, args ...string) *exec.Cmd {
	c := exec.Command(cmd.Path, append(cmd.Args[1:len(cmd.Args):len(cmd.Args)], args...)...)
	c.Env, c.Dir = cmd.Env, cmd.Dir
	return c
}

// Exit is one command line and how the command must end on it.
type Exit struct {
	Args   []string // appended to the command's own arguments
	Status int      // the exit status
	Stderr string   // text stderr must hold, such as the reason naming the flag
	Stdout string   // all that stdout must hold, exactly: for a command line refused, nothing
}

// TestExits runs the command cmd (its path, arguments, environment and directory) once for each
// of exits, with its Args appended and no stdin, and wants the exit's Status, stderr holding its
// Stderr, stdout exactly its Stdout, and no line of stderr that starts with one "word: " twice
// (the command named twice, which [cmdline.Report] avoids). cmd itself is not run.
func TestExits(t testing.TB, cmd *exec.Cmd, exits []Exit) {
	t.Helper()
	for _, e := range exits {
		c := with(cmd, e.Args...)
		status, stdout, stderr := Outputs(t, c)
		if status != e.Status || !strings.Contains(stderr, e.Stderr) || stdout != e.Stdout || namedTwice(stderr) {
			t.Errorf("%s: exit %d, stderr %q, stdout %q; want exit %d, %q on stderr (naming the command once), stdout %q",
				c, status, stderr, stdout, e.Status, e.Stderr, e.Stdout)
		}
	}
}

// namedTwice reports whether a line of s starts with the same "word: " twice.
func namedTwice(s string) bool {
	for line := range strings.Lines(s) {
		if word, rest, ok := strings.Cut(line, ": "); ok && !strings.ContainsAny(word, " \t") && strings.HasPrefix(rest, word+": ") {
			return true
		}
	}
	return false
}

// TestHelpAndBadFlag runs the command cmd (its path, arguments, environment and directory) with
// each of -h, -help and --help appended, and wants exit status 0 and output that holds usage (a
// flag's name, say) and no error; then with an undefined flag appended, and wants exit status 2, the
// flag package's "flag provided but not defined" naming it, and the usage. cmd itself is not run.
func TestHelpAndBadFlag(t testing.TB, usage string, cmd *exec.Cmd) {
	t.Helper()
	for _, help := range []string{"-h", "-help", "--help"} {
		c := with(cmd, help)
		status, out := Run(t, c)
		if status != 0 || !strings.Contains(out, usage) || strings.Contains(out, "help requested") {
			t.Errorf("%s: exit %d, output %q; want exit 0 and the usage (with %q), no error", c, status, out, usage)
		}
	}
	const bad = "-no-such-flag"
	c := with(cmd, bad)
	status, out := Run(t, c)
	if want := "flag provided but not defined: " + bad; status != 2 || !strings.Contains(out, want) || !strings.Contains(out, usage) {
		t.Errorf("%s: exit %d, output %q; want exit 2, %q and the usage (with %q)", c, status, out, want, usage)
	}
}
