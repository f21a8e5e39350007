package sidecar_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// foreignLink sets up a root whose link was pointed, by whoever can write the volume, at target
// (with a version file next to what target names), runs a Syncer there until it published, and
// checks victim, a 0700 directory outside the root, kept its mode and the link now names a
// revision the Syncer made.
func foreignLink(t *testing.T, setup func(base, root, victim string) error) {
	t.Helper()
	um := umask(t)
	if 0o755&^um == 0o700 {
		t.Skip("umask 077: revisions are 0700 anyway")
	}
	base := t.TempDir()
	victim := filepath.Join(base, "victim") // stands for /root, ~/.ssh, a secrets directory
	root := filepath.Join(base, "volume")
	for _, err := range []error{os.Mkdir(victim, 0o700), os.Mkdir(root, 0o755), setup(base, root, victim)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	link := publishV1(t, root)
	if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory outside the root, named through the link: mode %v, %v; want 0700 (untouched)", fi.Mode().Perm(), err)
	}
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(root, target)); err != nil || !fi.IsDir() || !strings.HasPrefix(target, ".rev-") || strings.Contains(target, "/") {
		t.Errorf("link -> %q (%v): want a revision directory the Syncer published", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(link, "site.txt")); err != nil || string(b) != "v1" {
		t.Errorf("published site.txt = %q, %v; want the fetched v1", b, err)
	}
}

// A ".rev-*" entry of the root that is a symlink to a 0700 directory outside it: os.Stat and
// os.Chmod followed it, so a Syncer running as root made that directory 0755. Named like a revision
// or only starting like one.
func TestSyncerLinkToSymlinkedRevision(t *testing.T) {
	for _, rev := range []string{".rev-0123456789abcdef-evil", ".rev-evil"} {
		t.Run(rev, func(t *testing.T) {
			foreignLink(t, func(_, root, victim string) error {
				return errors.Join(
					os.Symlink(victim, filepath.Join(root, rev)),
					os.WriteFile(filepath.Join(root, rev+".podblocks-version"), []byte("x\n"), 0o644),
					os.Symlink(rev, filepath.Join(root, "current")))
			})
		})
	}
}

// A link target that only starts like a revision and climbs out of the root with "..".
func TestSyncerLinkOutOfTheRoot(t *testing.T) {
	foreignLink(t, func(base, root, victim string) error {
		return errors.Join(
			os.Mkdir(filepath.Join(root, ".rev-x"), 0o755),
			os.WriteFile(victim+".podblocks-version", []byte("x\n"), 0o644),
			os.Symlink(".rev-x/../../victim", filepath.Join(root, "current")))
	})
}
