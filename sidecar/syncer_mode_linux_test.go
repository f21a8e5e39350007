package sidecar_test

import (
	"archive/tar"
	"context"
	"io/fs"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/sidecar"
)

// umask reads this process's umask from /proc (reading it with syscall.Umask means setting it).
func umask(t *testing.T) fs.FileMode {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no umask to read: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatal(err)
			}
			return fs.FileMode(m)
		}
	}
	t.Skip("no Umask line in /proc/self/status (Linux before 4.7)")
	return 0
}

// modes lists the permission bits of everything under dir, by path relative to it.
func modes(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	got := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got[rel] = fi.Mode().Perm()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// readAsNobody reads each file under link as the user nobody, when the test runs as root.
func readAsNobody(t *testing.T, link string, files ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Log("not root: the read as nobody is skipped")
		return
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Log("setpriv not installed: the read as nobody is skipped")
		return
	}
	// The test's temporary directories are 0700: let nobody through them to the root.
	for d := filepath.Dir(link); d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(d) == os.TempDir() {
			break
		}
	}
	for _, f := range files {
		out, err := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "cat", filepath.Join(link, f)).CombinedOutput()
		if err != nil {
			t.Errorf("read %s as nobody: %v: %s", f, err, out)
		}
	}
}

// The Syncer published each revision in a directory os.MkdirTemp made, 0700: other users (nginx's
// workers, another container's user) could not read the content. Directories are 0755 and files
// 0644 (or 0755) less the umask, as mkdir and the archive make them, from both sources.
func TestSyncerPublishesReadableContent(t *testing.T) {
	um := umask(t)
	dir, file, execFile := 0o755&^um, 0o644&^um, 0o755&^um
	t.Run("http archive", func(t *testing.T) {
		as := &archiveServer{}
		as.set(tarball(t, "v1",
			&tar.Header{Name: "docs/", Typeflag: tar.TypeDir, Mode: 0o700},
			&tar.Header{Name: "docs/private.txt", Typeflag: tar.TypeReg, Mode: 0o600},
			&tar.Header{Name: "bin/run.sh", Typeflag: tar.TypeReg, Mode: 0o700},
			&tar.Header{Name: "deep/er/page.html", Typeflag: tar.TypeReg, Mode: 0o640},
			&tar.Header{Name: "bin/suid", Typeflag: tar.TypeReg, Mode: 0o6755},
			&tar.Header{Name: "shared/", Typeflag: tar.TypeDir, Mode: 0o1777}), `"m1"`)
		srv := httptest.NewServer(as)
		defer srv.Close()
		root := t.TempDir()
		src := &sidecar.HTTPArchiveSource{URL: srv.URL, Client: srv.Client()}
		link := publish(t, root, src)
		want := map[string]fs.FileMode{".": dir, "site.txt": file, "docs": dir, "docs/private.txt": file,
			"bin": dir, "bin/run.sh": execFile, "deep": dir, "deep/er": dir, "deep/er/page.html": file,
			"bin/suid": execFile, "shared": dir}
		if diff := cmp.Diff(want, modes(t, link+"/")); diff != "" {
			t.Errorf("modes of the published content (-want +got):\n%s", diff)
		}
		// Setuid, setgid and sticky bits from an archive never reach the volume.
		for _, name := range []string{"bin/suid", "shared"} {
			fi, err := os.Lstat(filepath.Join(link, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Errorf("%s: mode %v; want no setuid, setgid or sticky bit", name, fi.Mode())
			}
		}
		readAsNobody(t, link, "site.txt", "docs/private.txt", "bin/run.sh", "deep/er/page.html")
	})
	t.Run("git", func(t *testing.T) {
		if _, err := exec.LookPath("git"); err != nil {
			t.Skip("git binary not installed (apt-get install git)")
		}
		repo := t.TempDir()
		gitCmd(t, repo, "init", "-q", "-b", "main")
		for name, mode := range map[string]fs.FileMode{"docs/private.txt": 0o600, "bin/run.sh": 0o700} {
			p := filepath.Join(repo, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(name), mode); err != nil {
				t.Fatal(err)
			}
		}
		gitCmd(t, repo, "add", ".")
		commit(t, repo, "v1")
		root := t.TempDir()
		link := publish(t, root, &sidecar.GitSource{Repo: repo, Ref: "main"})
		want := map[string]fs.FileMode{".": dir, "site.txt": file, "docs": dir, "docs/private.txt": file,
			"bin": dir, "bin/run.sh": execFile}
		if diff := cmp.Diff(want, modes(t, link+"/")); diff != "" {
			t.Errorf("modes of the published content (-want +got):\n%s", diff)
		}
		readAsNobody(t, link, "site.txt", "docs/private.txt", "bin/run.sh")
	})
}

// publishV1 serves an archive holding site.txt "v1" (ETag "e1") and runs a Syncer of it under root
// until it published; it returns the link.
func publishV1(t *testing.T, root string) string {
	t.Helper()
	as := &archiveServer{}
	as.set(tarball(t, "v1"), `"e1"`)
	srv := httptest.NewServer(as)
	defer srv.Close()
	return publish(t, root, &sidecar.HTTPArchiveSource{URL: srv.URL, Client: srv.Client()})
}

// publish runs a Syncer of src under root until it published, and returns its link.
func publish(t *testing.T, root string, src sidecar.Source) string {
	t.Helper()
	s, err := sidecar.NewSyncer(root, src, sidecar.WithInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitUntil(t, "published", 30*time.Second, func() bool { return s.Version() != "" })
	return filepath.Join(root, "current")
}

// A revision an older Syncer published 0700 is made readable when Run finds it, though the content
// has not changed since (no new revision is published).
func TestSyncerOpensUpAnOldRevision(t *testing.T) {
	um := umask(t)
	if 0o755&^um == 0o700 {
		t.Skip("umask 077: revisions are 0700 anyway")
	}
	as := &archiveServer{}
	as.set(tarball(t, "v1"), `"o1"`)
	srv := httptest.NewServer(as)
	defer srv.Close()
	root := t.TempDir()
	src := &sidecar.HTTPArchiveSource{URL: srv.URL, Client: srv.Client()}
	link := publish(t, root, src)
	target, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(target, 0o700); err != nil { // as os.MkdirTemp made it
		t.Fatal(err)
	}
	publish(t, root, src)
	if now, err := filepath.EvalSymlinks(link); err != nil || now != target {
		t.Fatalf("link -> %s, %v: want the same revision, %s (the content did not change)", now, err, target)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o755&^um {
		t.Errorf("old revision's mode after a restart = %v, %v; want %v", fi.Mode().Perm(), err, 0o755&^um)
	}
}
