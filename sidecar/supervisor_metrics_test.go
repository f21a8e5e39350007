package sidecar

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/internal/await"
	"github.com/prometheus/client_golang/prometheus"
)

// supervisorMetrics returns the names of the metric families in reg, and the series of
// podblocks_sidecar_supervisor_restarts_total by their labels.
func supervisorMetrics(t *testing.T, reg *prometheus.Registry) (names []string, restarts map[string]float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	restarts = map[string]float64{}
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		if mf.GetName() != "podblocks_sidecar_supervisor_restarts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			restarts[strings.Join(labels, ",")] = m.GetCounter().GetValue()
		}
	}
	return names, restarts
}

// TestSupervisorRestartsByChild: the Supervisor's one metric counts restarts by child (its Name,
// default its Path), each child's series at 0 from the start: no result label with one value, no
// retries counter that nothing counts.
func TestSupervisorRestartsByChild(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := NewSupervisor([]Child{
		{Name: "crasher", Path: "sh", Args: []string{"-c", "exit 3"}},
		{Path: "sleep", Args: []string{"30"}},
	}, WithBackoff(fastBackoff), WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	names, restarts := supervisorMetrics(t, reg)
	if diff := cmp.Diff([]string{"podblocks_sidecar_supervisor_restarts_total"}, names); diff != "" {
		t.Errorf("registered metrics (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"child=crasher": 0, "child=sleep": 0}, restarts); diff != "" {
		t.Errorf("at start (-want +got):\n%s", diff)
	}
	done, cancel := runSupervisor(t, s)
	await.True(t, "2 restarts", 20*time.Second, func() bool { return s.Restarts(0) >= 2 })
	cancel()
	waitRun(t, done, 20*time.Second)
	_, restarts = supervisorMetrics(t, reg)
	want := map[string]float64{"child=crasher": float64(s.Restarts(0)), "child=sleep": 0}
	if diff := cmp.Diff(want, restarts); diff != "" {
		t.Errorf("after the restarts (-want +got):\n%s", diff)
	}
}

// TestNewSupervisorRejectsMissingProgram: a child whose program is not there, or is not
// executable, is a ConfigError from NewSupervisor, not a child restarted forever. A relative path
// is looked for in the child's Dir, where it runs.
func TestNewSupervisorRejectsMissingProgram(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.txt"), []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		child Child
		ok    bool
	}{
		{"in PATH", Child{Path: "sh"}, true},
		{"not in PATH", Child{Path: "podblocks-no-such-program"}, false},
		{"absent absolute path", Child{Path: filepath.Join(dir, "absent")}, false},
		{"not executable", Child{Path: filepath.Join(dir, "data.txt")}, false},
		{"a directory", Child{Path: dir}, false},
		{"relative to Dir", Child{Path: "./run.sh", Dir: dir}, true},
		{"relative, absent from Dir", Child{Path: "./run.sh", Dir: t.TempDir()}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSupervisor([]Child{{Path: "sleep"}, tc.child})
			var ce *ConfigError
			switch {
			case tc.ok && err != nil:
				t.Errorf("NewSupervisor: %v, want no error", err)
			case !tc.ok && !errors.As(err, &ce):
				t.Errorf("NewSupervisor: %v, want a *ConfigError", err)
			case !tc.ok && ce.Field != "children[1].Path":
				t.Errorf("ConfigError names %q, want children[1].Path", ce.Field)
			}
		})
	}
}

// TestSupervisorRestartsOfNoChild: Restarts of an index that names no child is 0, not a panic.
func TestSupervisorRestartsOfNoChild(t *testing.T) {
	s, err := NewSupervisor([]Child{{Path: "sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{-1, 1, 100} {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("Restarts(%d) panicked: %v", i, p)
				}
			}()
			if got := s.Restarts(i); got != 0 {
				t.Errorf("Restarts(%d) = %d, want 0", i, got)
			}
		}()
	}
}
