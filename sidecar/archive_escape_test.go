package sidecar

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExtractTarSymlinkEscapesThroughSymlink: a symlink whose target stays in the root as written,
// but leaves it once a symlink on its way is followed (a parent directory, or a name in the target,
// that is itself a symlink to "."), is ErrBadArchive, in whatever order the entries come. The old
// code checked the target lexically only: the first two archives (the auditor's) were extracted
// with a nil error, and rev/up/secret read a file outside the root.
func TestExtractTarSymlinkEscapesThroughSymlink(t *testing.T) {
	sym := func(name, target string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}
	}
	tests := []struct {
		name string
		hdrs []*tar.Header
	}{
		{"parent is a symlink", []*tar.Header{sym("d", "."), sym("d/d/up", "../..")}},
		{"deep parent is a symlink", []*tar.Header{sym("d", "."), sym("d/d/d/d/d/d/d/d/up", strings.Repeat("../", 7)+".."),
			{Name: "index.html", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"file under a symlink", []*tar.Header{sym("d", "."), {Name: "d/d/x", Typeflag: tar.TypeReg, Mode: 0o644}}},
		{"dir under a symlink", []*tar.Header{sym("d", "."), {Name: "d/d/x/", Typeflag: tar.TypeDir, Mode: 0o755}}},
		{"dotdot after a symlink in the target", []*tar.Header{{Name: "s/", Typeflag: tar.TypeDir, Mode: 0o755},
			sym("s/d", "."), sym("s/up", "d/../..")}},
		{"dotdot after a symlink made later", []*tar.Header{{Name: "s/", Typeflag: tar.TypeDir, Mode: 0o755},
			sym("s/up", "d/../.."), sym("s/d", ".")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := t.TempDir()
			dir := filepath.Join(top, "a", "rev")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{top, filepath.Dir(dir)} {
				if err := os.WriteFile(filepath.Join(d, "secret"), []byte("outside\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := extractTar(bytes.NewReader(tarOf(t, tt.hdrs...)), dir)
			if !errors.Is(err, ErrBadArchive) {
				t.Errorf("extractTar = %v, want ErrBadArchive", err)
			}
			for _, p := range []string{"up/secret", "s/up/secret", "s/up/../secret"} {
				if got, err := os.ReadFile(filepath.Join(dir, p)); err == nil {
					t.Errorf("rev/%s read %q: outside the root", p, got)
				}
			}
		})
	}
}

// TestExtractTarSymlinksThatStayIn: symlinks that stay in the root, also through other symlinks
// and up from a subdirectory, are extracted as written.
func TestExtractTarSymlinksThatStayIn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rev")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := tarOf(t,
		&tar.Header{Name: "lib/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "lib/a.txt", Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "docs/deep/up", Typeflag: tar.TypeSymlink, Linkname: "../../lib/a.txt"},
		&tar.Header{Name: "docs/dot", Typeflag: tar.TypeSymlink, Linkname: "./../lib"},
		&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "lib"},
		&tar.Header{Name: "via", Typeflag: tar.TypeSymlink, Linkname: "l/a.txt"},
		&tar.Header{Name: "self", Typeflag: tar.TypeSymlink, Linkname: "."},
	)
	if err := extractTar(bytes.NewReader(data), dir); err != nil {
		t.Fatalf("extractTar: %v", err)
	}
	for _, p := range []string{"docs/deep/up", "docs/dot/a.txt", "l/a.txt", "via", "self/lib/a.txt"} {
		if got, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(got) != "lib/a.txt" {
			t.Errorf("%s: %q, %v; want lib/a.txt's content", p, got, err)
		}
	}
}
