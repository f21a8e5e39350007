package etcdtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// BinaryPath is where Debian's etcd-server package installs the server (etcd 3.4 on Debian 12/13).
const BinaryPath = "/usr/bin/etcd"

// Process is an etcd server binary running as a child process on loopback.
type Process struct {
	Endpoint string // client URL
	cmd      *exec.Cmd
	out      *syncbuf.Buffer
}

// StartBinary starts the etcd binary at BinaryPath as a single-member cluster on random loopback
// ports, waits until it serves reads, and stops it (SIGTERM, then SIGKILL after 10s) when the test
// ends. It skips the test with a message when the binary is absent.
func StartBinary(t testing.TB) *Process {
	t.Helper()
	if _, err := os.Stat(BinaryPath); err != nil {
		t.Skipf("etcdtest: %s not found (apt-get install etcd-server): %v", BinaryPath, err)
	}
	client := "http://" + freeport.TCP(t)
	peer := "http://" + freeport.TCP(t)
	p := &Process{Endpoint: client, out: &syncbuf.Buffer{}}
	p.cmd = exec.Command(BinaryPath,
		"--name", "bin",
		"--data-dir", t.TempDir(),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bin="+peer,
		"--initial-cluster-token", "etcdtest-bin",
		"--heartbeat-interval", strconv.Itoa(tickMs),
		"--election-timeout", strconv.Itoa(electionMs),
		"--logger", "zap",
		"--log-level", "error",
	)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("etcdtest: start %s: %v", BinaryPath, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
	})
	cli := NewClient(t, client)
	ctx, cancel := context.WithTimeout(context.Background(), startLimit)
	defer cancel()
	if err := WaitHealthy(ctx, cli); err != nil {
		t.Fatalf("etcdtest: %s did not become healthy: %v\noutput:\n%s", BinaryPath, err, p.out.String())
	}
	return p
}

// Version asks the binary for its version line (for test logs).
func Version() string {
	out, err := exec.Command(BinaryPath, "--version").Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := bytes.Cut(out, []byte("\n"))
	return string(line)
}
