package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/internal/await"
)

// rotatingWriter appends total numbered lines to dir/app.log and rotates it by rename every 10 to 60
// lines to app.log-NNNNN (logrotate's dateext style), deleting the rotated file deleteLag rotations
// old (0: never). After each rename it writes up to two more lines to the old descriptor, as an
// application does until it reopens its log.
func rotatingWriter(dir string, total, deleteLag int, rng *rand.Rand, stop <-chan struct{}) (rotations int, err error) {
	app := filepath.Join(dir, "app.log")
	open := func() (*os.File, error) { return os.OpenFile(app, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644) }
	f, err := open()
	if err != nil {
		return 0, err
	}
	defer func() { f.Close() }()
	next := 10 + rng.IntN(50)
	for i := 0; i < total; i++ {
		if _, err := fmt.Fprintf(f, "n=%06d %s\n", i, strings.Repeat("x", rng.IntN(40))); err != nil {
			return rotations, err
		}
		if i%6 == 5 {
			select {
			case <-stop:
				return rotations, fmt.Errorf("stopped at line %d", i)
			case <-time.After(5 * time.Millisecond):
			}
		}
		if next--; next > 0 || i == total-1 {
			continue
		}
		next = 10 + rng.IntN(50)
		rotations++
		if err := os.Rename(app, fmt.Sprintf("%s-%05d", app, rotations)); err != nil {
			return rotations, err
		}
		if deleteLag > 0 && rotations > deleteLag {
			if err := os.Remove(fmt.Sprintf("%s-%05d", app, rotations-deleteLag)); err != nil {
				return rotations, err
			}
		}
		for extra := rng.IntN(3); extra > 0 && i < total-1; extra-- {
			i++
			if _, err := fmt.Fprintf(f, "n=%06d late\n", i); err != nil {
				return rotations, err
			}
		}
		f.Close()
		if f, err = open(); err != nil {
			return rotations, err
		}
	}
	return rotations, nil
}

// completeLines counts the newline-terminated lines of a file.
func completeLines(path string) int {
	data, _ := os.ReadFile(path)
	return bytes.Count(data, []byte{'\n'})
}

// checkExactlyOnce decodes the sink file and reports numbers shipped twice or never.
func checkExactlyOnce(t *testing.T, out string, total int) (missing []int) {
	t.Helper()
	counts := make([]int, total)
	for _, s := range readShipped(t, out) {
		num, ok := strings.CutPrefix(s.Line, "n=")
		if !ok || len(num) < 6 {
			t.Fatalf("unexpected line %q", s.Line)
		}
		n, err := strconv.Atoi(num[:6])
		if err != nil || n < 0 || n >= total {
			t.Fatalf("unexpected line %q", s.Line)
		}
		counts[n]++
	}
	var dups []int
	for n, c := range counts {
		switch {
		case c == 0:
			missing = append(missing, n)
		case c > 1:
			dups = append(dups, n)
		}
	}
	if len(dups) > 0 {
		t.Errorf("%d lines shipped more than once, first: %v", len(dups), dups[:min(10, len(dups))])
	}
	return missing
}

func TestRotationTortureSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("torture test: skipped with -short")
	}
	e := newTailEnv(t)
	// Rotated files are kept: one deleted before any tailer read it would be lost by any tailer, and
	// on a loaded machine the tailers may fall far behind. Deletion of open files is tested apart.
	const total, deleteLag = 8000, 0
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SIDECAR_TAILER_CHILD=1", "TAIL_GLOB="+filepath.Join(e.logs, "*.log"),
			"TAIL_OUT="+e.out, "TAIL_STATE="+e.state, "TAIL_LOG="+os.Getenv("TAIL_LOG"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	child := start()
	await.True(t, "first checkpoint", 30*time.Second, func() bool {
		_, err := os.Stat(e.state)
		return err == nil
	})

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	seed := rng.Uint64()
	t.Logf("writer seed %d", seed)
	type result struct {
		rotations int
		err       error
	}
	done := make(chan result, 1)
	stopWriter := make(chan struct{})
	go func() {
		r, err := rotatingWriter(e.logs, total, deleteLag, rand.New(rand.NewPCG(seed, 1)), stopWriter)
		done <- result{r, err}
	}()
	kills := 0
	started := time.Now()
	var res result
	deadline := time.After(90 * time.Second)
loop:
	for {
		select {
		case res = <-done:
			break loop
		case <-deadline:
			close(stopWriter)
			res = <-done
			break loop
		case <-time.After(time.Duration(30+rng.IntN(370)) * time.Millisecond):
		}
		// Kill at a random moment, but only once this tailer has committed since it started, so that
		// the tailers make progress and no rotated file is deleted before any of them read it.
		for fi, err := os.Stat(e.state); err == nil && fi.ModTime().Before(started); fi, err = os.Stat(e.state) {
			time.Sleep(5 * time.Millisecond)
		}
		if err := child.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = child.Wait()
		kills++
		started = time.Now()
		child = start()
	}
	if res.err != nil {
		_ = child.Process.Kill()
		_ = child.Wait()
		t.Fatalf("writer: %v", res.err)
	}
	var got int
	deadlineAll := time.Now().Add(60 * time.Second)
	for got = completeLines(e.out); got < total && time.Now().Before(deadlineAll); got = completeLines(e.out) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // a duplicate, if any, would show up now
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := child.Wait(); err != nil {
		t.Errorf("last tailer: %v", err)
	}
	t.Logf("%d lines, %d rotations by rename, %d SIGKILLs of the tailer, %d lines in the sink", total, res.rotations, kills, completeLines(e.out))
	if res.rotations < 100 || kills < 10 {
		t.Errorf("torture too mild: %d rotations, %d kills", res.rotations, kills)
	}
	if keep := os.Getenv("TAIL_KEEP"); keep != "" {
		data, _ := os.ReadFile(e.out)
		_ = os.WriteFile(keep, data, 0o644)
	}
	if missing := checkExactlyOnce(t, e.out, total); len(missing) > 0 {
		t.Errorf("%d lines never shipped, first: %v", len(missing), missing[:min(10, len(missing))])
	}
	var st checkpointState
	if data, err := os.ReadFile(e.state); err != nil || json.Unmarshal(data, &st) != nil {
		t.Errorf("final checkpoint unreadable: %v", err)
	}
}

// TestCopyTruncateCountsOnlyTheInherentWindow rotates with copytruncate while a writer appends: the
// lines written between the end of the copy and the truncation exist in no file and are lost by any
// tailer (counted, logged); every line that exists in some file is shipped exactly once.
func TestCopyTruncateCountsOnlyTheInherentWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("torture test: skipped with -short")
	}
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app)
	stop := runTailer(t, e.tailer(t))

	const total = 6000
	written := make(chan error, 1)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		f, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			written <- err
			return
		}
		defer f.Close()
		for i := range total {
			if _, err := fmt.Fprintf(f, "n=%06d %s\n", i, strings.Repeat("y", i%37)); err != nil {
				written <- err
				return
			}
			if i%10 == 9 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		written <- nil
	}()
	rotations := 0
	for done := false; !done; {
		select {
		case <-writerDone:
			done = true
		case <-time.After(time.Duration(50+rotations%5*20) * time.Millisecond):
		}
		data, err := os.ReadFile(app)
		if err != nil {
			t.Fatal(err)
		}
		rotations++
		if err := os.WriteFile(fmt.Sprintf("%s.%d", app, rotations), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(app, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	// Every line that exists in some file is what the tailer must ship.
	onDisk := map[int]bool{}
	ents, _ := os.ReadDir(e.logs)
	for _, de := range ents {
		data, _ := os.ReadFile(filepath.Join(e.logs, de.Name()))
		for _, l := range strings.Split(string(data), "\n") {
			var n int
			if _, err := fmt.Sscanf(l, "n=%06d", &n); err == nil {
				onDisk[n] = true
			}
		}
	}
	// Wait until every line on disk is shipped. (Not for as many lines as are on disk: lines read from
	// app.log before a truncation that are in no copy count too, so a count is reached early.)
	allShipped := func() bool {
		have := map[int]bool{}
		for _, s := range readShipped(t, e.out) {
			var n int
			if _, err := fmt.Sscanf(s.Line, "n=%06d", &n); err == nil {
				have[n] = true
			}
		}
		for n := range onDisk {
			if !have[n] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !allShipped() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a duplicate, if any, would show up now
	stop()
	missing := checkExactlyOnce(t, e.out, total)
	window, missed := 0, 0
	for _, n := range missing {
		if onDisk[n] {
			missed++
		} else {
			window++
		}
	}
	t.Logf("copytruncate: %d lines, %d rotations; %d lines lost in the copy-to-truncate window (in no file), %d lines on disk but not shipped",
		total, rotations, window, missed)
	if missed > 0 {
		t.Errorf("%d lines that exist on disk were never shipped", missed)
	}
	if rotations < 20 {
		t.Errorf("only %d rotations", rotations)
	}
}

// steppedTailer drives tl by hand: it scans once as on a first start and returns the run and a step
// that scans and reads three times.
func steppedTailer(t *testing.T, tl *Tailer) (*tailRun, func()) {
	rs := tl.newRun()
	step := func() {
		t.Helper()
		tl.scan(rs, false)
		for range 3 {
			if _, err := tl.readAll(context.Background(), rs); err != nil {
				t.Fatal(err)
			}
		}
	}
	tl.scan(rs, true)
	return rs, step
}

// stopStepped commits the checkpoint of a run driven by steppedTailer and closes its files.
func stopStepped(tl *Tailer, rs *tailRun) {
	rs.dirty = true
	tl.commit(rs)
	for _, tf := range rs.files {
		tf.close()
	}
}

// copyTruncateRun is a Tailer driven by steppedTailer that has delivered the lines old of app.log,
// whose content, data, copytruncate is about to copy.
type copyTruncateRun struct {
	*tailEnv
	app  string
	old  []string
	data []byte
	tl   *Tailer
	rs   *tailRun
	step func()
}

// startCopyTruncate writes n lines "old-NNNN" to app.log and steps a Tailer until it delivered them.
func startCopyTruncate(t *testing.T, n int) *copyTruncateRun {
	t.Helper()
	e := newTailEnv(t)
	c := &copyTruncateRun{tailEnv: e, app: filepath.Join(e.logs, "app.log"), old: numbered("old", 0, n)}
	appendFile(t, c.app, c.old...)
	c.tl = e.tailer(t)
	c.rs, c.step = steppedTailer(t, c.tl)
	c.step()
	var err error
	if c.data, err = os.ReadFile(c.app); err != nil {
		t.Fatal(err)
	}
	return c
}

// A scan checks the tracked app.log before it opens the files that are new: when copytruncate's
// truncation falls between the two, the copy is new while app.log does not look truncated yet. The
// copy must still be read from where app.log had been delivered, not from its start (which shipped
// the whole copy a second time: 128 duplicates in a TestCopyTruncateCountsOnlyTheInherentWindow run).
// The scan is driven step by step here to put the truncation exactly there.
func TestCopyFoundBeforeTheTruncationIsNoticed(t *testing.T) {
	for _, regrown := range []int{0, 1, 10} { // lines app.log has again when the copy is looked at
		t.Run(fmt.Sprintf("regrown %d lines", regrown), func(t *testing.T) {
			c := startCopyTruncate(t, 200) // over 1 KiB: the copy is not deferred as maybe incomplete
			app, tl, rs := c.app, c.tl, c.rs
			if err := os.WriteFile(app+".1", c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			// A scan has checked app.log (unchanged) and listed app.log.1; then the truncation comes,
			// and then the scan opens app.log.1 as a new file.
			if err := os.Truncate(app, 0); err != nil {
				t.Fatal(err)
			}
			fresh := numbered("new", 0, regrown)
			appendFile(t, app, fresh...)
			cand, ok := tl.openCandidate(rs, app+".1", false)
			if !ok {
				t.Fatal("app.log.1 not opened")
			}
			tl.discover(rs, &cand, false, time.Now())
			if rs.files[cand.id] == nil {
				t.Fatal("app.log.1 not taken up")
			}
			tl.reorder(rs)
			for range 3 {
				if _, err := tl.readAll(context.Background(), rs); err != nil {
					t.Fatal(err)
				}
			}
			stopStepped(tl, rs)
			if diff := cmp.Diff(append(c.old, fresh...), lines(readShipped(t, c.out))); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
		})
	}
}

// A listing can see copytruncate's copy while it is still being written: part of the write, ending
// inside a line, shorter than what was delivered from the original. The copy must not be started at
// that end (which shipped the rest of the cut line as a line, "yyyyyyyyyyy" in a
// TestCopyTruncateCountsOnlyTheInherentWindow run, and again the lines after it).
func TestCopySeenWhileBeingWritten(t *testing.T) {
	c := startCopyTruncate(t, 300) // 2700 bytes
	app, data, tl, rs, step := c.app, c.data, c.tl, c.rs, c.step
	const cut = 2004 // inside line 222, over 1 KiB
	if err := os.WriteFile(app+".1", data[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(app, 0); err != nil {
		t.Fatal(err)
	}
	step() // sees the truncation and the copy's first part
	f, err := os.OpenFile(app+".1", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data[cut:]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	settled := time.Now().Add(-2 * time.Second)
	if err := os.Chtimes(app+".1", settled, settled); err != nil {
		t.Fatal(err)
	}
	step()
	step()
	stopStepped(tl, rs)
	if diff := cmp.Diff(c.old, lines(readShipped(t, c.out))); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
	if tf := rs.byPath[app+".1"]; tf == nil || tf.done != int64(len(data)) {
		t.Errorf("copy not tracked at its end (%d): %+v", len(data), tf)
	}
}

// A restart inside a copytruncate: the copy was found while app.log was not truncated yet, lines
// appended to app.log after the copy were delivered from app.log, and then app.log was truncated. The
// copy holds none of those lines: its delivered offset must not lie past its end, or a restart takes
// the copy for a file truncated while stopped and ships all of it again.
func TestRestartAfterCopyTruncateDoesNotReadTheCopyAgain(t *testing.T) {
	c := startCopyTruncate(t, 200) // over 1 KiB: the copy is not deferred as maybe incomplete
	e, app, old, tl, rs, step := c.tailEnv, c.app, c.old, c.tl, c.rs, c.step
	if err := os.WriteFile(app+".1", c.data, 0o644); err != nil {
		t.Fatal(err)
	}
	step() // finds the copy; app.log is not truncated yet
	if tf := rs.byPath[app+".1"]; tf == nil || tf.copyOf == nil {
		t.Fatalf("copy not waiting for the truncation: %+v", tf)
	}
	mid := numbered("mid", 0, 50) // after the copy, before the truncation: only in app.log
	appendFile(t, app, mid...)
	step()
	if err := os.Truncate(app, 0); err != nil {
		t.Fatal(err)
	}
	step()
	stopStepped(tl, rs)
	if diff := cmp.Diff(append(slices.Clone(old), mid...), lines(readShipped(t, e.out))); diff != "" {
		t.Fatalf("shipped before the restart (-want +got):\n%s", diff)
	}

	stop := runTailer(t, e.tailer(t))
	fresh := numbered("new", 0, 5)
	appendFile(t, app, fresh...)
	await.True(t, "the new lines shipped", 30*time.Second, func() bool {
		return slices.Contains(lines(readShipped(t, e.out)), fresh[len(fresh)-1])
	})
	stop()
	want := append(append(slices.Clone(old), mid...), fresh...)
	if diff := cmp.Diff(want, lines(readShipped(t, e.out))); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

func TestTailerReadsDeletedOpenFileToItsEnd(t *testing.T) {
	e := newTailEnv(t)
	app := filepath.Join(e.logs, "app.log")
	appendFile(t, app, "d-0")
	stop := runTailer(t, e.tailer(t))
	e.waitLines(t, 1)
	old, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	mustRename(t, app, app+".1")
	if err := os.Remove(app + ".1"); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(old, "d-1") // written after the unlink: only the tailer's descriptor can see it
	appendFile(t, app, "e-0")
	got := e.waitLines(t, 3)
	stop()
	if diff := cmp.Diff([]string{"d-0", "d-1", "e-0"}, sortedCopy(lines(got))); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}
