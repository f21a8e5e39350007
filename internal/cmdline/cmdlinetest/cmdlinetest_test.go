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

// command is a command with a -port flag, and -say, which it prints on stdout. Mode "cmdline" ends
// it with cmdline.Exit; mode "exit1" ends every error with status 1, as the examples did before they
// used cmdline; mode "twice" names the command twice in its error, as Report did once.
func command(mode string, args []string) {
	fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
	port := fs.Int("port", 80, "port to serve")
	say := fs.String("say", "", "printed on stdout")
	err := cmdline.Parse(fs, args)
	if err == nil && *port < 1 {
		err = cmdline.Usagef("-port %d: want 1 or more", *port)
	}
	switch {
	case mode == "exit1" && err != nil:
		fmt.Fprintln(os.Stderr, "cmd:", err)
		os.Exit(1)
	case mode == "twice" && err != nil:
		fmt.Fprintln(os.Stderr, "cmd: cmd:", err)
		os.Exit(cmdline.Status(err))
	}
	fmt.Print(*say)
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

func TestExitsPasses(t *testing.T) {
	cmdlinetest.TestExits(t, commandCmd("cmdline"), []cmdlinetest.Exit{
		{Args: nil, Status: 0},
		{Args: []string{"-say", "hi"}, Status: 0, Stdout: "hi"},
		{Args: []string{"-port", "0"}, Status: 2, Stderr: "cmd: -port 0: want 1 or more"},
		{Args: []string{"-port", "x"}, Status: 2, Stderr: `invalid value "x" for flag -port`},
	})
}

// TestExitsCatches: each way a command can end other than the table wants is a failure of its own.
func TestExitsCatches(t *testing.T) {
	for _, tc := range []struct {
		mode string
		exit cmdlinetest.Exit
		want string // in the failure
	}{
		{"exit1", cmdlinetest.Exit{Args: []string{"-port", "0"}, Status: 2, Stderr: "-port 0"}, "-port 0: exit 1"},
		{"cmdline", cmdlinetest.Exit{Args: []string{"-port", "0"}, Status: 2, Stderr: "-port 1"}, `want exit 2, "-port 1" on stderr`},
		{"cmdline", cmdlinetest.Exit{Args: []string{"-port", "0", "-say", "serving"}, Status: 2, Stderr: "-port 0"}, `stdout "serving"`},
		{"cmdline", cmdlinetest.Exit{Args: []string{"-say", "hi"}, Status: 0, Stdout: "hi there"}, `stdout "hi"`},
		{"twice", cmdlinetest.Exit{Args: []string{"-port", "0"}, Status: 2, Stderr: "-port 0"}, `stderr "cmd: cmd: -port 0`},
	} {
		r := &recorder{TB: t}
		cmdlinetest.TestExits(r, commandCmd(tc.mode), []cmdlinetest.Exit{tc.exit})
		if len(r.errors) != 1 || !strings.Contains(r.errors[0], tc.want) {
			t.Errorf("mode %s, %+v: failures %q; want one saying %q", tc.mode, tc.exit, r.errors, tc.want)
		}
	}
}
