package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/internal/shardproc"
)

// mainEnv makes the test binary the tour command itself (main), for the tests that run it; set to
// "stuck", the command plays stuckAct alone.
const mainEnv = "TOUR_TEST_MAIN"

func TestMain(m *testing.M) {
	if role := childRole(os.Args); role != "" { // the acts run this test binary as their commands
		os.Exit(runChild(role))
	}
	switch os.Getenv(mainEnv) {
	case "1":
		main() // exits
	case "stuck":
		os.Exit(run(os.Args[1:], []act{stuckAct()}))
	}
	goleak.VerifyTestMain(m)
}

// command returns the tour command (this test binary, as main) with args, its temporary directory
// dir.
func command(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1", "TMPDIR="+dir)
	return cmd
}

// start starts cmd with its stdout piped and its stderr kept; the test kills it at its end.
func start(t *testing.T, cmd *exec.Cmd) (io.Reader, *bytes.Buffer) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return stdout, &stderr
}

// signalAndWait sends sig to cmd, copies the rest of its stdout to out, and waits for it to exit;
// it returns how long after the signal cmd exited, and what Wait returned.
func signalAndWait(t *testing.T, cmd *exec.Cmd, sig os.Signal, stdout io.Reader, out *bytes.Buffer) (time.Duration, error) {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	rest, _ := io.ReadAll(stdout)
	out.Write(rest)
	err := cmd.Wait()
	return time.Since(signalled), err
}

// actCleanup is how long an act may take past its timeout to stop what it started.
const actCleanup = time.Second

// successSlack is how long past its timeout an act may return a success: its work was done in
// time, and the ctx ended while it stopped what it started.
const successSlack = 300 * time.Millisecond

// TestActsEndWithinTheirTimeout plays each act cut short at several points. It must end within its
// timeout and actCleanup, and fail when it could not do its work: an act whose pieces stopped with
// its ctx is no success. Through the tour, an act that ran out of time says so.
func TestActsEndWithinTheirTimeout(t *testing.T) {
	for _, a := range acts() {
		t.Run(a.pkg, func(t *testing.T) {
			for _, timeout := range []time.Duration{time.Millisecond, 150 * time.Millisecond} {
				var out bytes.Buffer
				start := time.Now()
				code, err := tour(context.Background(), &out, []act{a}, timeout, "", nil)
				took := time.Since(start)
				// (The election act can be done within 1ms.)
				want := fmt.Sprintf("FAILED: timed out after %v (-act-timeout)", timeout)
				if err != nil || (code != 0 && !strings.Contains(out.String(), want)) {
					t.Errorf("-act-timeout %v: tour = %d, %v; want 0, or 1 and %q:\n%s", timeout, code, err, want, out.String())
				}
				if took > timeout+actCleanup {
					t.Errorf("-act-timeout %v: the tour took %v", timeout, took)
				}
			}
			// The act itself: with its ctx ended before it starts, it can do nothing, and fails.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var out bytes.Buffer
			start := time.Now()
			res, err := a.run(ctx, &stage{out: &out, dir: t.TempDir()})
			if took := time.Since(start); err == nil || took > actCleanup {
				t.Errorf("ctx ended before the act: %q, %v after %v; want an error within %v\n%s", res, err, took, actCleanup, out.String())
			}
			// Its ctx ending midway, the act stops, and it does not call what it did a success.
			for _, timeout := range []time.Duration{150 * time.Millisecond, 400 * time.Millisecond} {
				var out bytes.Buffer
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				start := time.Now()
				res, err := a.run(ctx, &stage{out: &out, dir: t.TempDir()})
				took := time.Since(start)
				cancel()
				if took > timeout+actCleanup {
					t.Errorf("timeout %v: the act took %v", timeout, took)
				}
				if err == nil && took > timeout+successSlack {
					t.Errorf("timeout %v: the act ran %v past it and called that a success: %q\n%s", timeout, took-timeout, res, out.String())
				}
				t.Logf("timeout %v: took %v, %q, %v", timeout, took.Round(time.Millisecond), res, err)
			}
		})
	}
}

// TestTour plays every act the way `go run ./examples/tour` does and checks each succeeded within the
// minute the README promises.
func TestTour(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	code, err := tour(context.Background(), &out, acts(), 30*time.Second, "", nil)
	took := time.Since(start)
	t.Log("\n" + out.String())
	if err != nil || code != 0 {
		t.Fatalf("tour = %d, %v; want 0", code, err)
	}
	if took > time.Minute {
		t.Errorf("tour took %v, want under a minute", took)
	}
	for _, a := range acts() {
		if !strings.Contains(out.String(), a.pkg) {
			t.Errorf("summary lacks the %s act", a.pkg)
		}
	}
	if !strings.Contains(out.String(), "acts succeeded") {
		t.Error("no summary line")
	}
}

// TestParseFlags: help is not an error; a stray argument (the flag package stops there and drops the
// flags after it), an act timeout of zero or a -serve address no listen can use is a usage error
// (exit 2), named in the message.
func TestParseFlags(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-act-timeout") {
		t.Errorf("-h: %v, output %q; want flag.ErrHelp and the usage", err, out.String())
	}
	for args, want := range map[string][]string{
		`unexpected arguments ["extra" "-serve" ":1"]`: {"extra", "-serve", ":1"},
		"-act-timeout 0s":          {"-act-timeout", "0"},
		`-serve "127.0.0.1:99999"`: {"-serve", "127.0.0.1:99999"},
		`-serve "nonsense"`:        {"-serve", "nonsense"},
	} {
		_, err := parseFlags(want, &out)
		if cmdline.Status(err) != 2 || err == nil || !strings.Contains(err.Error(), args) {
			t.Errorf("%q: %v (status %d); want a usage error naming %q", want, err, cmdline.Status(err), args)
		}
	}
	o, err := parseFlags([]string{"-serve", ":8080", "-act-timeout", "5s"}, &out)
	if err != nil || o.serve != ":8080" || o.actTimeout != 5*time.Second {
		t.Errorf("parseFlags = %+v, %v", o, err)
	}
}

// TestServeAddressUnusable: an address -serve can never listen on is a usage error (exit 2), a busy
// port a failure (exit 1), and either ends the tour before its first act.
func TestServeAddressUnusable(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for addr, want := range map[string]struct {
		code int
		msg  string
	}{
		"127.0.0.1:99999":       {2, `-serve "127.0.0.1:99999": port "99999": want a number from 0 to 65535`},
		"nonsense":              {2, `-serve "nonsense": want HOST:PORT`},
		busy.Addr().String():    {1, "address already in use"},
		"127.0.0.1:no-such-svc": {2, `port "no-such-svc"`},
	} {
		dir := t.TempDir()
		cmd := command(t, dir, "-serve", addr)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		took := time.Since(start)
		code := cmd.ProcessState.ExitCode()
		if code != want.code || !strings.Contains(stderr.String(), want.msg) {
			t.Errorf("-serve %s: exit %d (%v), stderr %q; want exit %d and %q", addr, code, err, stderr.String(), want.code, want.msg)
		}
		if strings.Contains(stdout.String(), "Act 1") {
			t.Errorf("-serve %s: an act was played (in %v):\n%s", addr, took, stdout.String())
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("-serve %s: left %v in the temporary directory", addr, left)
		}
	}
}

// TestSignalStopsTheTour: SIGTERM or SIGINT in the middle of the acts (in or after the sharding
// act, with its memcached processes) stops the act playing at once and plays no more; the tour
// cleans up (no memcached left, no scratch directory) and exits 1, saying it was interrupted.
func TestSignalStopsTheTour(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM or SIGINT to send on windows")
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := command(t, dir)
			stdout, stderr := start(t, cmd)
			// Wait for the sharding act, and for its memcached processes if memcached is installed.
			var out bytes.Buffer
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				fmt.Fprintln(&out, sc.Text())
				if strings.Contains(sc.Text(), "(ambassador/twemproxy)") {
					break
				}
			}
			var children []int
			for deadline := time.Now().Add(2 * time.Second); shardproc.Have(shardproc.MemcachedPath) && len(children) < 3 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				children = childrenOf(cmd.Process.Pid, "memcached")
			}
			if shardproc.Have(shardproc.MemcachedPath) && len(children) == 0 {
				t.Log("the sharding act ended before its memcached processes were seen")
			}
			took, err := signalAndWait(t, cmd, sig, stdout, &out)
			if code := cmd.ProcessState.ExitCode(); code != 1 || took > actCleanup {
				t.Errorf("after %v: exit %d (%v) %v later; want 1 within %v\nstdout:\n%s\nstderr:\n%s", sig, code, err, took, actCleanup, out.String(), stderr.String())
			}
			if want := "tour: interrupted by " + sig.String(); !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), want)
			}
			// The act that was playing failed, and was the last.
			if _, after, ok := strings.Cut(out.String(), "FAILED: interrupted by "+sig.String()); !ok || strings.Contains(after, "Act ") {
				t.Errorf("no act failed as interrupted, or the tour went on after %v:\n%s", sig, out.String())
			}
			for _, pid := range children {
				if shardproc.Running(pid) {
					if p, err := os.FindProcess(pid); err == nil {
						p.Kill()
					}
					t.Errorf("memcached %d still runs after the tour ended", pid)
				}
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left %v in the temporary directory", left)
			}
		})
	}
}

// childrenOf returns the processes whose parent is pid and whose command is name (from /proc).
func childrenOf(pid int, name string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || close < open {
			continue
		}
		fields := strings.Fields(string(b[close+1:]))
		if string(b[open+1:close]) == name && len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			pids = append(pids, n)
		}
	}
	return pids
}
