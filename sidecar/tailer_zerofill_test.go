package sidecar

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/internal/await"
)

// TestZeroFilledEndIsNotReadYet: a log pre-extended with zeros (fallocate, ftruncate up: space
// reserved ahead of a writer that then writes its lines into it) must not look replaced when the
// writer fills the zeros. The Tailer fingerprinted the zeros among the file's first KiB and took
// their filling for new content: it read the file again from its start and shipped every line
// before the zeros a second time.
func TestZeroFilledEndIsNotReadYet(t *testing.T) {
	for _, c := range []struct {
		name string
		// extendFirst: the zeros are there before the Tailer first looks at the file.
		extendFirst bool
		// appendAfter: the next lines are appended after the zeros instead of written into them.
		appendAfter bool
		want        []string
	}{
		{name: "extended after the first read", want: append(numbered("a", 0, 10), "b-0000", "b-0001")},
		{name: "extended before the first read", extendFirst: true, want: append(numbered("a", 0, 10), "b-0000", "b-0001")},
		// A hole followed by lines (ftruncate up, then appends): the zeros start the first line after
		// them, and are skipped (they were read with it, and it was skipped as binary).
		{name: "lines appended after the zeros", appendAfter: true, want: append(numbered("a", 0, 10), "b-0000", "b-0001")},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newTailEnv(t)
			app := filepath.Join(e.logs, "app.log")
			appendFile(t, app, numbered("a", 0, 10)...)
			fi, err := os.Stat(app)
			if err != nil {
				t.Fatal(err)
			}
			size := fi.Size()
			extend := func() {
				if err := os.Truncate(app, size+4096); err != nil {
					t.Fatal(err)
				}
			}
			tl, rs, step := e.steppedAround(t, c.extendFirst, extend) // after: the step reads the zeros
			if c.appendAfter {
				appendFile(t, app, "b-0000", "b-0001")
			} else {
				f, err := os.OpenFile(app, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt([]byte("b-0000\nb-0001\n"), size); err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			step()
			stopStepped(tl, rs)
			if diff := cmp.Diff(c.want, lines(readShipped(t, e.out))); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHoleAtTheStartIsFingerprinted: NUL bytes followed by lines (a hole: a writer without O_APPEND
// went on at its offset after copytruncate) are content the Tailer has read (and skipped), not space
// reserved ahead of the writer, and the fingerprint covers them. It stopped before every NUL at the
// end of the fingerprinted bytes: a file whose first KiB is a hole had none, so copytruncate's copy
// of it was read again from its start (duplicates), and the file rewritten while the Tailer was
// stopped was resumed at the old offset (the new lines before it lost).
func TestHoleAtTheStartIsFingerprinted(t *testing.T) {
	const hole = 2000
	// writeHole makes app.log a hole of 2000 bytes and lines a-0000..a-0009 written after it; the
	// hole is skipped (see skipNULs) and the lines are read.
	writeHole := func(t *testing.T, app string) {
		t.Helper()
		f, err := os.OpenFile(app, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte(strings.Join(numbered("a", 0, 10), "\n")+"\n"), hole); err != nil {
			t.Fatal(err)
		}
	}
	read := numbered("a", 0, 10)

	t.Run("copytruncate", func(t *testing.T) {
		e := newTailEnv(t)
		app := filepath.Join(e.logs, "app.log")
		writeHole(t, app)
		tl := e.tailer(t)
		rs, step := steppedTailer(t, tl)
		step()
		data, err := os.ReadFile(app)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(app+".1", data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(app, 0); err != nil {
			t.Fatal(err)
		}
		appendFile(t, app, "b-0000")
		step()
		stopStepped(tl, rs)
		if diff := cmp.Diff(append(read, "b-0000"), lines(readShipped(t, e.out))); diff != "" {
			t.Errorf("shipped (-want +got):\n%s", diff)
		}
	})

	t.Run("rewritten while stopped", func(t *testing.T) {
		e := newTailEnv(t)
		app := filepath.Join(e.logs, "app.log")
		writeHole(t, app)
		stop := runTailer(t, e.tailer(t))
		e.waitLines(t, len(read))
		stop()
		// Rewritten in place (same inode), longer than the offset delivered.
		c := numbered("c", 0, 400)
		if err := os.Truncate(app, 0); err != nil {
			t.Fatal(err)
		}
		appendFile(t, app, c...)
		stop = runTailer(t, e.tailer(t))
		var got []string
		await.True(t, "c-0399 shipped", 30*time.Second, func() bool {
			got = lines(readShipped(t, e.out))
			return len(got) > 0 && got[len(got)-1] == "c-0399"
		})
		stop()
		if diff := cmp.Diff(append(read, c...), got); diff != "" {
			t.Errorf("shipped (-want +got):\n%s", diff)
		}
	})
}

// TestDeletedFileEndingInZerosShippedWhenStopped: when Run ends, a deleted file whose only unread
// bytes are NUL bytes at its end (space reserved ahead of the writer, see unwritten) is at its end,
// and its last line is shipped even without a newline, as after the grace period. The final read
// compared its offset with the file's size, took the NUL bytes for lines it could not read, warned
// that they were lost and kept the last line back; it still did so for more NUL bytes than one read
// (256 KiB) holds.
func TestDeletedFileEndingInZerosShippedWhenStopped(t *testing.T) {
	for _, zeros := range []int64{4096, 4 << 20} {
		t.Run(fmt.Sprint(zeros), func(t *testing.T) {
			e := newTailEnv(t)
			_, _, w, stop, want := e.deletedWithUnreadLines(t)
			fi, err := w.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Truncate(fi.Size() + zeros); err != nil {
				t.Fatal(err)
			}
			stop()
			if diff := cmp.Diff(want, lines(readShipped(t, e.out))); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
		})
	}
}
