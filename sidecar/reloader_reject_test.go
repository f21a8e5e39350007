package sidecar_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podblocks/podblocks/sidecar"
	"github.com/prometheus/client_golang/prometheus"
)

// An action that rejects the content (ErrRejected: a configuration that does not parse) is not
// retried, nor counted a reload: the Reloader counts it rejected, and the next change runs the
// action again. The old code retried it with backoff (here every 5 ms) and counted nothing.
func TestReloaderRejectedContentNotRetried(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conf")
	if err := os.WriteFile(path, []byte("good 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reads := recordingReloader(t, path, "bad\n", sidecar.WithRegisterer(reg),
		sidecar.WithDebounce(5*time.Millisecond), sidecar.WithPollInterval(10*time.Millisecond),
		sidecar.WithBackoff(func(int) time.Duration { return 5 * time.Millisecond }))
	write := func(content string) { // whole: a rename over the file
		if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write("bad\n")
	waitUntil(t, "the bad content read", 5*time.Second, func() bool { return len(reads()) > 0 })
	time.Sleep(200 * time.Millisecond) // forty backoffs, twenty rescans
	if got := reads(); len(got) != 1 {
		t.Errorf("the rejected content was read %d times (%q), want once", len(got), got)
	}
	if got, want := counterValues(t, reg, "podblocks_sidecar_reloader_reloads_total"), `{result="no_process"} 0; {result="ok"} 0; {result="rejected"} 1`; got != want {
		t.Errorf("after the rejection: %s, want %s", got, want)
	}
	write("good 2\n")
	waitUntil(t, "the good content applied", 5*time.Second, func() bool {
		return counterValues(t, reg, "podblocks_sidecar_reloader_reloads_total") == `{result="no_process"} 0; {result="ok"} 1; {result="rejected"} 1`
	})
	if got := reads(); got[len(got)-1] != "good 2\n" {
		t.Errorf("read %q, want %q last", got, "good 2\n")
	}
}
