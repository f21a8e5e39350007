package lifecycle

import (
	"os"
	"path/filepath"
	"testing"
)

// The init starts the program from its own path only while that path still holds the running
// executable; otherwise from /proc/self/exe.
func TestSameFileOr(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, fallback, want string }{
		{link, a, link},                    // the same file: its own path
		{b, a, a},                          // replaced by another file
		{filepath.Join(dir, "gone"), a, a}, // removed
		{a, filepath.Join(dir, "gone"), filepath.Join(dir, "gone")}, // nothing to compare with
	} {
		if got := sameFileOr(tc.path, tc.fallback); got != tc.want {
			t.Errorf("sameFileOr(%q, %q) = %q, want %q", tc.path, tc.fallback, got, tc.want)
		}
	}
	if got := initExecPath(); got == selfExe {
		t.Errorf("initExecPath() = %q while the test binary is where it started", got)
	}
}
