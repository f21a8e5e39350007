package sidecar

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
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
		// A hole followed by lines (ftruncate up, then appends): as before, the zeros are read as the
		// start of the first line after them, which is skipped as binary.
		{name: "lines appended after the zeros", appendAfter: true, want: append(numbered("a", 0, 10), "b-0001")},
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
			if c.extendFirst {
				extend()
			}
			tl := e.tailer(t)
			rs, step := steppedTailer(t, tl)
			step()
			if !c.extendFirst {
				extend()
				step() // reads the zeros
			}
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
