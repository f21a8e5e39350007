package sidecar

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
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

// TestLinesWrittenIntoReservedSpaceLinux is TestLinesWrittenIntoReservedSpace with the space
// reserved by fallocate(2) and the lines written through a shared mapping.
func TestLinesWrittenIntoReservedSpaceLinux(t *testing.T) {
	for _, c := range []struct {
		name    string
		reserve reserveFunc
		write   writeAtFunc
	}{
		{"ftruncate, mmap", truncateUp, mmapWrite},
		{"fallocate, pwrite", fallocate, pwrite},
		{"fallocate, mmap", fallocate, mmapWrite},
	} {
		t.Run(c.name, func(t *testing.T) { testLinesWrittenIntoReservedSpace(t, c.reserve, c.write) })
	}
}

// BenchmarkPollReservedEnd measures one read of a file at its end, after its lines, when 32 MiB are
// reserved after them (ftruncate up, fallocate): what the Tailer does on each poll of such a file on Linux.
// "remembered" is the Tailer as it is (the bytes after one read were found NUL once); "checked" checks
// them again on every poll, what remembering them saves; "no-reserve" is a file without them.
func BenchmarkPollReservedEnd(b *testing.B) {
	const reserved = 32 << 20
	reserve := map[string]func(f *os.File, off int64) error{
		"no-reserve": func(*os.File, int64) error { return nil },
		"ftruncate":  func(f *os.File, off int64) error { return f.Truncate(off + reserved) },
		"fallocate":  func(f *os.File, off int64) error { return syscall.Fallocate(int(f.Fd()), 0, off, reserved) },
	}
	for _, kind := range []string{"no-reserve", "ftruncate", "fallocate"} {
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
