package cmdlinetest_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
)

// commandEnv, when set, makes the test binary a command (see command) instead of running tests.
const commandEnv = "CMDLINETEST_COMMAND"

func TestMain(m *testing.M) {
	if mode := os.Getenv(commandEnv); mode != "" {
		command(mode, os.Args[1:])
	}
	goleak.VerifyTestMain(m)
}

// command is a command with a -port flag. Mode "cmdline" ends it with cmdline.Exit; mode
// "exit1" ends every error with status 1, as the examples did before they used cmdline.
func command(mode string, args []string) {
	fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
	fs.Int("port", 80, "port to serve")
	err := cmdline.Parse(fs, args)
	if mode == "exit1" && err != nil {
		fmt.Fprintln(os.Stderr, "cmd:", err)
		os.Exit(1)
	}
	cmdline.Exit("cmd", err)
	os.Exit(0)
}

func commandCmd(mode string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), commandEnv+"="+mode)
	return cmd
}

// recorder is a testing.TB that records Errorf instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestHelpAndBadFlagPassesFlagPackageExits(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-port", commandCmd("cmdline"))
}

// TestHelpAndBadFlagCatchesExit1: a command that exits 1 on -h and on an unknown flag fails each
// of the four checks.
func TestHelpAndBadFlagCatchesExit1(t *testing.T) {
	r := &recorder{TB: t}
	cmdlinetest.TestHelpAndBadFlag(r, "-port", commandCmd("exit1"))
	if len(r.errors) != 4 {
		t.Fatalf("%d failures, want 4 (-h, -help, --help, -no-such-flag):\n%s", len(r.errors), strings.Join(r.errors, "\n"))
	}
	for i, want := range []string{" -h: exit 1", " -help: exit 1", " --help: exit 1", " -no-such-flag: exit 1"} {
		if !strings.Contains(r.errors[i], want) {
			t.Errorf("failure %d: %s; want it to say %q", i, r.errors[i], want)
		}
	}
}

// TestHelpAndBadFlagWantsUsage: exit 0 on -h is not enough; the usage must be in the output.
func TestHelpAndBadFlagWantsUsage(t *testing.T) {
	r := &recorder{TB: t}
	cmdlinetest.TestHelpAndBadFlag(r, "-listen", commandCmd("cmdline"))
	if len(r.errors) != 4 {
		t.Errorf("%d failures, want 4 (no -listen in any usage):\n%s", len(r.errors), strings.Join(r.errors, "\n"))
	}
}
