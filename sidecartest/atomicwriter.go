package sidecartest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const dataDir = "..data"

// WriteAtomic replaces the payload of dir with files (relative path -> content) as Kubernetes'
// AtomicWriter does for ConfigMap and Secret volumes: the payload is written to a new timestamped
// directory "..<timestamp>", the "..data" symlink is swapped to it by renaming a temporary symlink
// over it, each top-level name is a symlink to "..data/<name>", names no longer in the payload are
// removed, and the previous payload directory is deleted. Readers that resolve paths through the
// visible names always see one complete payload.
func WriteAtomic(dir string, files map[string]string) error {
	for p := range files {
		if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "..") || strings.Contains(p, "/../") {
			return fmt.Errorf("sidecartest: bad payload path %q", p)
		}
	}
	oldTarget, _ := os.Readlink(filepath.Join(dir, dataDir))
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return fmt.Errorf("sidecartest: payload dir: %w", err)
	}
	for p, content := range files {
		full := filepath.Join(ts, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return fmt.Errorf("sidecartest: %w", err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return fmt.Errorf("sidecartest: %w", err)
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(ts), tmpLink); err != nil {
		return fmt.Errorf("sidecartest: %w", err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataDir)); err != nil {
		return fmt.Errorf("sidecartest: swap %s: %w", dataDir, err)
	}
	top := map[string]bool{}
	for p := range files {
		top[strings.SplitN(filepath.ToSlash(p), "/", 2)[0]] = true
	}
	names := make([]string, 0, len(top))
	for n := range top {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		link := filepath.Join(dir, n)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join(dataDir, n), link); err != nil {
			return fmt.Errorf("sidecartest: %w", err)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("sidecartest: %w", err)
	}
	for _, de := range ents {
		if !strings.HasPrefix(de.Name(), "..") && !top[de.Name()] && de.Type()&os.ModeSymlink != 0 {
			if err := os.Remove(filepath.Join(dir, de.Name())); err != nil {
				return fmt.Errorf("sidecartest: %w", err)
			}
		}
	}
	if oldTarget != "" && oldTarget != filepath.Base(ts) {
		if err := os.RemoveAll(filepath.Join(dir, oldTarget)); err != nil {
			return fmt.Errorf("sidecartest: remove old payload: %w", err)
		}
	}
	return nil
}
