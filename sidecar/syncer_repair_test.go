package sidecar

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/await"
)

// TestSyncerRepairsTheLink: a sync after the published link was removed, or left dangling by its
// revision's removal, publishes the content again, even though the source has nothing new. The
// old code took the version it had published for the content on the volume, and answered every
// sync "unchanged": nothing ever restored the link.
func TestSyncerRepairsTheLink(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(t *testing.T, link string)
	}{
		{"link removed", func(t *testing.T, link string) {
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
		}},
		{"revision removed", func(t *testing.T, link string) {
			target, err := os.Readlink(link)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(filepath.Dir(link), target)); err != nil {
				t.Fatal(err)
			}
		}},
		{"link replaced by a file", func(t *testing.T, link string) {
			if err := os.Remove(link); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(link, []byte("not content\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			s, err := NewSyncer(root, fileSource("v1"), WithInterval(0))
			if err != nil {
				t.Fatal(err)
			}
			defer runSyncerOK(t, s)()
			<-s.Ready()
			link := filepath.Join(root, "current")
			site := filepath.Join(link, "site.txt")
			if b, err := os.ReadFile(site); err != nil || string(b) != "v1" {
				t.Fatalf("published site.txt = %q, %v", b, err)
			}
			tt.damage(t, link)
			s.Trigger()
			await.True(t, "the link repaired", 10*time.Second, func() bool {
				b, err := os.ReadFile(site)
				return err == nil && string(b) == "v1"
			})
			if v := s.Version(); v != "v1" {
				t.Errorf("Version = %q, want v1", v)
			}
		})
	}
}
