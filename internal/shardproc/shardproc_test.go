package shardproc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
