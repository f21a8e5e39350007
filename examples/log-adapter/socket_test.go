package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// startSocketAdapter starts the log-adapter binary on a unix or unixgram socket, writing to out,
// and waits until a line sent to the socket comes out.
// The returned channel is closed once the process exited.
func startSocketAdapter(t *testing.T, network, sock, out string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(bin, "-input", network+":"+sock, "-output", "file:"+out)
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	marker := []byte("n=" + time.Now().Format(time.RFC3339Nano))
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("log-adapter -input %s:%s exited: %s", network, sock, stderr.String())
		default:
		}
		if c, err := net.Dial(network, sock); err == nil {
			c.Write(append(marker, '\n'))
			c.Close()
		}
		b, _ := os.ReadFile(out)
		return bytes.Contains(b, marker[2:])
	}, "a line through the socket")
	return cmd, exited
}

// TestSocketRestart: log-adapter on a unix or unixgram socket starts again after it was killed
// (the socket file it left behind is replaced), removes the file when stopped by SIGTERM, and
// refuses to take over a socket that another log-adapter still listens on.
func TestSocketRestart(t *testing.T) {
	for _, network := range []string{"unix", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			dir := t.TempDir()
			sock, out := filepath.Join(dir, "in.sock"), filepath.Join(dir, "out.json")
			first, firstExited := startSocketAdapter(t, network, sock, out)
			// A second one must not steal the live socket.
			if b, err := exec.Command(bin, "-input", network+":"+sock).CombinedOutput(); err == nil ||
				!bytes.Contains(b, []byte("socket in use")) {
				t.Errorf("second log-adapter on a live socket: %v %q, want it refused (socket in use)", err, b)
			}
			first.Process.Signal(syscall.SIGKILL)
			select {
			case <-firstExited:
			case <-time.After(30 * time.Second):
				t.Fatal("the killed log-adapter did not exit")
			}
			if _, err := os.Lstat(sock); err != nil {
				t.Fatalf("no socket file left by SIGKILL (%v): the test proves nothing", err)
			}
			second, _ := startSocketAdapter(t, network, sock, out)
			second.Process.Signal(syscall.SIGTERM)
			adaptertest.Eventually(t, 30*time.Second, func() bool {
				_, err := os.Lstat(sock)
				return errors.Is(err, os.ErrNotExist)
			}, "the socket file removed after SIGTERM")
		})
	}
}
