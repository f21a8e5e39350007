package cmdline_test

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/cmdline"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// parse parses args with a ContinueOnError flag set that has -n (an int) and prints on flagOut.
func parse(flagOut *strings.Builder, args ...string) error {
	fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
	fs.SetOutput(flagOut)
	fs.Int("n", 0, "a number")
	return cmdline.Parse(fs, args)
}

// TestReport: what a command's result prints and the status it exits with, for results from
// Parse, Usagef and elsewhere, as they are and wrapped.
func TestReport(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string // parsed by parse when err is nil
		err     error
		status  int
		flagOut string // what the flag set printed, up to its first newline
		report  string // what Report printed
	}{
		{name: "flags read", args: []string{"-n", "3"}, status: 0},
		{name: "help", args: []string{"-h"}, status: 0, flagOut: "Usage of cmd:"},
		{name: "long help", args: []string{"--help"}, status: 0, flagOut: "Usage of cmd:"},
		{name: "unknown flag", args: []string{"-x"}, status: 2, flagOut: "flag provided but not defined: -x"},
		{name: "bad value", args: []string{"-n", "many"}, status: 2, flagOut: `invalid value "many" for flag -n: parse error`},
		{name: "missing value", args: []string{"-n"}, status: 2, flagOut: "flag needs an argument: -n"},
		{name: "nil", err: nil, status: 0},
		{name: "usage error", err: cmdline.Usagef("unknown command %q", "x"), status: 2, report: "cmd: unknown command \"x\"\n"},
		{name: "wrapped usage error", err: fmt.Errorf("leaf: %w", cmdline.Usagef("stray argument")), status: 2, report: "cmd: leaf: stray argument\n"},
		{name: "wrapped help", err: fmt.Errorf("leaf: %w", flag.ErrHelp), status: 0},
		{name: "other error", err: errors.New("listen: address in use"), status: 1, report: "cmd: listen: address in use\n"},
		{name: "error named already", err: fmt.Errorf("cmd: open q: %w", errors.New("locked")), status: 1, report: "cmd: open q: locked\n"},
		{name: "name inside a word", err: errors.New("cmdx: broken"), status: 1, report: "cmd: cmdx: broken\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var flagOut, report strings.Builder
			err := tc.err
			if tc.args != nil {
				err = parse(&flagOut, tc.args...)
			}
			status := cmdline.Report(&report, "cmd", err)
			first, _, _ := strings.Cut(flagOut.String(), "\n")
			got := fmt.Sprintf("status %d, flag set %q, report %q", status, first, report.String())
			want := fmt.Sprintf("status %d, flag set %q, report %q", tc.status, tc.flagOut, tc.report)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Report after %v (-want +got):\n%s", err, diff)
			}
			if s := cmdline.Status(err); s != tc.status {
				t.Errorf("Status(%v) = %d, want %d", err, s, tc.status)
			}
		})
	}
}

// A mistake Parse returns is a *UsageError that unwraps to the flag package's error.
func TestParseErrorIsUsageError(t *testing.T) {
	var out strings.Builder
	err := parse(&out, "-x")
	var u *cmdline.UsageError
	if !errors.As(err, &u) || u.Err == nil || u.Err.Error() != err.Error() || !strings.Contains(out.String(), u.Err.Error()) {
		t.Errorf("Parse(-x) = %#v; want a *UsageError holding the error the flag set printed (%q)", err, out.String())
	}
}

// ParseFlags refuses what the flag package leaves over, and passes help and mistakes on as Parse does.
func TestParseFlags(t *testing.T) {
	fs := func() *flag.FlagSet {
		fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		fs.Int("n", 0, "a number")
		return fs
	}
	if err := cmdline.ParseFlags(fs(), []string{"-n", "1"}); err != nil {
		t.Errorf("-n 1: %v", err)
	}
	if err := cmdline.ParseFlags(fs(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
	err := cmdline.ParseFlags(fs(), []string{"-n", "1", "x", "-n", "2"})
	if cmdline.Status(err) != 2 || err.Error() != `unexpected arguments ["x" "-n" "2"]` {
		t.Errorf("stray argument: %v (status %d), want a usage error naming what was left", err, cmdline.Status(err))
	}
	if err := cmdline.ParseFlags(fs(), []string{"-m"}); cmdline.Status(err) != 2 {
		t.Errorf("-m: %v, want a usage error", err)
	}
}

func TestAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		min  int
		err  string // "" for none
	}{
		{addr: "127.0.0.1:0"},
		{addr: ":8080"},
		{addr: "[::1]:9090"},
		{addr: "localhost:http"},
		{addr: ":65535"},
		{addr: "127.0.0.1:1", min: 1},
		{addr: "8080", err: `-http "8080": want HOST:PORT`},
		{addr: "::1:80", err: `-http "::1:80": want HOST:PORT`},
		{addr: ":99999", err: `-http ":99999": port "99999": want a number from 0 to 65535`},
		{addr: ":65536", err: `-http ":65536": port "65536": want a number from 0 to 65535`},
		{addr: ":-1", err: `-http ":-1": port "-1": want a number from 0 to 65535`},
		{addr: "localhost:"}, // net.Listen takes an empty port for 0
		{addr: "localhost:", min: 1, err: `-http "localhost:": port "": want a number from 1 to 65535`},
		{addr: "localhost:no-such-service", err: `-http "localhost:no-such-service": port "no-such-service": want a number from 0 to 65535 or a known service name (such as "http"); it is neither`},
		{addr: "127.0.0.1:0", min: 1, err: `-http "127.0.0.1:0": port "0": want a number from 1 to 65535`},
		{addr: "127.0.0.1:1/path", min: 1, err: `-http "127.0.0.1:1/path": port "1/path": want a number from 1 to 65535 or a known service name (such as "http"); it is neither`},
		{addr: ":+99999", err: `-http ":+99999": port "+99999": want a number from 0 to 65535`},
	} {
		var err error
		if tc.min == 0 {
			err = cmdline.Addr("-http", tc.addr)
		} else {
			err = cmdline.AddrFrom("-http", tc.addr, tc.min)
		}
		got := ""
		if err != nil {
			got = err.Error()
			if cmdline.Status(err) != 2 {
				t.Errorf("%q (from %d): status %d, want 2 (a usage error)", tc.addr, tc.min, cmdline.Status(err))
			}
		}
		if got != tc.err {
			t.Errorf("%q (from %d): error %q, want %q", tc.addr, tc.min, got, tc.err)
		}
	}
}

func TestHTTPURL(t *testing.T) {
	for _, tc := range []struct{ url, err string }{
		{url: "http://127.0.0.1:8080/-/reload"},
		{url: "https://example.com/site.tgz"},
		{url: "http://[::1]:65535/"},
		{url: "http://example.com:/"}, // an empty port is the scheme's
		{url: "127.0.0.1:9090/-/reload", err: `-webhook "127.0.0.1:9090/-/reload": want an http or https URL`},
		{url: "ftp://example.com/", err: `-webhook "ftp://example.com/": want an http or https URL`},
		{url: "http:///path", err: `-webhook "http:///path": want an http or https URL`},
		{url: "http://example.com:http/", err: `-webhook "http://example.com:http/": want an http or https URL`},
		{url: "http://127.0.0.1:99999/", err: `-webhook "http://127.0.0.1:99999/": port "99999": want a number from 1 to 65535`},
		{url: "http://127.0.0.1:0/", err: `-webhook "http://127.0.0.1:0/": port "0": want a number from 1 to 65535`},
	} {
		err := cmdline.HTTPURL("-webhook", tc.url)
		got := ""
		if err != nil {
			got = err.Error()
			if cmdline.Status(err) != 2 {
				t.Errorf("%q: status %d, want 2 (a usage error)", tc.url, cmdline.Status(err))
			}
		}
		if got != tc.err {
			t.Errorf("%q: error %q, want %q", tc.url, got, tc.err)
		}
	}
}
