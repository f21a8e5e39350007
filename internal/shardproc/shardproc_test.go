package shardproc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/pdeathsig"
)

// helperEnv makes the test binary a parent for TestChildDiesWithParent: it starts memcached, prints
// its pid and waits to be killed.
const helperEnv = "SHARDPROC_TEST_PARENT"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		p, err := StartMemcached()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(p.cmd.Process.Pid)
		select {}
	}
	if os.Getenv(nofileEnv) != "" {
		os.Exit(startUnderNofile(os.Getenv(nofileEnv)))
	}
	goleak.VerifyTestMain(m)
}

// nofileEnv makes the test binary a process whose hard limit of open files is the variable's value
// for TestMemcachedUnderLowNofileLimit: it starts memcached and says "ok", or why not.
const nofileEnv = "SHARDPROC_TEST_NOFILE"

func startUnderNofile(limit string) int {
	n, err := strconv.ParseUint(limit, 10, 64)
	if err == nil {
		err = setNofile(n)
	}
	if err != nil {
		fmt.Println("error: set the limit:", err)
		return 1
	}
	p, err := StartMemcached()
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	p.Stop()
	fmt.Println("ok")
	return 0
}

// TestChildDiesWithParent: a parent SIGKILLed, which runs no cleanup, leaves no memcached behind
// (Linux, where there is a parent-death signal).
func TestChildDiesWithParent(t *testing.T) {
	if !pdeathsig.Supported {
		t.Skipf("no parent-death signal on %s", runtime.GOOS)
	}
	if !Have(MemcachedPath) {
		t.Skipf("%s not installed (Debian package memcached; .ci/run installs it)", MemcachedPath)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(exe, "-test.run=^$")
	parent.Env = append(os.Environ(), helperEnv+"=1")
	stdout, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Wait()
	defer parent.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	child, convErr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || convErr != nil {
		t.Fatalf("parent said %q, %v", line, err)
	}
	if !Running(child) {
		t.Fatalf("memcached %d is not running", child)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for Running(child) {
		if time.Now().After(deadline) {
			if pr, err := os.FindProcess(child); err == nil {
				pr.Kill()
			}
			t.Fatalf("memcached %d still running 5s after its parent was killed", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := FreePorts(16)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: %d is not a new positive port", ports, p)
		}
		seen[p] = true
	}
}

func TestStartMissingBinary(t *testing.T) {
	orig := MemcachedPath
	defer func() { MemcachedPath = orig }()
	MemcachedPath = "/nonexistent/memcached"
	if _, err := StartMemcached(); !errors.Is(err, ErrMissing) {
		t.Fatalf("StartMemcached with no binary: %v, want ErrMissing", err)
	}
}

// version asks memcached for its version with a read deadline.
func version(c net.Conn, br *bufio.Reader, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte("version\r\n")); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	return br.ReadString('\n')
}

// TestPauseResumeStopRestart drives a real memcached through the states the fault tests use: a
// paused process keeps its socket but answers nothing; resumed, it answers what was asked; stopped,
// it refuses connections; started again, it listens on the same address.
func TestPauseResumeStopRestart(t *testing.T) {
	if !Have(MemcachedPath) {
		t.Skipf("%s not installed (Debian package memcached; .ci/run installs it)", MemcachedPath)
	}
	p, err := StartMemcached()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if line, err := version(c, br, 5*time.Second); err != nil || !strings.HasPrefix(line, "VERSION ") {
		t.Fatalf("version: %q, %v", line, err)
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid)); err == nil {
		// Pause returns once every thread has stopped, not when SIGSTOP is merely sent.
		for _, task := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", p.cmd.Process.Pid, task.Name()))
			if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] != 'T' {
				t.Fatalf("thread %s of the paused process in state %c, want T", task.Name(), b[i+2])
			}
		}
	}
	var ne net.Error
	if line, err := version(c, br, 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() || line != "" {
		t.Fatalf("paused process answered %q, %v; want a timeout", line, err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "VERSION ") {
		t.Fatalf("after Resume: %q, %v; want the paused request's answer", line, err)
	}
	p.Stop()
	p.Stop() // idempotent
	if c2, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		c2.Close()
		t.Fatalf("stopped process still accepts on %s", p.Addr)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	c3, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if line, err := version(c3, bufio.NewReader(c3), 5*time.Second); err != nil || !strings.HasPrefix(line, "VERSION ") {
		t.Fatalf("after restart: %q, %v", line, err)
	}
}

// memcached started under a hard limit of open files below 4096 starts, with a -c that fits the
// limit: as user nobody (this process is root) or as any other user it cannot raise the hard limit
// to -c, and with -c 4096 it exited with "failed to set rlimit for open files" (exit status 71).
func TestMemcachedUnderLowNofileLimit(t *testing.T) {
	if !Have(MemcachedPath) {
		t.Skipf("%s not installed (Debian package memcached; .ci/run installs it)", MemcachedPath)
	}
	if !canSetNofile {
		t.Skipf("no limit of open files on %s", runtime.GOOS)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), nofileEnv+"=1024")
	out, err := cmd.CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != "ok" {
		t.Fatalf("StartMemcached under a hard limit of 1024 open files: %q, %v; want ok", got, err)
	}
}

// A process that exits before it listens gets an error that says why: its exit status and the end
// of its stderr. The old error said only that it exited.
func TestExitedBeforeListeningSaysWhy(t *testing.T) {
	if !Have(MemcachedPath) {
		t.Skipf("%s not installed (Debian package memcached; .ci/run installs it)", MemcachedPath)
	}
	_, err := start(MemcachedPath, func(port int) []string {
		return []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "--no-such-option"}
	}, dropRootAttr)
	if err == nil || !strings.Contains(err.Error(), "unrecognized option '--no-such-option'") ||
		!strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("memcached with a bad option: %v; want its exit status and stderr", err)
	}
}

// tail keeps the last max bytes of what is written to it, however it is split.
func TestTail(t *testing.T) {
	for _, tc := range []struct {
		writes []string
		want   string
	}{
		{nil, ""},
		{[]string{"abc"}, "abc"},
		{[]string{"abcdef"}, "cdef"},
		{[]string{"ab", "cd", "ef"}, "cdef"},
		{[]string{"abc", "d"}, "abcd"},
		{[]string{"abc", "defghij", "k"}, "hijk"},
	} {
		tl := &tail{max: 4}
		for _, w := range tc.writes {
			if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", w, n, err)
			}
		}
		if got := tl.String(); got != tc.want {
			t.Errorf("writes %q: kept %q, want %q", tc.writes, got, tc.want)
		}
	}
}
