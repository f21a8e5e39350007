package sidecar

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func tarOf(t testing.TB, hdrs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Name))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(h.Name))
		}
	}
	tw.Close()
	return buf.Bytes()
}

var archiveTests = []struct {
	name string
	hdrs []*tar.Header
	ok   bool
}{
	{"files and dirs", []*tar.Header{{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "d/a.txt", Typeflag: tar.TypeReg, Mode: 0o644}}, true},
	{"inner symlink", []*tar.Header{{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644}, {Name: "l", Typeflag: tar.TypeSymlink, Linkname: "a"}}, true},
	{"dotdot", []*tar.Header{{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644}}, false},
	{"absolute", []*tar.Header{{Name: "/etc/x", Typeflag: tar.TypeReg, Mode: 0o644}}, false},
	{"escaping symlink", []*tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../etc"}}, false},
	{"absolute symlink", []*tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}, false},
	{"hard link", []*tar.Header{{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644}, {Name: "h", Typeflag: tar.TypeLink, Linkname: "a"}}, false},
	{"device", []*tar.Header{{Name: "dev", Typeflag: tar.TypeChar}}, false},
}

func TestExtractTar(t *testing.T) {
	for _, tt := range archiveTests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "x")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			err := extractTar(bytes.NewReader(tarOf(t, tt.hdrs...)), dir)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadArchive) {
				t.Errorf("err = %v, want ErrBadArchive", err)
			}
			if ents, _ := os.ReadDir(root); len(ents) != 1 {
				t.Errorf("extraction wrote outside its directory: %v", ents)
			}
		})
	}
}

func FuzzExtractTar(f *testing.F) {
	for _, tt := range archiveTests {
		f.Add(tarOf(f, tt.hdrs...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "x")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = extractTar(bytes.NewReader(data), dir)
		if ents, _ := os.ReadDir(root); len(ents) != 1 {
			t.Fatalf("extraction wrote outside its directory: %v", ents)
		}
	})
}

// removingReader serves data at most 512 bytes (a tar block) a read, and calls remove once asked
// for what lies past at: after the entries before it were extracted.
type removingReader struct {
	data   []byte
	pos    int
	at     int
	remove func()
}

func (r *removingReader) Read(p []byte) (int, error) {
	if r.pos >= len(r.data) {
		return 0, io.EOF
	}
	if r.pos >= r.at && r.remove != nil {
		r.remove()
		r.remove = nil
	}
	n := copy(p[:min(len(p), 512)], r.data[r.pos:])
	r.pos += n
	return n, nil
}

// TestExtractTarMakesNoRemovedDir: once the directory extracted into is removed midway (by another
// Syncer's sweep), extraction fails instead of making it anew with the rest of the content (the old
// code's os.MkdirAll of an entry's parents did).
func TestExtractTarMakesNoRemovedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fetch")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := tarOf(t, &tar.Header{Name: "a.txt", Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "sub/deeper/x.txt", Typeflag: tar.TypeReg, Mode: 0o644})
	removed := false
	r := &removingReader{data: data, at: 1024, remove: func() {
		if _, err := os.Stat(filepath.Join(dir, "a.txt")); err != nil {
			t.Errorf("first entry not extracted before the removal: %v", err)
		}
		removed = os.RemoveAll(dir) == nil
	}}
	if err := extractTar(r, dir); err == nil {
		t.Error("extractTar into a directory removed midway: nil error")
	}
	if !removed {
		t.Fatal("the directory was not removed midway")
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("%s: %v, want it not made anew", dir, err)
	}
}
