package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/adapter/health"
	"github.com/podblocks/podblocks/lifecycle"
)

// TestExecNeedsAShell: in an image without /bin/sh (FROM scratch) exec= is refused when the flag
// is read, naming the way out, instead of failing every probe.
func TestExecNeedsAShell(t *testing.T) {
	old := shell
	shell = filepath.Join(t.TempDir(), "sh")
	defer func() { shell = old }()
	var specs []health.Spec
	err := checkFlags{lifecycle.Readyz, &specs}.Set("exec=true")
	if err == nil || !strings.Contains(err.Error(), "lacks") || !strings.Contains(err.Error(), "-config") || len(specs) != 0 {
		t.Errorf("exec= without a shell: error %v, %d specs; want a refusal naming -config and no spec", err, len(specs))
	}
}

// FuzzCheckFlag: a KIND=TARGET value adds exactly one check of a known kind, named after it,
// or is refused and adds none.
func FuzzCheckFlag(f *testing.F) {
	for _, s := range []string{"exec=true", "tcp=127.0.0.1:1", "http=http://x/healthz", "grpc=h:1/svc", "redis=h:6379",
		"ftp=x", "nope", "tcp=127.0.0.1", "http=127.0.0.1:8080/healthz", "grpc=h/svc", "=x", "tcp="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		specs := []health.Spec{{Name: "before"}}
		err := checkFlags{lifecycle.Livez, &specs}.Set(v)
		if err != nil {
			if len(specs) != 1 {
				t.Errorf("Set(%q) failed (%v) but added %d checks", v, err, len(specs)-1)
			}
			return
		}
		kind, target, _ := strings.Cut(v, "=")
		switch {
		case len(specs) != 2:
			t.Fatalf("Set(%q) added %d checks, want 1", v, len(specs)-1)
		case target == "" || !slices.Contains([]string{"exec", "tcp", "http", "grpc", "redis"}, kind):
			t.Errorf("Set(%q) accepted kind %q, target %q", v, kind, target)
		case specs[1].Name != kind+"-1" || specs[1].Probe != lifecycle.Livez || specs[1].Checker == nil:
			t.Errorf("Set(%q) added %+v", v, specs[1])
		}
	})
}
