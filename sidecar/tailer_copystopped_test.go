package sidecar

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/internal/await"
)

// copyTruncate does what logrotate's copytruncate does: copies path to copy, then truncates path.
func copyTruncate(t *testing.T, path, copy string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copy, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
}

// A copytruncate done while the Tailer is stopped: on restart app.log fails its checkpoint entry's
// fingerprint (it is empty, or holds new lines), and app.log.1 is the copy of what the entry covers.
// The copy must be read from the entry's offset. The failed restore used to drop the entry before
// the copy was looked up, and app.log.1 was read from its start: every line shipped again.
func TestTailerCopyTruncateWhileStopped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after []string // appended to app.log after the truncation, while stopped
	}{
		{"new lines", numbered("b", 0, 100)},
		{"left empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTailEnv(t)
			app := filepath.Join(e.logs, "app.log")
			first := numbered("a", 0, 700)
			appendFile(t, app, first...)
			stop := runTailer(t, e.tailer(t))
			e.waitLines(t, len(first))
			stop()
			e.sink.Close()

			copyTruncate(t, app, app+".1")
			if tc.after != nil {
				appendFile(t, app, tc.after...)
			}
			want := append(append([]string(nil), first...), tc.after...)
			tl := e.tailer(t)
			stop = runTailer(t, tl)
			// Both files delivered to their ends (the copy as it was found: from its start, or from
			// the entry's offset, which is its end).
			for _, p := range []string{app, app + ".1"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				await.True(t, p+" delivered to its end", 30*time.Second, func() bool {
					return delivered(tl, p) == strconv.FormatInt(fi.Size(), 10)
				})
			}
			stop()
			if diff := cmp.Diff(want, lines(readShipped(t, e.out))); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
		})
	}
}
