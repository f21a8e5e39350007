package sidecar

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
)

// runSyncer runs s until cancel or the end of the test; done gets Run's result.
func runSyncer(t *testing.T, s *Syncer) (done <-chan error, cancel func()) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		ch <- s.Run(ctx)
	}()
	t.Cleanup(func() { cancelCtx(); <-ended })
	return ch, cancelCtx
}

// awaitPublish waits (10s) until s, whose Run sends its result on done, published.
func awaitPublish(t *testing.T, s *Syncer, done <-chan error, what string) {
	t.Helper()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("%s: Run: %v, want it to run", what, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing published in 10s", what)
	}
}

// secondRun runs a Syncer publishing fileSource(version) as link on root, and returns Run's error
// when it gives up at once; it fails the test when Run keeps running (10s).
func secondRun(t *testing.T, root, link string) error {
	t.Helper()
	s, err := NewSyncer(root, fileSource(link), WithInterval(0), WithLinkName(link))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatalf("a second Syncer on the root ran (10s), publishing %q", s.Version())
		return nil
	}
}

// checkInUse checks err is a *RootInUseError for root naming the holder by pid.
func checkInUse(t *testing.T, err error, root string, pid int) {
	t.Helper()
	var ue *RootInUseError
	if !errors.As(err, &ue) {
		t.Fatalf("second Run: %v, want a *RootInUseError", err)
	}
	if ue.Root != root || !strings.HasPrefix(ue.Holder, fmt.Sprintf("pid %d host ", pid)) || !strings.Contains(err.Error(), root) {
		t.Errorf("second Run: %v (root %q, holder %q); want root %s and holder \"pid %d host ...\"", err, ue.Root, ue.Holder, root, pid)
	}
}

// Two Syncers on one root, in one process, whatever their link names: the second's Run returns a
// *RootInUseError at once, naming the root and the holder, and publishes nothing. It used to run,
// and the publish of each pruned the other's revision (a link left pointing at nothing). Once the
// first has returned, the root is free.
func TestSyncerRefusesASecondSyncerOnItsRoot(t *testing.T) {
	root := t.TempDir()
	first, err := NewSyncer(root, fileSource("first"), WithInterval(0), WithLinkName("first"))
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := runSyncer(t, first)
	awaitPublish(t, first, done, "the first Syncer")
	checkInUse(t, secondRun(t, root, "second"), root, os.Getpid())
	if _, err := os.Lstat(filepath.Join(root, "second")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused Syncer's link: %v, want none", err)
	}
	first.Trigger()
	await.True(t, "a second sync of the first Syncer", 10*time.Second, func() bool { first.mu.Lock(); defer first.mu.Unlock(); return first.syncs >= 2 })
	if b, err := os.ReadFile(filepath.Join(root, "first", "site.txt")); err != nil || string(b) != "first" {
		t.Errorf("first/site.txt = %q, %v; want first", b, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first Run: %v", err)
	}
	next, err := NewSyncer(root, fileSource("next"), WithInterval(0), WithLinkName("next"))
	if err != nil {
		t.Fatal(err)
	}
	ndone, _ := runSyncer(t, next)
	awaitPublish(t, next, ndone, "a Syncer after the first returned")
}

// A Syncer in another process holds the root: Run here is refused, naming that process; once that
// process is SIGKILLed (no cleanup of its own), the kernel has released the lock and Run here runs.
func TestSyncerRootLockAcrossProcesses(t *testing.T) {
	root := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "SIDECAR_SYNCER_CHILD=1", "SYNC_ROOT="+root)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	await.True(t, "the other process's publish", 20*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(root, "child", "site.txt"))
		return err == nil && string(b) == "child"
	})
	checkInUse(t, secondRun(t, root, "mine"), root, child.Process.Pid)
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	s, err := NewSyncer(root, fileSource("mine"), WithInterval(0), WithLinkName("mine"))
	if err != nil {
		t.Fatal(err)
	}
	done, _ := runSyncer(t, s)
	awaitPublish(t, s, done, "after the holder was SIGKILLed")
}
