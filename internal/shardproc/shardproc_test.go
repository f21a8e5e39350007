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
	goleak.VerifyTestMain(m)
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
