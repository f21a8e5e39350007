package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/shardproc"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// buildAmbassador builds this binary once per test.
func buildAmbassador(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ambassador")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestNutcrackerTestConf(t *testing.T) {
	bin := buildAmbassador(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	// As nutcracker -t: a listen host that does not resolve is invalid, a server host is not
	// (nutcracker resolves it when it connects).
	badListen := filepath.Join(dir, "badlisten.yml")
	lazyServer := filepath.Join(dir, "lazyserver.yml")
	os.WriteFile(good, []byte("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n"), 0o600)
	os.WriteFile(bad, []byte("a:\n  listen: 127.0.0.1:22121\n  sever_connections: 2\n  servers:\n   - 127.0.0.1:11211:1\n"), 0o600)
	os.WriteFile(badListen, []byte("a:\n  listen: nohost.invalid:22121\n  servers:\n   - 127.0.0.1:11211:1\n"), 0o600)
	os.WriteFile(lazyServer, []byte("a:\n  listen: localhost:22121\n  servers:\n   - nohost.invalid:11211:1\n"), 0o600)
	for _, tc := range []struct {
		file string
		code int
		want []string
	}{
		{good, 0, []string{"syntax is ok"}},
		{bad, 1, []string{"syntax is invalid", "line 3", `"sever_connections"`, "unknown"}},
		{badListen, 1, []string{"syntax is invalid", "line 1", `pool "a"`, `"listen"`, "nohost.invalid"}},
		{lazyServer, 0, []string{"syntax is ok"}},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "-t", "-c", tc.file)
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("-t %s: exit %d, want %d (%s)", tc.file, code, tc.code, stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("-t %s: stderr %q lacks %q", tc.file, stderr.String(), w)
			}
		}
	}
}

// A bad command line gets nutcracker 0.5.0's message for it, then the usage, and exit status 1, as
// nutcracker does; the old code printed the usage alone, or took a bad -s or -m value and failed
// later on something else, said "requires a number" for a -m that is not one (nutcracker: "requires
// a non-zero number"), and printed the help and exited 0 on -? (nutcracker: invalid option). The
// options are read as nutcracker's getopt_long reads them (TestNutcrackerCommandLine compares the
// two): -help is -h then the invalid option -e, -t=maybe is -t then the invalid option -=, and
// -conf-file is -c with the value "onf-file", where Go's flag package, which the ambassador used
// before, took -help and -conf-file as long options and said "invalid boolean value" of -t=maybe.
func TestNutcrackerFlagErrors(t *testing.T) {
	bin := buildAmbassador(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-x"}, "ambassador: invalid option -- 'x'"},
		{[]string{"--bogus"}, "ambassador: invalid option -- 'bogus'"},
		{[]string{"-s", "abc"}, "ambassador: option -s requires a number"},
		{[]string{"--stats-port=-1"}, "ambassador: option -s requires a number"},
		{[]string{"-s", "70000"}, "ambassador: option -s value 70000 is not a valid port"},
		{[]string{"-s", "0"}, "ambassador: option -s value 0 is not a valid port"},
		{[]string{"-s"}, "ambassador: option -s requires a number"},
		{[]string{"-c"}, "ambassador: option -c requires a file name"},
		{[]string{"-t", "--conf-file"}, "ambassador: option -c requires a file name"},
		{[]string{"-t", "--conf"}, "ambassador: option -c requires a file name"},
		{[]string{"-tc"}, "ambassador: option -c requires a file name"},
		{[]string{"-a"}, "ambassador: option -a requires a string"},
		{[]string{"-metrics"}, "ambassador: option -metrics requires an address"},
		{[]string{"--metrics"}, "ambassador: option -metrics requires an address"},
		{[]string{"--metric=x"}, "ambassador: invalid option -- 'metric'"},
		{[]string{"--s=1"}, "ambassador: invalid option -- 's' (ambiguous: --stats-port, --stats-interval, --stats-addr)"},
		{[]string{"--test-conf=yes"}, "ambassador: invalid option -- 't'"},
		{[]string{"-help"}, "ambassador: invalid option -- 'e'"},
		{[]string{"-v", "x"}, "ambassador: option -v requires a number"},
		{[]string{"-i", "-5"}, "ambassador: option -i requires a number"},
		{[]string{"-m", "0"}, "ambassador: option -m requires a non-zero number"},
		{[]string{"-m", "abc"}, "ambassador: option -m requires a non-zero number"},
		{[]string{"-m", "-5"}, "ambassador: option -m requires a non-zero number"},
		{[]string{"--mbuf-size=12x"}, "ambassador: option -m requires a non-zero number"},
		{[]string{"-m"}, "ambassador: option -m requires a number"},
		{[]string{"-v", "-1"}, "ambassador: option -v requires a number"},
		{[]string{"-i", "5x"}, "ambassador: option -i requires a number"},
		{[]string{"-s", "+80"}, "ambassador: option -s requires a number"},
		{[]string{"-?"}, "ambassador: invalid option -- '?'"},
		{[]string{"-m", "1"}, "ambassador: mbuf chunk size must be between 512 and 16777216 bytes"},
		{[]string{"-t=maybe"}, "ambassador: invalid option -- '='"},
	} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, tc.args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 {
			t.Errorf("%q: %v, want exit status 1", tc.args, err)
		}
		first, rest, _ := strings.Cut(stderr.String(), "\n")
		if !strings.HasPrefix(first, tc.want) || !strings.HasPrefix(rest, "Usage: ambassador ") {
			t.Errorf("%q: stderr %q, want a line starting %q, then the usage", tc.args, stderr.String(), tc.want)
		}
	}
	// -h and --help print the help on stdout and exit 0, as nutcracker's.
	for _, arg := range []string{"-h", "--help", "--he"} {
		out, err := exec.Command(bin, arg).Output()
		if err != nil || !strings.HasPrefix(string(out), "Usage: ambassador ") {
			t.Errorf("%s: %v, stdout %q; want the usage and exit 0", arg, err, out)
		}
	}
	// A good value of each is taken, in each spelling: -t on a good config exits 0.
	good := filepath.Join(t.TempDir(), "good.yml")
	os.WriteFile(good, []byte("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n"), 0o600)
	for _, args := range [][]string{
		{"-t", "-c", good, "-s", "65535", "-v", "11", "-i", "0", "-m", "512", "-a", "127.0.0.1", "-metrics", "127.0.0.1:0"},
		{"-tc" + good, "-s65535", "-v11", "-i0", "-m512", "-a127.0.0.1", "--metrics=127.0.0.1:0"},
		{"--test-conf", "--conf-file", good, "--stats-port=65535", "--verb", "11", "--stats-i=0", "--mbuf=512",
			"--stats-a", "127.0.0.1", "--metrics", "127.0.0.1:0", "-metrics=127.0.0.1:0"},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil || !strings.HasSuffix(string(out), "syntax is ok\n") {
			t.Errorf("good options %q: %v\n%s", args, err, out)
		}
	}
	// Arguments that are not options are ignored, as nutcracker ignores them, with a warning after
	// -t's verdict.
	out, err := exec.Command(bin, "-c", good, "stray", "-t", "--", "-x").CombinedOutput()
	if want := fmt.Sprintf("nutcracker: configuration file '%s' syntax is ok\n"+
		"ambassador: arguments that are not options are ignored, as nutcracker ignores them: [\"stray\" \"-x\"]\n", good); err != nil || string(out) != want {
		t.Errorf("stray arguments: %v, output %q, want %q", err, out, want)
	}
}

// cliOutcome is what a run of nutcracker or the ambassador says of a command line: its exit
// status and the first line it printed, as cliLine makes it.
type cliOutcome struct {
	code int
	line string
}

func (o cliOutcome) String() string { return fmt.Sprintf("exit %d, %q", o.code, o.line) }

// Why the ambassador's outcome differs from nutcracker's, for the rows that say so.
const (
	whyNUL  = "for an unknown or ambiguous long option nutcracker prints optopt, a NUL byte; the ambassador names the option"
	whyNum  = "nutcracker's nc_atoi wraps a number of 2^32 or more around modulo 2^32; the ambassador refuses any number over 2^31-1 (so does nutcracker from 2^31 to 2^32-1)"
	whyOwn  = "podblocks' own --metrics (also -metrics): nutcracker refuses it in every spelling"
	whyMode = "a first argument http or tcp selects the ambassador's HTTP or TCP proxy (DESIGN.md), whose flags are Go's"
)

const (
	okLine      = "PROG: configuration file 'good.yml' syntax is ok"
	usageLine   = "Usage: PROG"
	reqFile     = "PROG: option -%c requires a file name"
	reqNum      = "PROG: option -%c requires a number"
	nulOption   = "PROG: invalid option -- '\x00'"
	badPort     = "PROG: option -s value %s is not a valid port"
	mbufNonZero = "PROG: option -m requires a non-zero number"
	mbufRange   = "PROG: mbuf chunk size must be between 512 and 16777216 bytes"
)

// nutcrackerCommandLines is a table of command lines and what nutcracker 0.5.0 says of each
// (TestNutcrackerCommandLine checks the table against the real nutcracker where it is installed),
// with what the ambassador says instead where it differs on purpose, and why. Each line has -t
// where nutcracker reads it, so that nutcracker exits; good.yml is a good config, and there is no
// conf/nutcracker.yml and no /etc/nutcracker/nutcracker.yml.
//
// Besides the rows' differences, the ambassador prints -h's usage and -V's version on stdout,
// where nutcracker prints them on stderr (cliLine reads both), and a warning about arguments that
// are not options after -t's verdict, where nutcracker ignores them silently.
var nutcrackerCommandLines = []struct {
	args  []string
	posix bool        // POSIXLY_CORRECT is set
	nc    cliOutcome  // nutcracker 0.5.0's
	amb   *cliOutcome // the ambassador's when it differs (why); nil when it is nc
	why   string
}{
	// Forms that getopt_long takes, and Go's flag package did not.
	{args: []string{"-t", "-c", "good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-tc", "good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "-cgood.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-dt", "-c", "good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "-d", "-c", "/nonexistent"}, nc: cliOutcome{1, "PROG: configuration file '/nonexistent' syntax is invalid"}},
	{args: []string{"-t", "-s22223", "-v7", "-c", "good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "--conf-file=good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "--conf-file", "good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"--test", "--conf=good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"--te", "--c=good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "--stats-p=1", "--verb", "3", "-c", "good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "--m=1024", "-c", "good.yml"}, nc: cliOutcome{0, okLine}}, // not ambiguous with --metrics
	{args: []string{"-c", "good.yml", "stray", "-t"}, nc: cliOutcome{0, okLine}},
	{args: []string{"stray", "-tc", "good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "-", "-c", "good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "-c", "good.yml", "--", "-x"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "--", "-c", "good.yml"}, nc: cliOutcome{1, "PROG: configuration file '/etc/nutcracker/nutcracker.yml' syntax is invalid"},
		amb: &cliOutcome{1, "PROG: configuration file 'conf/nutcracker.yml' syntax is invalid"},
		why: "the default config file is upstream twemproxy's conf/nutcracker.yml, not Debian's"},
	{args: []string{"-c", "good.yml", "-t", "stray", "-x"}, posix: true, nc: cliOutcome{0, okLine}},
	{args: []string{"-c", "good.yml", "-t", "stray", "-x"}, nc: cliOutcome{1, "PROG: invalid option -- 'x'"}},
	{args: []string{"-t", "-c", "good.yml", "-s", "080", "-m", "512", "-s", "65535", "-v", "99", "-i", "0", "-a", "nohost", "-o", "x.log", "-p", "x.pid"},
		nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "--conf-file=", "-c", "good.yml"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "--conf-file="}, nc: cliOutcome{1, "PROG: configuration file '' syntax is invalid"}},
	{args: []string{"-t", "-c", "-t"}, nc: cliOutcome{1, "PROG: configuration file '-t' syntax is invalid"}},
	{args: []string{"-t", "-conf-file", "good.yml"}, nc: cliOutcome{1, "PROG: configuration file 'onf-file' syntax is invalid"}},
	{args: []string{"-c", "good.yml", "-t", "-c", "/nonexistent"}, nc: cliOutcome{1, "PROG: configuration file '/nonexistent' syntax is invalid"}},
	// -h, -V and -D.
	{args: []string{"-h", "-t"}, nc: cliOutcome{0, usageLine}},
	{args: []string{"--he"}, nc: cliOutcome{0, usageLine}},
	{args: []string{"-t", "--h"}, nc: cliOutcome{0, usageLine}},
	{args: []string{"-Vt", "-c", "good.yml"}, nc: cliOutcome{0, ""}},
	{args: []string{"-t", "-c", "good.yml", "-D"}, nc: cliOutcome{0, "pool stats:"}},
	// The ambassador's other modes.
	{args: []string{"tcp", "-t", "-c", "good.yml"}, nc: cliOutcome{0, okLine},
		amb: &cliOutcome{2, "flag provided but not defined: -t"}, why: whyMode}, // 2: Go's flag package's status
	{args: []string{"-t", "-c", "good.yml", "tcp"}, nc: cliOutcome{0, okLine}}, // a later one is ignored
	// Invalid options.
	{args: []string{"-x", "-t", "-c", "good.yml"}, nc: cliOutcome{1, "PROG: invalid option -- 'x'"}},
	{args: []string{"-?"}, nc: cliOutcome{1, "PROG: invalid option -- '?'"}},
	{args: []string{"-t", "-:"}, nc: cliOutcome{1, "PROG: invalid option -- ':'"}},
	{args: []string{"-t-"}, nc: cliOutcome{1, "PROG: invalid option -- '-'"}},
	{args: []string{"-t", "-\xc3\xa9"}, nc: cliOutcome{1, "PROG: invalid option -- '\xc3'"}},
	{args: []string{"-t", "-help"}, nc: cliOutcome{1, "PROG: invalid option -- 'e'"}},
	{args: []string{"-t=maybe"}, nc: cliOutcome{1, "PROG: invalid option -- '='"}},
	{args: []string{"-t", "--test-conf=yes"}, nc: cliOutcome{1, "PROG: invalid option -- 't'"}},
	{args: []string{"-t", "--help=x"}, nc: cliOutcome{1, "PROG: invalid option -- 'h'"}},
	{args: []string{"-h", "-x"}, nc: cliOutcome{1, "PROG: invalid option -- 'x'"}},
	{args: []string{"--bogus", "-t"}, nc: cliOutcome{1, nulOption}, amb: &cliOutcome{1, "PROG: invalid option -- 'bogus'"}, why: whyNUL},
	{args: []string{"-t", "---"}, nc: cliOutcome{1, nulOption}, amb: &cliOutcome{1, "PROG: invalid option -- '-'"}, why: whyNUL},
	{args: []string{"-t", "--s=1"}, nc: cliOutcome{1, nulOption},
		amb: &cliOutcome{1, "PROG: invalid option -- 's' (ambiguous: --stats-port, --stats-interval, --stats-addr)"}, why: whyNUL},
	{args: []string{"-t", "--v=3"}, nc: cliOutcome{1, nulOption},
		amb: &cliOutcome{1, "PROG: invalid option -- 'v' (ambiguous: --version, --verbose)"}, why: whyNUL},
	{args: []string{"-t", "--d"}, nc: cliOutcome{1, nulOption},
		amb: &cliOutcome{1, "PROG: invalid option -- 'd' (ambiguous: --daemonize, --describe-stats)"}, why: whyNUL},
	{args: []string{"-t", "--=x"}, nc: cliOutcome{1, nulOption},
		amb: &cliOutcome{1, "PROG: invalid option -- '' (ambiguous: --help, --version, --test-conf, --daemonize, --describe-stats, " +
			"--verbose, --output, --conf-file, --stats-port, --stats-interval, --stats-addr, --pid-file, --mbuf-size)"}, why: whyNUL},
	// Missing values.
	{args: []string{"-t", "--conf"}, nc: cliOutcome{1, fmt.Sprintf(reqFile, 'c')}},
	{args: []string{"-t", "-c"}, nc: cliOutcome{1, fmt.Sprintf(reqFile, 'c')}},
	{args: []string{"-tc"}, nc: cliOutcome{1, fmt.Sprintf(reqFile, 'c')}},
	{args: []string{"-t", "-o"}, nc: cliOutcome{1, fmt.Sprintf(reqFile, 'o')}},
	{args: []string{"-t", "--pid"}, nc: cliOutcome{1, fmt.Sprintf(reqFile, 'p')}},
	{args: []string{"-t", "-a"}, nc: cliOutcome{1, "PROG: option -a requires a string"}},
	{args: []string{"-t", "-s"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 's')}},
	{args: []string{"-t", "--verbose"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 'v')}},
	{args: []string{"-t", "-i"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 'i')}},
	{args: []string{"-t", "-m"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 'm')}},
	// Bad values: the first problem is the one reported.
	{args: []string{"-t", "--stats-port=abc", "-c", "good.yml"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 's')}},
	{args: []string{"-t", "-s", "abc", "-x"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 's')}},
	{args: []string{"-t", "-x", "-s", "abc"}, nc: cliOutcome{1, "PROG: invalid option -- 'x'"}},
	{args: []string{"-t", "-s", "abc", "--conf"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 's')}},
	{args: []string{"-t", "-s", "+80"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 's')}},
	{args: []string{"-t", "-s", "-1"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 's')}},
	{args: []string{"-t", "-s", ""}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 's')}},
	{args: []string{"-t", "-s", "0"}, nc: cliOutcome{1, fmt.Sprintf(badPort, "0")}},
	{args: []string{"-t", "-s65536"}, nc: cliOutcome{1, fmt.Sprintf(badPort, "65536")}},
	{args: []string{"-t", "-s", "2147483648"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 's')}},
	{args: []string{"-t", "-s", "4294967297", "-c", "good.yml"}, nc: cliOutcome{0, okLine},
		amb: &cliOutcome{1, fmt.Sprintf(badPort, "4294967297")}, why: whyNum},
	{args: []string{"-t", "-s", "99999999999999999999"}, nc: cliOutcome{1, fmt.Sprintf(badPort, "1661992959")},
		amb: &cliOutcome{1, fmt.Sprintf(badPort, "99999999999999999999")}, why: whyNum},
	{args: []string{"-t", "-c", "good.yml", "-s", "65535", "-i", "2147483647", "-v", "2147483647", "-m", "16777216"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "-c", "good.yml", "-m", "512"}, nc: cliOutcome{0, okLine}},
	{args: []string{"-t", "-m", "16777217"}, nc: cliOutcome{1, mbufRange}},
	{args: []string{"-t", "-m", "2147483648"}, nc: cliOutcome{1, mbufNonZero}},
	{args: []string{"-t", "-m", "99999999999"}, nc: cliOutcome{1, mbufRange}},
	{args: []string{"-t", "-m", "4294967296"}, nc: cliOutcome{1, mbufNonZero},
		amb: &cliOutcome{1, mbufRange}, why: whyNum},
	{args: []string{"-t", "-v", "x"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 'v')}},
	{args: []string{"-t", "-v", "-1"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 'v')}},
	{args: []string{"-t", "-i5x"}, nc: cliOutcome{1, fmt.Sprintf(reqNum, 'i')}},
	{args: []string{"-t", "-m", "0"}, nc: cliOutcome{1, mbufNonZero}},
	{args: []string{"-t", "-m", "abc"}, nc: cliOutcome{1, mbufNonZero}},
	{args: []string{"-t", "-m", "-5"}, nc: cliOutcome{1, mbufNonZero}},
	{args: []string{"-t", "--mbuf-size=12x"}, nc: cliOutcome{1, mbufNonZero}},
	{args: []string{"-t", "-m", "511"}, nc: cliOutcome{1, mbufRange}},
	{args: []string{"-t", "-m16777217"}, nc: cliOutcome{1, mbufRange}},
	// podblocks' own option.
	{args: []string{"-t", "-c", "good.yml", "-metrics", "127.0.0.1:0"}, nc: cliOutcome{1, mbufNonZero},
		amb: &cliOutcome{0, okLine}, why: whyOwn},
	{args: []string{"-t", "-c", "good.yml", "-metrics=127.0.0.1:0"}, nc: cliOutcome{1, mbufNonZero},
		amb: &cliOutcome{0, okLine}, why: whyOwn},
	{args: []string{"-t", "-c", "good.yml", "--metrics=127.0.0.1:0"}, nc: cliOutcome{1, nulOption},
		amb: &cliOutcome{0, okLine}, why: whyOwn},
	{args: []string{"-t", "-c", "good.yml", "--metrics", "127.0.0.1:0"}, nc: cliOutcome{1, nulOption},
		amb: &cliOutcome{0, okLine}, why: whyOwn},
	{args: []string{"-t", "-metrics"}, nc: cliOutcome{1, mbufNonZero},
		amb: &cliOutcome{1, "PROG: option -metrics requires an address"}, why: whyOwn},
	{args: []string{"-t", "--metrics"}, nc: cliOutcome{1, nulOption},
		amb: &cliOutcome{1, "PROG: option -metrics requires an address"}, why: whyOwn},
	{args: []string{"-t", "--metric=x"}, nc: cliOutcome{1, nulOption}, amb: &cliOutcome{1, "PROG: invalid option -- 'metric'"},
		why: whyNUL + "; --metrics is never abbreviated"},
	{args: []string{"-t", "-tmetrics"}, nc: cliOutcome{1, mbufNonZero}},
}

// cliLine is the first line of what a run printed, on stderr and then stdout (the ambassador
// prints -h and -V on stdout, nutcracker on stderr), past blank lines and the lines that name
// the program's version ("This is nutcracker-0.5.0", "async event backend: epoll", "This is
// podblocks ambassador ..."); with "nutcracker: " or "ambassador: " at its start as "PROG: ",
// and a usage line as "Usage: PROG".
func cliLine(stderr, stdout string) string {
	for _, l := range strings.Split(stderr+"\n"+stdout, "\n") {
		l = strings.TrimSuffix(l, "\r")
		switch {
		case l == "", strings.HasPrefix(l, "This is "), strings.HasPrefix(l, "async event backend: "):
			continue
		case strings.HasPrefix(l, "Usage: "):
			return usageLine
		}
		for _, prog := range []string{"nutcracker: ", "ambassador: "} {
			if rest, ok := strings.CutPrefix(l, prog); ok {
				return "PROG: " + rest
			}
		}
		return l
	}
	return ""
}

// runCLI runs bin with args in dir, with POSIXLY_CORRECT set (empty: being set is what counts, to
// glibc as to the ambassador) when posix, and returns its exit
// status and cliLine of its output; bin must exit within 20s.
func runCLI(t *testing.T, bin, dir string, args []string, posix bool) cliOutcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POSIXLY_CORRECT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if posix {
		cmd.Env = append(cmd.Env, "POSIXLY_CORRECT=")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %q did not exit within 20s (does it lack -t?)", bin, args)
	case errors.As(err, &ee):
		return cliOutcome{ee.ExitCode(), cliLine(stderr.String(), stdout.String())}
	case err != nil:
		t.Fatalf("%s %q: %v", bin, args, err)
	}
	return cliOutcome{0, cliLine(stderr.String(), stdout.String())}
}

// TestNutcrackerCommandLine runs the ambassador on each command line of nutcrackerCommandLines
// and compares its exit status and first line with nutcracker 0.5.0's, as the table records
// them, and, where nutcracker is installed, with the real nutcracker's on the same command line.
// The old command line (Go's flag package) took -conf-file, -help and -t=maybe as Go does, and
// refused -tc FILE, -cFILE, -s22223, --conf=FILE, options after other arguments, and -d -t.
func TestNutcrackerCommandLine(t *testing.T) {
	bin := buildAmbassador(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "good.yml"), []byte("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	haveNutcracker := shardproc.Have(shardproc.NutcrackerPath)
	if !haveNutcracker {
		t.Logf("%s is not installed (Debian package nutcracker): the ambassador is compared with the table only", shardproc.NutcrackerPath)
	}
	for _, c := range nutcrackerCommandLines {
		want := c.nc
		if c.amb != nil {
			want = *c.amb
			if c.why == "" || want == c.nc {
				t.Errorf("%q: a difference from nutcracker needs a reason and must differ", c.args)
			}
		}
		if got := runCLI(t, bin, dir, c.args, c.posix); got != want {
			t.Errorf("ambassador %q (POSIXLY_CORRECT %v): got %v, want %v", c.args, c.posix, got, want)
		}
		if haveNutcracker {
			if got := runCLI(t, shardproc.NutcrackerPath, dir, c.args, c.posix); got != c.nc {
				t.Errorf("nutcracker %q (POSIXLY_CORRECT %v): got %v; the table says %v", c.args, c.posix, got, c.nc)
			}
		}
	}
	if !haveNutcracker {
		t.Skipf("%s is not installed (Debian package nutcracker): the table's nutcracker outcomes were not checked", shardproc.NutcrackerPath)
	}
}

// -D lists the stats fields nutcracker -D lists, in its sections and order (the words are podblocks'
// own).
func TestNutcrackerDescribeStats(t *testing.T) {
	var out bytes.Buffer
	describeStats(&out)
	got := statsDescriptionNames(out.String())
	if len(got) != len(twemproxy.StatsFields())+2 {
		t.Fatalf("-D printed %d names and headings, want %d:\n%s", len(got), len(twemproxy.StatsFields())+2, out.String())
	}
	if _, err := os.Stat(shardproc.NutcrackerPath); err != nil {
		t.Skipf("%s is not installed (Debian package nutcracker): -D's names were not compared with it", shardproc.NutcrackerPath)
	}
	nc, _ := exec.Command(shardproc.NutcrackerPath, "-D").CombinedOutput()
	if diff := cmp.Diff(statsDescriptionNames(string(nc)), got); diff != "" {
		t.Errorf("-D (-nutcracker +ambassador):\n%s", diff)
	}
}

// statsDescriptionNames returns the section headings of a -D listing and the field names under them.
func statsDescriptionNames(s string) []string {
	var names []string
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasSuffix(l, "stats:"):
			names = append(names, l)
		case strings.HasPrefix(l, "  "):
			names = append(names, strings.Fields(l)[0])
		}
	}
	return names
}

func ncWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startAmbassador runs bin with args, its stderr to stderr, until the test ends: then it sends
// SIGTERM and fails the test unless the binary exits 0 within 20s. When the test failed, it logs
// what log returns.
func startAmbassador(t *testing.T, bin string, stderr io.Writer, log func() string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Error("no exit within 20s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("ambassador log:\n%s", log())
		}
	})
	return cmd
}

// TestNutcrackerServeReload runs the binary on a memcache pool, then grows the pool by SIGHUP and
// by rewriting the file, and checks that one client connection keeps working throughout, that keys
// follow the new config, that an invalid config is rejected while the old one keeps serving, that
// the stats port answers nutcracker's JSON, and that SIGTERM exits 0. An argument that is not an
// option is ignored with a warning (before, it was refused).
func TestNutcrackerServeReload(t *testing.T) {
	if !shardproc.Have(shardproc.MemcachedPath) {
		t.Skipf("%s is not installed (Debian package memcached); skipping", shardproc.MemcachedPath)
	}
	bin := buildAmbassador(t)
	var mcs []*shardproc.Proc
	for range 3 {
		p, err := shardproc.StartMemcached()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		mcs = append(mcs, p)
	}
	ports, err := shardproc.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	port, statsPort, metricsPort := ports[0], ports[1], ports[2]
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(t.TempDir(), "nutcracker.yml")
	write := func(servers ...*shardproc.Proc) {
		s := fmt.Sprintf("mc:\n  listen: %s\n  hash: md5\n  servers:\n", listen)
		for _, m := range servers {
			s += fmt.Sprintf("   - %s:1\n", m.Addr)
		}
		tmp := conf + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, conf); err != nil {
			t.Fatal(err)
		}
	}
	write(mcs[0])
	logs := &syncbuf.Buffer{}
	// "stray" is not an option: it is ignored, as nutcracker ignores it, with a warning.
	cmd := startAmbassador(t, bin, logs, logs.String, "-c", conf, "stray", "-s", fmt.Sprint(statsPort), "-o", "stderr",
		"-metrics", fmt.Sprintf("127.0.0.1:%d", metricsPort))
	var c net.Conn
	ncWait(t, "the pool to listen", func() bool {
		var err error
		c, err = net.Dial("tcp", listen)
		return err == nil
	})
	if want := `"msg":"arguments that are not options are ignored, as nutcracker ignores them","args":["stray"]`; !strings.Contains(logs.String(), want) {
		t.Errorf("the log lacks %s", want)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	set := func(k string) string {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "set %s 0 0 1\r\nx\r\n", k)
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
		return l
	}
	onServer := func(addr, k string) bool {
		d, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		_ = d.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(d, "get %s\r\n", k)
		l, _ := bufio.NewReader(d).ReadString('\n')
		return strings.HasPrefix(l, "VALUE ")
	}
	if got := set("k0"); got != "STORED\r\n" || !onServer(mcs[0].Addr, "k0") {
		t.Fatalf("first set: %q", got)
	}
	// Reload by SIGHUP with a second server: some keys must land on it, same connection.
	write(mcs[0], mcs[1])
	_ = cmd.Process.Signal(syscall.SIGHUP)
	cfg2, err := twemproxy.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	pl := twemproxy.NewPlacer(cfg2.Pools[0], nil)
	var key1 string
	for i := range 100 {
		if k := fmt.Sprintf("k%d", i); cfg2.Pools[0].Servers[pl.Place([]byte(k))].Addr == mcs[1].Addr {
			key1 = k
			break
		}
	}
	ncWait(t, "SIGHUP reload to place a key on the second server", func() bool {
		return set(key1) == "STORED\r\n" && onServer(mcs[1].Addr, key1)
	})
	// Reload by file change with a third server.
	write(mcs[0], mcs[1], mcs[2])
	cfg3, _ := twemproxy.ReadFile(conf)
	pl3 := twemproxy.NewPlacer(cfg3.Pools[0], nil)
	var key2 string
	for i := range 200 {
		if k := fmt.Sprintf("f%d", i); cfg3.Pools[0].Servers[pl3.Place([]byte(k))].Addr == mcs[2].Addr {
			key2 = k
			break
		}
	}
	ncWait(t, "file-change reload to place a key on the third server", func() bool {
		return set(key2) == "STORED\r\n" && onServer(mcs[2].Addr, key2)
	})
	// An invalid config is rejected; the running one keeps serving.
	if err := os.WriteFile(conf, []byte("mc:\n  listen: "+listen+"\n  bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	ncWait(t, "the rejected reload to be logged", func() bool {
		return strings.Contains(logs.String(), "config reload rejected")
	})
	if got := set(key2); got != "STORED\r\n" || !onServer(mcs[2].Addr, key2) {
		t.Errorf("after a rejected reload: %q", got)
	}
	// Stats port: nutcracker's JSON.
	sc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", statsPort))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(sc)
	sc.Close()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("stats: %v: %s", err, raw)
	}
	if pool, ok := doc["mc"].(map[string]any); !ok || pool["client_connections"].(float64) < 1 {
		t.Errorf("stats: %s", raw)
	}
	// Prometheus metrics on -metrics.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`podblocks_sharding_server_requests_total{pool="mc",server="%s"}`, mcs[0].Addr); !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s:\n%s", want, body)
	}
}
