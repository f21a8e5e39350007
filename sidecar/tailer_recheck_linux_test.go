package sidecar

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFindDataWindowsDoNotOverflow: findData's drop windows double as NUL bytes are found; in a
// file of the largest size (tmpfs, XFS and btrfs allow one) with a page of NUL bytes written at the
// start of every window, the window's end overflowed int64 after about 46 windows, the window
// became 0 and findData read nothing more, for ever.
func TestFindDataWindowsDoNotOverflow(t *testing.T) {
	var f *os.File
	for _, dir := range []string{t.TempDir(), "/dev/shm"} {
		g, err := os.CreateTemp(dir, "app.log")
		if err != nil {
			continue
		}
		t.Cleanup(func() { g.Close(); os.Remove(g.Name()) })
		if g.Truncate(math.MaxInt64) == nil {
			f = g
			break
		}
	}
	if f == nil {
		t.Skip("no file system here takes a file of math.MaxInt64 bytes (tmpfs, XFS and btrfs do)")
	}
	size := int64(math.MaxInt64)
	pwrite(t, f, 0, []byte("a-0000\n"))
	// Written NUL pages where the windows start (as they did before the cap), so SEEK_DATA stops at
	// each of them.
	at, w := int64(7), int64(dropWindow)
	for at+w+folioMax-1 > 0 {
		at = (at + w + folioMax - 1) / folioMax * folioMax
		w *= 2
		pwrite(t, f, at, make([]byte, 4096))
	}
	pwrite(t, f, at+folioMax, make([]byte, 4096))

	done := make(chan int64, 1)
	go func() {
		got, _ := findData(&tailRun{}, &tfile{f: f}, 7, size)
		done <- got
	}()
	select {
	case got := <-done:
		if got != size {
			t.Fatalf("findData = %d, want %d (only NUL bytes after the line)", got, size)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("findData still running after 20s: its window arithmetic overflowed")
	}
}

// TestKeptBytesAreDroppedAgainAfterKeepFor: bytes that were data right after findData dropped their
// pages (another process had them mapped) are left alone for keepFor, then dropped again. Without
// an end to it, a writer that mapped its reserved space and died left every later check reading
// all of the space (32 MiB every 5 s) for as long as the file was tailed.
func TestKeptBytesAreDroppedAgainAfterKeepFor(t *testing.T) {
	const reserved = 32 << 20
	dir := t.TempDir()
	if !reportsHoles(t, dir) || !mappedSpaceDropsToHoles(t, dir) {
		t.Skip("fallocated space read through a mapping does not turn into a hole again once dropped here (tmpfs keeps such pages as data)")
	}
	f, from, start := lineThenReserved(t, dir, reserved)
	size := start + reserved

	// A mapping that has read all of the space holds its pages while the first check runs.
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	var sum byte
	for i := 0; i < len(m); i += os.Getpagesize() {
		sum += m[i]
	}
	if sum != 'a' {
		t.Fatalf("mapped bytes sum to %d", sum)
	}
	tf, rs := &tfile{f: f}, &tailRun{}
	if at, err := findData(rs, tf, from, size); err != nil || at != size {
		t.Fatalf("findData = %d, %v, want %d", at, err, size)
	}
	if tf.keepTo <= start {
		t.Skipf("mapped pages were dropped or not reported as data here (keep %d-%d): nothing to keep", tf.keepFrom, tf.keepTo)
	}
	if err := unix.Munmap(m); err != nil {
		t.Fatal(err)
	}

	// Within keepFor the kept bytes are read as they are, cached.
	before := rs.zeroReads
	if at, _ := findData(rs, tf, from, size); at != size {
		t.Fatalf("findData = %d, want %d", at, size)
	}
	if n := rs.zeroReads - before; n < reserved/2 {
		t.Fatalf("a check within keepFor read %d bytes: the kept bytes were dropped again", n)
	}

	// After keepFor they are dropped once more; unmapped, they are holes again and not read.
	tf.keepAt = tf.keepAt.Add(-keepFor)
	before = rs.zeroReads
	if at, _ := findData(rs, tf, from, size); at != size {
		t.Fatalf("findData = %d, want %d", at, size)
	}
	if n := rs.zeroReads - before; n > 64<<10 {
		t.Fatalf("a check after keepFor read %d bytes of reserved space, want at most 64 KiB", n)
	}
}

// mappedSpaceDropsToHoles reports whether, on dir's file system, fallocated space read through a
// mapping and unmapped is a hole again to SEEK_DATA once its pages are dropped (ext4, XFS), unlike
// tmpfs, where those pages are the file's data from then on.
func mappedSpaceDropsToHoles(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	page := int64(os.Getpagesize())
	fallocate(t, f, 0, 16*page)
	m, err := unix.Mmap(int(f.Fd()), 0, int(16*page), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	var sum byte
	for i := 0; i < len(m); i += int(page) {
		sum += m[i]
	}
	if err := unix.Munmap(m); err != nil {
		t.Fatal(err)
	}
	dropCached(f, 0, 16*page)
	_, err = seekData(f, 0)
	return sum == 0 && err != nil // ENXIO: no data before the end
}

// lineThenReserved creates dir/app.log holding one line, "a-0000\n", and n bytes fallocated from
// the page after it (start); from is where the line ends. The file is closed with the test.
func lineThenReserved(t *testing.T, dir string, n int64) (f *os.File, from, start int64) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "app.log"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	line := []byte("a-0000\n")
	pwrite(t, f, 0, line)
	start = int64(os.Getpagesize())
	fallocate(t, f, start, n)
	return f, int64(len(line)), start
}

// TestKeptBytesFromTheFileStart: bytes kept from offset 0 (a file that is all reserved space, the
// final check of a deleted one) got no keepAt, so the next check took them as kept long ago and
// dropped them again.
func TestKeptBytesFromTheFileStart(t *testing.T) {
	const reserved = 8 << 20
	dir := t.TempDir()
	if !reportsHoles(t, dir) || !mappedSpaceDropsToHoles(t, dir) {
		t.Skip("fallocated space read through a mapping does not turn into a hole again once dropped here (tmpfs keeps such pages as data)")
	}
	f, err := os.OpenFile(filepath.Join(dir, "app.log"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fallocate(t, f, 0, reserved)
	m, err := unix.Mmap(int(f.Fd()), 0, reserved, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	defer unix.Munmap(m)
	var sum byte
	for i := 0; i < len(m); i += os.Getpagesize() {
		sum += m[i]
	}
	tf, rs := &tfile{f: f}, &tailRun{}
	if at, err := findData(rs, tf, 0, reserved); err != nil || at != reserved || sum != 0 {
		t.Fatalf("findData = %d, %v, want %d", at, err, reserved)
	}
	if tf.keepTo == 0 {
		t.Skip("mapped pages were dropped or not reported as data here: nothing to keep")
	}
	dropped := rs.dropped
	findData(rs, tf, 0, reserved)
	if rs.dropped != dropped {
		t.Errorf("the second check asked to drop %d bytes kept %v ago from offset 0, want none", rs.dropped-dropped, time.Since(tf.keepAt))
	}
}
