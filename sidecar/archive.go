package sidecar

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxArchiveBytes bounds the content extracted from one archive.
const maxArchiveBytes = 1 << 30

// extractTar unpacks a tar stream, gzip-compressed or not, into dir. Only regular files,
// directories and relative symlinks that stay inside dir are accepted; anything else (absolute or
// ".." paths, hard links, devices, escaping symlinks, an entry under a symlink or under a file, an
// entry named as an earlier one, unless both are directories) is ErrBadArchive, as is a stream the
// tar reader cannot read. What fails in writing the content (a full disk) is returned as it is.
// A symlink target starting with a slash or a backslash is refused on every OS (on Windows either
// roots it on the current drive, and a tar made there may carry one), as is a path starting with
// a separator.
//
// A symlink stays inside dir when its target is relative, its ".." components all come first, and
// they climb no higher than dir; and no entry is extracted under a symlink. So a symlink is
// resolved from a real directory, its ".." components climb real directories, and the rest of its
// target only descends, through names that are real directories or symlinks held to the same
// rule: whatever symlinks other entries (earlier or later) make, none leads out of dir. A target
// as "d/../x" is refused, since "d" may be a symlink, to "." for one, from which ".." leaves dir.
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
		case tar.TypeDir, tar.TypeReg, tar.TypeSymlink:
			if err := realDirParents(root, name); err != nil {
				return err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return entryErr(h.Name, err)
			}
		case tar.TypeReg:
			if h.Size < 0 || total+h.Size > maxArchiveBytes {
				return fmt.Errorf("%w: content over %d bytes", ErrBadArchive, maxArchiveBytes)
			}
			total += h.Size
			if err := mkdirParent(root, name); err != nil {
				return entryErr(h.Name, err)
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return entryErr(h.Name, err)
			}
			src := &readErr{r: io.LimitReader(tr, h.Size)}
			_, err = io.Copy(f, src)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if src.err != nil {
				return fmt.Errorf("%w: %w", ErrBadArchive, src.err)
			}
			if err != nil {
				return err // the write's: a full disk, a file size limit
			}
		case tar.TypeSymlink:
			if err := checkSymlink(name, h.Linkname); err != nil {
				return fmt.Errorf("%w: %q -> %q: %w", ErrBadArchive, h.Name, h.Linkname, err)
			}
			if err := mkdirParent(root, name); err != nil {
				return entryErr(h.Name, err)
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return entryErr(h.Name, err)
			}
		default:
			return fmt.Errorf("%w: %q: unsupported entry type %q", ErrBadArchive, h.Name, h.Typeflag)
		}
	}
}

// realDirParents returns ErrBadArchive when one of the directories holding name in root, as
// extracted so far, is a symlink, or not a directory (an earlier entry's file). It looks at the
// real tree (Lstat), parent by parent from the top; a missing one ends the check, since
// mkdirParent makes it a real directory.
func realDirParents(root *os.Root, name string) error {
	dir := filepath.Dir(name)
	if dir == "." {
		return nil
	}
	sep := string(filepath.Separator)
	for i := 0; ; {
		j := strings.Index(dir[i:], sep)
		p := dir
		if j >= 0 {
			p = dir[:i+j]
		}
		fi, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%w: %q: under the symlink %q", ErrBadArchive, name, p)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%w: %q: under %q, an earlier entry's %v", ErrBadArchive, name, p, fi.Mode().Type())
		}
		if j < 0 {
			return nil
		}
		i += j + 1
	}
}

// checkSymlink checks the target of the symlink name (cleaned by safeRel) against the rule
// extractTar states: relative, ".." components first only, climbing no higher than the root.
func checkSymlink(name, target string) error {
	if target == "" || strings.ContainsRune(target, 0) {
		return errors.New("empty or NUL target")
	}
	if rooted(target) || filepath.IsAbs(target) || filepath.VolumeName(target) != "" {
		return errors.New("absolute symlink")
	}
	named := false
	for _, c := range strings.FieldsFunc(target, func(r rune) bool { return r == '/' || r == filepath.Separator }) {
		switch {
		case c == ".":
		case c == "..":
			if named {
				return errors.New(`".." after a name: the name may be a symlink`)
			}
		default:
			named = true
		}
	}
	if _, err := safeRel(filepath.Join(filepath.Dir(name), target)); err != nil {
		return errors.New("symlink leaves the root")
	}
	return nil
}

// entryErr wraps an error creating the entry name or the directories holding it: ErrBadArchive
// when the name, or one of its directories' names, is taken by an earlier entry (EEXIST, or
// ENOTDIR for a file where a directory is wanted: the archive's doing), else the error as it is
// (the disk's: ENOSPC, EDQUOT, EFBIG).
func entryErr(name string, err error) error {
	if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w: %q: named as an earlier entry, or under an earlier file: %w", ErrBadArchive, name, err)
	}
	return err
}

// rooted reports whether the symlink target p starts with a slash or a backslash, on every OS: a
// rooted path on Windows, which filepath.IsAbs does not call absolute without a volume name, and
// which os.Root.Symlink takes as it is; a tar made on Windows may carry one elsewhere too.
func rooted(p string) bool {
	return p != "" && (p[0] == '/' || p[0] == '\\')
}

// readErr keeps the error, other than io.EOF, its reader returned: what failed in an io.Copy
// was reading the archive when it is set, else writing the file.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// mkdirParent makes the directories holding name in root.
func mkdirParent(root *os.Root, name string) error {
	if d := filepath.Dir(name); d != "." {
		return root.MkdirAll(d, 0o755)
	}
	return nil
}

// safeRel cleans an archive path and rejects one that is absolute, rooted (a leading separator:
// `\x` on Windows, not absolute there, which os.Root refuses with an error of its own) or leaves
// the root.
func safeRel(p string) (string, error) {
	if p == "" || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: empty or NUL path", ErrBadArchive)
	}
	c := filepath.Clean(filepath.FromSlash(p))
	if filepath.IsAbs(c) || os.IsPathSeparator(c[0]) || c == ".." || strings.HasPrefix(c, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: %q leaves the root", ErrBadArchive, p)
	}
	return c, nil
}
