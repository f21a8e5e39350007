package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/podblocks/podblocks/internal/shardproc"
)

// TestNutcrackerSIGHUPReopensLog: as nutcracker (and Debian's logrotate config, which renames the
// log and sends SIGHUP), SIGHUP reopens the -o file: a new file appears at the path and gets the
// lines logged after the signal, and the renamed one gets none of them.
func TestNutcrackerSIGHUPReopensLog(t *testing.T) {
	bin := buildAmbassador(t)
	ports, err := shardproc.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf, logPath := filepath.Join(dir, "nutcracker.yml"), filepath.Join(dir, "nutcracker.log")
	// The server is never dialed: no request is sent.
	yml := fmt.Sprintf("mc:\n  listen: 127.0.0.1:%d\n  servers:\n   - 127.0.0.1:1:1\n", ports[0])
	if err := os.WriteFile(conf, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func(path string) string {
		b, _ := os.ReadFile(path)
		return string(b)
	}
	rotated := logPath + ".1"
	cmd := startAmbassador(t, bin, nil, func() string { return read(rotated) + read(logPath) },
		"-c", conf, "-s", fmt.Sprint(ports[1]), "-o", logPath)
	ncWait(t, "the proxy to listen", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// A first SIGHUP proves the handler is installed (its reload is logged) before the rotation.
	_ = cmd.Process.Signal(syscall.SIGHUP)
	ncWait(t, "the first SIGHUP's reload in the log", func() bool {
		return strings.Count(read(logPath), "config reloaded") == 1
	})
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	ncWait(t, "a new log file with the second SIGHUP's reload", func() bool {
		return strings.Contains(read(logPath), "config reloaded")
	})
	if n := strings.Count(read(rotated), "config reloaded"); n != 1 {
		t.Errorf("the rotated log holds %d reload lines, want only the first:\n%s", n, read(rotated))
	}
}
