package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// fallocate reserves the bytes as unwritten extents (on ext4 and XFS: reported as holes by
// SEEK_DATA until their pages are in the page cache, as after a read).
func fallocate(t *testing.T, f *os.File, off, n int64) {
	t.Helper()
	if err := syscall.Fallocate(int(f.Fd()), 0, off, n); errors.Is(err, syscall.EOPNOTSUPP) {
		t.Skipf("fallocate: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// mmapWrite writes b into f at off through a shared mapping, as a memory-mapped appender does.
func mmapWrite(t *testing.T, f *os.File, off int64, b []byte) {
	t.Helper()
	page := int64(os.Getpagesize())
	at := off / page * page
	m, err := syscall.Mmap(int(f.Fd()), at, int(off-at)+len(b), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	copy(m[off-at:], b)
	if err := syscall.Munmap(m); err != nil {
		t.Fatal(err)
	}
}

// reserveWrite is a way to reserve space in a file and a way to write lines into it.
type reserveWrite struct {
	name    string
	reserve reserveFunc
	write   writeAtFunc
}

// linuxReserveWrites are the ways besides ftruncate(2) and pwrite(2), which every system has.
var linuxReserveWrites = []reserveWrite{
	{"ftruncate, mmap", truncateUp, mmapWrite},
	{"fallocate, pwrite", fallocate, pwrite},
	{"fallocate, mmap", fallocate, mmapWrite},
}

// TestLinesWrittenIntoReservedSpaceLinux is TestLinesWrittenIntoReservedSpace with the space
// reserved by fallocate(2) and the lines written through a shared mapping.
func TestLinesWrittenIntoReservedSpaceLinux(t *testing.T) {
	for _, c := range linuxReserveWrites {
		t.Run(c.name, func(t *testing.T) { testLinesWrittenIntoReservedSpace(t, c.reserve, c.write) })
	}
}

// splicedReserved writes the lines a, one page of them, to dir/app.log, reserves n bytes after them
// and returns a descriptor of the file for writing into them and a Tailer of dir with a raw
// WriterSink on a pipe of 1 MiB that splices (WithSpliceFromFile), and the pipe's two ends.
func splicedReserved(t *testing.T, dir string, a []string, reserve reserveFunc, n int64) (f *os.File, tl *Tailer, r, w *os.File) {
	t.Helper()
	app := filepath.Join(dir, "app.log")
	appendFile(t, app, a...)
	f, err := os.OpenFile(app, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	reserve(t, f, 4096, n)
	tl, _, r, w = rawPipeTailer(t, dir, 1<<20, WithSpliceFromFile())
	if tl.stager == nil {
		t.Fatal("the Tailer does not stage its reads: the test does not test what it is for")
	}
	return f, tl, r, w
}

// checkPipe closes the pipe's write end w and checks that its read end r holds the lines want.
func checkPipe(t *testing.T, r, w *os.File, want []string) {
	t.Helper()
	w.Close()
	got := <-slowReader(r, 64<<10, 1<<30)
	if diff := cmp.Diff(strings.Join(want, "\n")+"\n", string(got)); diff != "" {
		t.Errorf("pipe (-want +got):\n%s", diff)
	}
}

// TestLinesWrittenIntoReservedSpaceSpliced: with WithSpliceFromFile, lines written into space
// reserved ahead of the writer reach the pipe as they were written, on tmpfs too. The Tailer staged
// a read's range of the file before the read, and the stage outlives a read that leaves reserved
// space unread; tmpfs stages a hole (or fallocated space) as the kernel's shared zero page, which
// the lines written there later do not change, so the pipe got NUL bytes where the Tailer had read
// and counted the lines.
func TestLinesWrittenIntoReservedSpaceSpliced(t *testing.T) {
	for _, c := range append(linuxReserveWrites, reserveWrite{"ftruncate, pwrite", truncateUp, pwrite}) {
		for _, reserved := range []int64{64 << 10, 1 << 20} { // within one read, and more than one
			t.Run(fmt.Sprintf("%s, %d", c.name, reserved), func(t *testing.T) {
				for fs, dir := range rewriteDirs(t) {
					t.Run(fs, func(t *testing.T) {
						// One page of lines: the reserved space starts on a page of its own.
						a := numbered("a", 0, 100)
						a = append(a, strings.Repeat("p", 4096-7*100-1))
						f, tl, r, w := splicedReserved(t, dir, a, c.reserve, reserved)
						rs, step := steppedTailer(t, tl)
						step()
						b := numbered("b", 0, 10)
						c.write(t, f, 4096, []byte(strings.Join(b, "\n")+"\n"))
						step()
						stopStepped(tl, rs)
						tl.stager.unstage()
						checkPipe(t, r, w, append(a, b...))
					})
				}
			})
		}
	}
}

// stageThen is a stager that runs then once, right after the first stage: a writer acting between
// the Tailer's stage of a range and its read of it.
type stageThen struct {
	stager
	then func()
}

func (s *stageThen) stage(f *os.File, off int64, n int) {
	s.stager.stage(f, off, n)
	if then := s.then; then != nil {
		s.then = nil
		then()
	}
}

// TestReservedSpaceFilledBetweenStageAndReadSpliced: with WithSpliceFromFile, space reserved ahead of
// the writer that it fills, up to the end of the Tailer's read, after the Tailer staged the range and
// before it read it, reaches the pipe as written. The read then ends in a line, not in NUL bytes, so
// nothing marks the file reserved, and on tmpfs the stage holds the space as the shared zero page.
func TestReservedSpaceFilledBetweenStageAndReadSpliced(t *testing.T) {
	for _, c := range append(linuxReserveWrites, reserveWrite{"ftruncate, pwrite", truncateUp, pwrite}) {
		t.Run(c.name, func(t *testing.T) {
			for fs, dir := range rewriteDirs(t) {
				t.Run(fs, func(t *testing.T) {
					// Lines of 64 bytes: one page of a lines, then 16 pages of b lines that fill the
					// reserved space exactly.
					line := func(p string, i int) string { return fmt.Sprintf("%s-%04d %s", p, i, strings.Repeat("x", 56)) }
					var a, b []string
					for i := range 64 {
						a = append(a, line("a", i))
					}
					for i := range 16 * 64 {
						b = append(b, line("b", i))
					}
					f, tl, r, w := splicedReserved(t, dir, a, c.reserve, 16*4096)
					st := &stageThen{stager: tl.stager, then: func() {
						c.write(t, f, 4096, []byte(strings.Join(b, "\n")+"\n"))
					}}
					tl.stager = st
					rs, step := steppedTailer(t, tl)
					step()
					if st.then != nil {
						t.Fatal("the Tailer did not stage a read")
					}
					stopStepped(tl, rs)
					st.unstage()
					checkPipe(t, r, w, append(a, b...))
				})
			}
		})
	}
}

// BenchmarkPollReservedEnd measures one read of a file at its end, after its lines, when 32 MiB are
// reserved after them (ftruncate up, fallocate; fallocate-256MiB reserves 256 MiB): what the Tailer
// does on each poll of such a file on Linux. "remembered" is the Tailer as it is (the bytes after one
// read were found NUL once); "checked" checks them again on every poll, as the recheck every
// zeroRecheck does; "no-reserve" is a file without them.
func BenchmarkPollReservedEnd(b *testing.B) {
	const reserved = 32 << 20
	fallocate := func(n int64) func(f *os.File, off int64) error {
		return func(f *os.File, off int64) error { return syscall.Fallocate(int(f.Fd()), 0, off, n) }
	}
	reserve := map[string]func(f *os.File, off int64) error{
		"no-reserve":       func(*os.File, int64) error { return nil },
		"ftruncate":        func(f *os.File, off int64) error { return f.Truncate(off + reserved) },
		"fallocate":        fallocate(reserved),
		"fallocate-256MiB": fallocate(256 << 20),
	}
	for _, kind := range []string{"no-reserve", "ftruncate", "fallocate", "fallocate-256MiB"} {
		for _, recheck := range []bool{false, true} {
			if kind == "no-reserve" && recheck {
				continue
			}
			name := kind + "/remembered"
			if recheck {
				name = kind + "/checked"
			}
			b.Run(name, func(b *testing.B) {
				dir, size := benchFile(b, 10)
				f, err := os.OpenFile(filepath.Join(dir, "app.log"), os.O_RDWR, 0)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				if err := reserve[kind](f, size); err != nil {
					b.Skip(err)
				}
				tl, err := NewTailer([]string{filepath.Join(dir, "*.log")}, NewWriterSink(io.Discard))
				if err != nil {
					b.Fatal(err)
				}
				rs := tl.newRun()
				tl.scan(rs, true)
				if _, err := tl.readAll(context.Background(), rs); err != nil {
					b.Fatal(err)
				}
				tf := rs.order[0]
				if tf.off != size {
					b.Fatalf("read up to %d, want %d", tf.off, size)
				}
				b.ReportAllocs()
				for b.Loop() {
					if recheck {
						tf.zerosAt = time.Time{}
					}
					if n, err := tl.readOnce(context.Background(), rs, tf); n != 0 || err != nil {
						b.Fatalf("read %d bytes, %v", n, err)
					}
				}
				b.ReportMetric(float64(rs.zeroReads)/float64(b.N), "checked-B/op")
				tf.close()
			})
		}
	}
}

// cacheFile reads all of f, as another reader of the file does: its pages are then in the page
// cache, where SEEK_DATA reports fallocated space as data on ext4 and XFS.
func cacheFile(t *testing.T, f *os.File) {
	t.Helper()
	if _, err := io.Copy(io.Discard, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		t.Fatal(err)
	}
}

// TestRecheckOfReservedSpaceReadsLittle: the recheck of fallocated space after a file's lines
// (every zeroRecheck) reads next to none of the space, while a writer fills it from its start and
// when another reader cached its pages, and it still finds lines written far into the space out of
// order, before and after they reached the disk, also after more NUL bytes written there than
// findData reads at once. On ext4 and XFS, SEEK_DATA reports fallocated space whose pages are in
// the page cache as data, and the Tailer's reads cache them (the kernel reads ahead of them): each
// recheck read all of the space, 32 MiB here, every 5 s.
func TestRecheckOfReservedSpaceReadsLittle(t *testing.T) {
	if !reportsHoles(t, t.TempDir()) {
		t.Skip("the file system of the temporary directory reports space just fallocated as data, not as a hole (SEEK_HOLE; fuse-overlayfs, NFS before 4.2): every recheck reads all of the space there")
	}
	// recheckBound is the most a step with a recheck may read: a chunk of findData's, nothing that
	// grows with the reserved space.
	const reserved, recheckBound = 32 << 20, 64 << 10
	for _, c := range []struct {
		name  string
		write writeAtFunc
		sync  bool // the lines out of order reach the disk before the recheck: their pages are clean
		// nulData NUL bytes are written right before the lines out of order: data, more of it than
		// one read of findData's, which the recheck reads from the start of their first page.
		nulData int64
	}{
		{"pwrite", pwrite, false, 0},
		{"mmap", mmapWrite, false, 0},
		{"pwrite, fsync", pwrite, true, 0},
		{"mmap, fsync", mmapWrite, true, 0},
		{"pwrite, NUL bytes written", pwrite, false, 256 << 10},
		{"mmap, NUL bytes written", mmapWrite, false, 256 << 10},
		{"pwrite, fsync, NUL bytes written", pwrite, true, 256 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, f, a, start := newLinesEnv(t)
			tl, rs, step := e.steppedAround(t, true, func() { fallocate(t, f, start, reserved) })
			recheck := func(what string, written int64) {
				t.Helper()
				for _, tf := range rs.files {
					tf.zerosAt = tf.zerosAt.Add(-zeroRecheck)
				}
				before := rs.zeroReads
				step()
				if n := rs.zeroReads - before; n > recheckBound+written {
					t.Errorf("a recheck %s read %d bytes of the %d reserved, want at most %d", what, n, reserved, recheckBound+written)
				}
			}
			want, off := a, start
			for i := range 10 {
				var b strings.Builder
				for j := range 1000 {
					l := fmt.Sprintf("b-%02d-%04d %s", i, j, strings.Repeat("x", 80))
					want = append(want, l)
					b.WriteString(l + "\n")
				}
				c.write(t, f, off, []byte(b.String()))
				off += int64(b.Len())
				recheck("while the writer fills the space", 0)
			}
			cacheFile(t, f)
			recheck("of the space another reader cached", 0)
			if c.nulData > 0 {
				c.write(t, f, off+3<<20-c.nulData, make([]byte, c.nulData))
			}
			c.write(t, f, off+3<<20, []byte("c-0000\nc-0001\n"))
			if c.sync {
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			cacheFile(t, f)
			written := c.nulData
			if written > 0 {
				// The NUL bytes from the start of their page; and the read of the lines after them
				// is a whole chunk of findData's (the kernel read ahead of the reads of the NUL
				// bytes into the space, where SEEK_HOLE ended it before), so the rest of the page
				// that the lines before the space end in, read on every recheck, no longer fits in
				// recheckBound.
				written += 2 * int64(os.Getpagesize())
			}
			recheck("after lines were written into the space out of order", written)
			step()
			stopStepped(tl, rs)
			// The NUL bytes before c-0000 are skipped, not read as the start of the line.
			if diff := cmp.Diff(append(want, "c-0000", "c-0001"), lines(readShipped(t, e.out))); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
		})
	}
}

// cachedBytes returns how many of f's n bytes from off, a multiple of the page size, are in the
// page cache (mincore(2) of a mapping of them, which does not fault them in).
func cachedBytes(t *testing.T, f *os.File, off, n int64) int64 {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	defer unix.Munmap(m)
	page := int64(os.Getpagesize())
	v := make([]byte, (n+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&v[0]))); e != 0 {
		t.Skipf("mincore: %v", e)
	}
	var cached int64
	for _, b := range v {
		cached += int64(b & 1)
	}
	return min(n, cached*page)
}

// TestCheckOfNULBytesKeepsTheCacheOfLinesAfterThem: the check whether NUL bytes after a full read
// have other bytes after them (a writer that restarted after space it reserved and never wrote)
// drops the page cache of next to none of the lines after them, which the Tailer reads next. It
// dropped that of all of the file after the read, 16 MiB of lines here, and the Tailer then read
// them from the disk again (and on ext4 the drop started writing back the lines not yet written).
func TestCheckOfNULBytesKeepsTheCacheOfLinesAfterThem(t *testing.T) {
	const gap, backlog = 1 << 20, 16 << 20
	var text []byte
	for i := 0; len(text) < backlog; i++ {
		text = fmt.Appendf(text, "b-%06d %s\n", i, strings.Repeat("x", 91))
	}
	text = text[:backlog]
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("NUL bytes cached %v", cached), func(t *testing.T) {
			f, from, start := lineThenReserved(t, t.TempDir(), gap)
			pwrite(t, f, start+gap, text)
			if err := f.Sync(); err != nil { // clean pages, which a drop drops
				t.Fatal(err)
			}
			if cached {
				cacheFile(t, f) // another reader read the reserved space
			}
			if n := cachedBytes(t, f, start+gap, backlog); n < backlog {
				t.Skipf("%d of the %d bytes of lines just written are in the page cache", n, backlog)
			}
			at, err := findData(&tailRun{}, &tfile{f: f}, from, start+gap+backlog)
			if err != nil || at != start+gap {
				t.Fatalf("findData = %d, %v, want %d (the first line after the NUL bytes)", at, err, start+gap)
			}
			// The kernel drops whole folios: the window holding the first line after the NUL bytes
			// ends on the first multiple of folioMax past its start.
			if n := backlog - cachedBytes(t, f, start+gap, backlog); n > folioMax {
				t.Errorf("%d bytes of the lines after the NUL bytes are no longer in the page cache, want at most %d", n, folioMax)
			}
		})
	}
}

// reportsHoles reports whether the file system of dir reports space just fallocated in a file as a
// hole (SEEK_HOLE): ext4, XFS and tmpfs do; fuse-overlayfs (rootless Podman's root) and NFS before
// 4.2 report all of a file as data. It skips t where fallocate(2) is not supported.
func reportsHoles(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "holes")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	pwrite(t, f, 0, []byte("a-0000\n"))
	page := int64(os.Getpagesize())
	fallocate(t, f, page, 1<<20)
	h, err := seekHole(f, page)
	return err == nil && h == page
}

// TestRecheckDropsTheCacheOfNULDataOnce: the recheck of NUL bytes after a file's lines that stay
// data after their pages were dropped, NUL bytes the writer wrote or, on a file system that reports
// no holes (fuse-overlayfs, rootless Podman's root; NFS before 4.2), reserved space, drops their
// pages once, not on every recheck. A drop there made no hole for SEEK_DATA to skip, it only had
// each recheck read all of them through the file system again: 32 MiB took 14 ms instead of 3.7 ms
// on fuse-overlayfs. Lines written into them later are still found.
func TestRecheckDropsTheCacheOfNULDataOnce(t *testing.T) {
	const reserved = 8 << 20
	for _, c := range []struct {
		name    string
		reserve reserveFunc
		noHoles bool // needs a file system that reports fallocated space as data
	}{
		{"NUL bytes written", func(t *testing.T, f *os.File, off, n int64) {
			pwrite(t, f, off, make([]byte, n))
			if err := f.Sync(); err != nil { // clean pages: a drop drops them
				t.Fatal(err)
			}
		}, false},
		{"fallocate on a file system without holes", fallocate, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.noHoles && reportsHoles(t, t.TempDir()) {
				t.Skip("the file system of the temporary directory reports fallocated space as a hole (set TMPDIR to a fuse-overlayfs mount to run this)")
			}
			e, f, a, start := newLinesEnv(t)
			tl, rs, step := e.steppedAround(t, true, func() { c.reserve(t, f, start, reserved) })
			dropped := rs.dropped
			if dropped == 0 {
				t.Fatal("the check of the NUL bytes after the lines dropped no pages: the test does not test what it is for")
			}
			for i := range 3 {
				for _, tf := range rs.files {
					tf.zerosAt = tf.zerosAt.Add(-zeroRecheck)
				}
				zeroReads := rs.zeroReads
				step()
				if rs.zeroReads == zeroReads {
					t.Fatalf("recheck %d read none of the NUL bytes: the test does not test what it is for", i)
				}
				if n := rs.dropped - dropped; n != 0 {
					t.Errorf("recheck %d dropped the pages of %d bytes again, want 0", i, n)
				}
				dropped = rs.dropped
			}
			pwrite(t, f, start+reserved/2, []byte("c-0000\n"))
			for _, tf := range rs.files {
				tf.zerosAt = tf.zerosAt.Add(-zeroRecheck)
			}
			step()
			step()
			stopStepped(tl, rs)
			if diff := cmp.Diff(append(a, "c-0000"), lines(readShipped(t, e.out))); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
		})
	}
}
