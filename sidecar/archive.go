package sidecar

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxArchiveBytes bounds the content extracted from one archive.
const maxArchiveBytes = 1 << 30

// extractTar unpacks a tar stream, gzip-compressed or not, into dir. Only regular files,
// directories and relative symlinks that stay inside dir are accepted; anything else (absolute or
// ".." paths, hard links, devices, escaping symlinks) is ErrBadArchive.
func extractTar(r io.Reader, dir string) error {
	br := bufio.NewReader(r)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		defer zr.Close()
		return extractTarStream(zr, dir)
	}
	return extractTarStream(br, dir)
}

// extractTarStream writes through an os.Root opened on dir: it makes nothing outside dir, and
// nothing at all once dir is removed (a fetch directory removed by another Syncer is not made anew
// by the extraction, which fails instead).
func extractTarStream(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		name, err := safeRel(h.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		// git archive adds a pax_global_header entry; it carries no file.
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if h.Size < 0 || total+h.Size > maxArchiveBytes {
				return fmt.Errorf("%w: content over %d bytes", ErrBadArchive, maxArchiveBytes)
			}
			total += h.Size
			if err := mkdirParent(root, name); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrBadArchive, err)
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%w: %w", ErrBadArchive, err)
			}
		case tar.TypeSymlink:
			target := h.Linkname
			if filepath.IsAbs(target) {
				return fmt.Errorf("%w: %q: absolute symlink", ErrBadArchive, h.Name)
			}
			if _, err := safeRel(filepath.Join(filepath.Dir(name), target)); err != nil {
				return fmt.Errorf("%w: %q: symlink leaves the root", ErrBadArchive, h.Name)
			}
			if err := mkdirParent(root, name); err != nil {
				return err
			}
			if err := root.Symlink(target, name); err != nil {
				return fmt.Errorf("%w: %w", ErrBadArchive, err)
			}
		default:
			return fmt.Errorf("%w: %q: unsupported entry type %q", ErrBadArchive, h.Name, h.Typeflag)
		}
	}
}

// mkdirParent makes the directories holding name in root.
func mkdirParent(root *os.Root, name string) error {
	if d := filepath.Dir(name); d != "." {
		return root.MkdirAll(d, 0o755)
	}
	return nil
}

// safeRel cleans an archive path and rejects one that is absolute or leaves the root.
func safeRel(p string) (string, error) {
	if p == "" || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: empty or NUL path", ErrBadArchive)
	}
	c := filepath.Clean(filepath.FromSlash(p))
	if filepath.IsAbs(c) || c == ".." || strings.HasPrefix(c, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: %q leaves the root", ErrBadArchive, p)
	}
	return c, nil
}
