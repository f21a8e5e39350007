package sidecar_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/sidecar"
	"github.com/prometheus/client_golang/prometheus"
)

// TestSyncerHookNoProcessNotRetried: a hook whose signal reached no process (ErrNoProcess) is not
// retried, as in the Reloader: a retry signals the application the moment it starts, before it
// installs its handler (SIGHUP then kills it). The run is counted with result "no_process", the
// hooks after it still run, and the version counts as hooked. The old code retried it until a
// process had the name.
func TestSyncerHookNoProcessNotRetried(t *testing.T) {
	var signals, after atomic.Int32
	signal := func(context.Context) error {
		signals.Add(1)
		return fmt.Errorf("signal app: %w", sidecar.ErrNoProcess)
	}
	next := func(context.Context) error { after.Add(1); return nil }
	reg := prometheus.NewRegistry()
	s, err := sidecar.NewSyncer(t.TempDir(), oneFile("v1"), sidecar.WithInterval(0),
		sidecar.WithHooks(signal, next), sidecar.WithBackoff(func(int) time.Duration { return time.Millisecond }),
		sidecar.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	waitUntil(t, "the hooks done for v1", 10*time.Second, func() bool { return s.HookedVersion() == "v1" })
	time.Sleep(50 * time.Millisecond) // fifty backoffs: a retry would have come by now
	if got := signals.Load(); got != 1 {
		t.Errorf("signal hook ran %d times, want 1 (not retried)", got)
	}
	if got := after.Load(); got != 1 {
		t.Errorf("the hook after it ran %d times, want 1", got)
	}
	if got := counterValues(t, reg, "podblocks_sidecar_syncer_hooks_total"); got != `{result="no_process"} 1; {result="ok"} 0` {
		t.Errorf("podblocks_sidecar_syncer_hooks_total: %s, want {result=\"no_process\"} 1; {result=\"ok\"} 0", got)
	}
}

// counterValues returns the series of the counter name in reg, as `{label="value"} n` joined by
// "; ", sorted.
func counterValues(t *testing.T, reg *prometheus.Registry, name string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out = append(out, fmt.Sprintf("{%s} %v", strings.Join(labels, ","), m.GetCounter().GetValue()))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// oneFile is a Source publishing one file, site.txt, whose content is the version.
type oneFile string

func (f oneFile) Fetch(_ context.Context, have, dir string) (string, error) {
	if have == string(f) {
		return have, nil
	}
	return string(f), os.WriteFile(filepath.Join(dir, "site.txt"), []byte(f), 0o644)
}
