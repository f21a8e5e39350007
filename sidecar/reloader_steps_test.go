package sidecar_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/sidecar"
)

// recordingReloader runs a Reloader of path with opts until the test ends, whose action records
// the content it reads, and rejects (ErrRejected) the content reject; it returns what the action
// recorded so far.
func recordingReloader(t *testing.T, path, reject string, opts ...sidecar.Option) (seen func() []string) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	action := func(context.Context) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
		if string(b) == reject {
			return fmt.Errorf("%w: does not parse", sidecar.ErrRejected)
		}
		return nil
	}
	r, err := sidecar.NewReloader([]string{path}, action, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	<-r.Ready()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// stepsReloader is a recordingReloader of path that rejects nothing, with a debounce of 300 ms and
// a rescan every 10 ms.
func stepsReloader(t *testing.T, path string) (seen func() []string) {
	t.Helper()
	return recordingReloader(t, path, "", sidecar.WithDebounce(300*time.Millisecond), sidecar.WithPollInterval(10*time.Millisecond))
}

// A file written in place in two writes 100 ms apart (inside the debounce) is read once it is
// still: the rescan waits for the debounce the first write's event started. The old code's rescan
// read the file between the two writes and ran the action for the half-written content (a
// nutcracker.yml with one server of two applied).
func TestReloaderWaitsForStepsOfAWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conf")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seen := stepsReloader(t, path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("first half\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // ten rescans
	if _, err := f.WriteString("second half\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the reload", 5*time.Second, func() bool { return len(seen()) > 0 })
	time.Sleep(50 * time.Millisecond) // five rescans
	if got := seen(); len(got) != 1 || got[0] != "first half\nsecond half\n" {
		t.Errorf("the action read %q, want only the whole content", got)
	}
}

// Events that never stop (another file in the directory written every 20 ms, inside the debounce)
// do not hold the rescan back for more than a poll interval: a change to the file is still seen.
func TestReloaderRescansDespiteEndlessEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "conf")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seen := stepsReloader(t, path)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_ = os.WriteFile(filepath.Join(dir, "log"), []byte{byte(i)}, 0o644)
		}
	}()
	defer func() {
		close(stop)
		<-stopped
	}()
	time.Sleep(100 * time.Millisecond) // the events run
	if err := os.WriteFile(path, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the change seen while the events go on", 5*time.Second, func() bool { return len(seen()) > 0 })
	if got := seen(); got[len(got)-1] != "new\n" {
		t.Errorf("the action read %q, want %q last", got, "new\n")
	}
}
