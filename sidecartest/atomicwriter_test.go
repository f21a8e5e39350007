package sidecartest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWriteAtomicLayout(t *testing.T) {
	dir := t.TempDir()
	if err := WriteAtomic(dir, map[string]string{"a.conf": "1", "sub/b": "2"}); err != nil {
		t.Fatal(err)
	}
	first, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := WriteAtomic(dir, map[string]string{"a.conf": "3"}); err != nil {
		t.Fatal(err)
	}
	second, _ := os.Readlink(filepath.Join(dir, "..data"))
	if first == second || first == "" {
		t.Errorf("..data -> %q then %q: want a new payload directory", first, second)
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("old payload %s still there (err %v)", first, err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "a.conf"))
	if err != nil || string(got) != "3" {
		t.Errorf("a.conf = %q, %v; want 3", got, err)
	}
	if target, _ := os.Readlink(filepath.Join(dir, "a.conf")); target != filepath.Join("..data", "a.conf") {
		t.Errorf("a.conf -> %q", target)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, de := range ents {
		if de.Name() != second {
			names = append(names, de.Name())
		}
	}
	sort.Strings(names)
	if diff := cmp.Diff([]string{"..data", "a.conf"}, names); diff != "" {
		t.Errorf("entries besides the payload dir (-want +got):\n%s", diff)
	}
}

func TestWriteAtomicRejectsBadPaths(t *testing.T) {
	for _, p := range []string{"", "/abs", "../up", "..data"} {
		if err := WriteAtomic(t.TempDir(), map[string]string{p: "x"}); err == nil {
			t.Errorf("path %q: want an error", p)
		}
	}
}
