package sidecar

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestExtractTarEntryNamedAsEarlier: an entry named as an earlier one, or under an earlier file,
// is ErrBadArchive whatever the types. The old code returned the raw error of making the
// directory ("mkdirat a: file exists", "statat a/b: not a directory") when the later entry was a
// directory, or under the earlier file.
func TestExtractTarEntryNamedAsEarlier(t *testing.T) {
	reg := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644} }
	dir := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	sym := func(name string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: "x"}
	}
	for _, tt := range []struct {
		name string
		hdrs []*tar.Header
	}{
		{"file then dir", []*tar.Header{reg("a"), dir("a")}},
		{"file then file under it", []*tar.Header{reg("a"), reg("a/b")}},
		{"file then file deep under it", []*tar.Header{reg("a"), reg("a/b/c")}},
		{"file then dir under it", []*tar.Header{reg("a"), dir("a/b/")}},
		{"file then symlink under it", []*tar.Header{reg("a"), sym("a/b")}},
		{"dir then file", []*tar.Header{dir("a"), reg("a")}},
		{"file then file", []*tar.Header{reg("a"), reg("a")}},
		{"deep file then dir", []*tar.Header{reg("d/a"), dir("d/a/")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := extractTar(bytes.NewReader(tarOf(t, tt.hdrs...)), t.TempDir())
			if !errors.Is(err, ErrBadArchive) {
				t.Errorf("extractTar = %v, want ErrBadArchive", err)
			}
		})
	}
}

// TestExtractTarRootedSymlink: a symlink target starting with a slash or a backslash is refused on
// every OS: on Windows both are rooted (on the current drive) without being absolute, and a tar
// made there may carry either. The old code let `\x` through everywhere, and on Windows `/x` too.
func TestExtractTarRootedSymlink(t *testing.T) {
	for _, target := range []string{`/x`, `\x`, `\\x`, `//x`, `\..\x`, `/`, `\`} {
		t.Run(target, func(t *testing.T) {
			dir := t.TempDir()
			err := extractTar(bytes.NewReader(tarOf(t, &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: target})), dir)
			if !errors.Is(err, ErrBadArchive) {
				t.Errorf("symlink to %q: extractTar = %v, want ErrBadArchive", target, err)
			}
			if _, err := os.Lstat(filepath.Join(dir, "l")); err == nil {
				t.Errorf("symlink to %q made", target)
			}
		})
	}
}

// TestExtractTarRootedName: an entry named with a leading separator is refused, as a leading slash
// is: on Windows a leading backslash roots the name on the current drive, and os.Root's error for
// it was not ErrBadArchive. (Elsewhere a backslash is a character of the name.)
func TestExtractTarRootedName(t *testing.T) {
	names := []string{`/x`, `//x`}
	if filepath.Separator == '\\' {
		names = append(names, `\x`, `\d\x`, `\\x`)
	}
	for _, name := range names {
		err := extractTar(bytes.NewReader(tarOf(t, &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644})), t.TempDir())
		if !errors.Is(err, ErrBadArchive) {
			t.Errorf("entry %q: extractTar = %v, want ErrBadArchive", name, err)
		}
	}
}
