package sidecar

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
)

// publishOnce runs a Syncer on root until it published fileSource(version) as link, and stops it:
// the root then holds a revision, the link and the lock file, as a run of an older pod left them.
func publishOnce(t *testing.T, root, link, version string) {
	t.Helper()
	s, err := NewSyncer(root, fileSource(version), WithInterval(0), WithLinkName(link))
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := runSyncer(t, s)
	awaitPublish(t, s, done, "the first run")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A lock file left by another user (an init container run as root; a changed runAsUser), 0644, is
// one this Syncer may not open for writing: it locks it read-only and runs, and a second Syncer on
// the root is still refused. It used to exit at once ("permission denied").
func TestSyncerLocksALockFileItMayNotWrite(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to leave a lock file as root and run a Syncer as another user")
	}
	base, err := os.MkdirTemp("", "syncer-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	root := filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o777); err != nil {
		t.Fatal(err)
	}
	// os.Mkdir's mode is less the umask; the directories are the test's own.
	if err := os.Chmod(root, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	publishOnce(t, root, "current", "root's")
	if fi, err := os.Stat(filepath.Join(root, rootLock)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("lock file left by root: %v, %v; want mode 0644", fi, err)
	}
	// The test binary, where the other user may run it (the build cache is root's only).
	bin := filepath.Join(base, "sidecar.test")
	copyExecutable(t, os.Args[0], bin)

	child := exec.Command(bin, "-test.run=^$")
	child.Env = append(os.Environ(), "SIDECAR_SYNCER_CHILD=1", "SYNC_ROOT="+root)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	child.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	t.Cleanup(func() {
		_ = child.Process.Kill()
		<-exited
	})
	await.True(t, "the publish of the Syncer run as uid 65534", 20*time.Second, func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the Syncer run as uid 65534 exited: %v; want it to run", err)
		default:
		}
		b, err := os.ReadFile(filepath.Join(root, "child", "site.txt"))
		return err == nil && string(b) == "child"
	})
	// It holds the lock: this Syncer is refused. The holder named is root's run, which wrote last.
	if err := secondRun(t, root, "mine"); !errors.As(err, new(*RootInUseError)) {
		t.Fatalf("a second Syncer on the root: %v, want a *RootInUseError", err)
	}
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Errorf("the Syncer run as uid 65534, stopped by SIGTERM: %v, want exit status 0", err)
	}
	exited <- nil
}

// copyExecutable copies the program from to to, mode 0755.
func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// On a read-only root a Syncer serves the content published there (Ready, its version, the hooks),
// as it did before it locked its root: it locks the lock file read-only when there is one, and
// runs unlocked, saying so once, when there is none (published by an older Syncer) or it cannot be
// locked read-only (NFS, where flock(2) is an fcntl(2) lock, which needs a writable file). It used to
// exit at once ("read-only file system").
func TestSyncerServesOnAReadOnlyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to mount a read-only root")
	}
	for _, tc := range []struct {
		name     string
		lockFile bool
		flockErr error // what flock(2) fails with, or nil
		locked   bool
	}{
		{name: "lock file left", lockFile: true, locked: true},
		{name: "no lock file", lockFile: false},
		{name: "lock file left, flock needing a writable file", lockFile: true, flockErr: syscall.EBADF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			publishOnce(t, src, "current", "v1")
			if !tc.lockFile {
				if err := os.Remove(filepath.Join(src, rootLock)); err != nil {
					t.Fatal(err)
				}
			}
			root := t.TempDir()
			if err := syscall.Mount(src, root, "", syscall.MS_BIND, ""); err != nil {
				t.Skipf("cannot bind-mount a directory: %v", err)
			}
			t.Cleanup(func() {
				if err := syscall.Unmount(root, syscall.MNT_DETACH); err != nil {
					t.Errorf("unmount %s: %v", root, err)
				}
			})
			if err := syscall.Mount("", root, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
				t.Fatalf("remount %s read-only: %v", root, err)
			}
			if tc.flockErr != nil {
				saved := flockFn
				flockFn = func(*os.File, int) error { return tc.flockErr }
				t.Cleanup(func() { flockFn = saved })
			}
			core, logs := observer.New(zap.WarnLevel)
			hooks := make(chan struct{}, 1)
			s, err := NewSyncer(root, fileSource("v2"), WithInterval(0), WithLogger(zap.New(core)),
				WithHooks(func(context.Context) error {
					select {
					case hooks <- struct{}{}:
					default:
					}
					return nil
				}))
			if err != nil {
				t.Fatal(err)
			}
			done, cancel := runSyncer(t, s)
			awaitPublish(t, s, done, "the published content of a read-only root")
			if v := s.Version(); v != "v1" {
				t.Errorf("version %q, want v1, the one published", v)
			}
			select {
			case <-hooks:
			case err := <-done:
				t.Fatalf("Run: %v, want it to run", err)
			case <-time.After(10 * time.Second):
				t.Fatal("no hook run for the published content in 10s")
			}
			if tc.locked {
				if err := secondRun(t, root, "mine"); !errors.As(err, new(*RootInUseError)) {
					t.Errorf("a second Syncer on the root: %v, want a *RootInUseError", err)
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v, want nil", err)
			}
			want := 1
			if tc.locked {
				want = 0
			}
			if n := logs.FilterMessageSnippet("a second Syncer on this root is not refused").Len(); n != want {
				t.Errorf("%d warnings that the root's lock file is not locked, want %d", n, want)
			}
		})
	}
}
