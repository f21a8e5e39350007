package sidecar

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIsRevName(t *testing.T) {
	for _, v := range []string{"", "x", `"etag"`, "sha256:" + strings.Repeat("f", 64)} {
		for _, now := range []time.Time{time.Unix(0, 1), time.Now(), time.Unix(1<<33-1, 999999999)} {
			if n := revName(v, now); !isRevName(n) {
				t.Errorf("isRevName(revName(%q, %v) = %q) = false", v, now, n)
			}
		}
	}
	for _, n := range []string{
		"", ".rev-", ".rev-evil", ".rev-0123456789abcdef", ".rev-0123456789abcdef-",
		".rev-0123456789abcdef-x/../..", ".rev-0123456789abcdef-..", ".rev-0123456789ABCDEF-x",
		".rev-0123456789abcdeg-x", ".rev-0123456789abcdef-X", "rev-0123456789abcdef-x",
		".rev-0123456789abcdef-x.podblocks-version", `.rev-0123456789abcdef-x\y`, "/.rev-0123456789abcdef-x",
	} {
		if isRevName(n) {
			t.Errorf("isRevName(%q) = true, want false", n)
		}
	}
}

// chmodDir changes nothing when the directory it opens is not the one Lstat saw (swapped meanwhile).
func TestChmodDirReplaced(t *testing.T) {
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	fa, err := os.Lstat(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := chmodDir(b, fa, 0o755); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("chmodDir(b, a's info) = %v, want a \"replaced\" error", err)
	}
	if fi, err := os.Stat(b); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("b's mode = %v, %v; want 0700 untouched", fi.Mode().Perm(), err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink("b", link); err != nil {
		t.Skipf("no symlink: %v", err)
	}
	fb, err := os.Stat(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := chmodDir(link, fb, 0o755); err == nil {
		t.Errorf("chmodDir(symlink to b, b's info) = nil, want an error")
	}
	if fi, err := os.Stat(b); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("b's mode after a chmodDir through a symlink = %v, %v; want 0700 untouched", fi.Mode().Perm(), err)
	}
	if err := chmodDir(a, fa, 0o750); err != nil {
		t.Fatalf("chmodDir(a, a's info) = %v", err)
	}
	if fi, err := os.Stat(a); err != nil || (fi.Mode().Perm() != 0o750 && os.PathSeparator == '/') {
		t.Errorf("a's mode = %v, %v; want 0750", fi.Mode().Perm(), err)
	}
}
