package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// children returns the ids of the processes whose parent is ppid.
func children(t *testing.T, ppid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		i := bytes.LastIndexByte(b, ')')
		fields := strings.Fields(string(b[i+1:])) // state, ppid, ...
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			pids = append(pids, pid)
		}
	}
	return pids
}

// gone reports whether pid has exited (no longer listed, or a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// TestDemoLeavesDieWithDemo: a demo SIGKILLed in the middle of its queries takes its leaf
// processes with it (parent-death signal); they used to run on as orphans.
func TestDemoLeavesDieWithDemo(t *testing.T) {
	cmd := scatterCmd(t, "demo", "-shards", "2", "-replicas", "2", "-docs", "200", "-queries", "100000000", "-slow-prob", "0")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "GET /search") { // printed once every leaf serves
	}
	go func() { // keep the demo from blocking on a full pipe
		for sc.Scan() {
		}
	}()
	leaves := children(t, cmd.Process.Pid)
	if len(leaves) != 4 {
		t.Fatalf("demo has %d child processes %v, want its 4 leaves", len(leaves), leaves)
	}
	t.Cleanup(func() {
		for _, pid := range leaves {
			if !gone(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range leaves {
		for !gone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("leaf %d still runs 10s after the demo was SIGKILLed", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
