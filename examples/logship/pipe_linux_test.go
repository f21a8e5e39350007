package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/syncbuf"
)

// fcntl runs fcntl(fd, cmd, arg) on f's descriptor without Fd, which would make it blocking.
func fcntl(t *testing.T, f *os.File, cmd, arg uintptr) uintptr {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var r uintptr
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) { r, _, errno = syscall.Syscall(syscall.SYS_FCNTL, fd, cmd, arg) }); err != nil {
		t.Fatal(err)
	}
	if errno != 0 {
		t.Fatal(errno)
	}
	return r
}

func TestGrowPipe(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/fs/pipe-max-size"); err != nil || (os.Geteuid() != 0 && strings.TrimSpace(string(b)) != "1048576") {
		t.Skipf("pipe-max-size %q (%v): a 1 MiB pipe needs the default limit or root", b, err)
	}
	r, w, err := os.Pipe() // non-blocking descriptors, like a stdout some parents hand over
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if fcntl(t, w, syscall.F_GETFL, 0)&syscall.O_NONBLOCK == 0 {
		t.Fatal("os.Pipe gave a blocking descriptor")
	}
	growPipe(w)
	const fGetPipeSz = 1032 // F_GETPIPE_SZ
	if n := fcntl(t, w, fGetPipeSz, 0); n != 1<<20 {
		t.Errorf("pipe capacity %d, want %d", n, 1<<20)
	}
	// The open file description is shared with whoever else writes to the pipe: its mode stays.
	if fcntl(t, w, syscall.F_GETFL, 0)&syscall.O_NONBLOCK == 0 {
		t.Error("growPipe made the descriptor blocking")
	}
	// Not a pipe: left alone.
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	growPipe(f)
}

// TestSIGTERMWithStalledStdoutReader: when the reader of logship's stdout pipe stops reading (a hung
// log collector), SIGTERM still stops logship within the final read's budget (5 s), with exit code
// 0, instead of leaving it to Kubernetes' SIGKILL. Its checkpoint is not past the lines the pipe
// took, and a restart with a reader ships every line after it: none lost, none twice in one run.
func TestSIGTERMWithStalledStdoutReader(t *testing.T) {
	for _, format := range []string{"raw", "json"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			app := filepath.Join(dir, "app.log")
			lines, offsets := longLines()
			const early = 2000
			appendLines(t, app, lines[:early]...)
			state := filepath.Join(dir, "state.json")
			args := []string{"-glob", app, "-state", state, "-format", format}

			// First run: the reader takes the early lines, logship commits them, the rest of the
			// lines are appended, and the reader takes another 256 KiB, then stops reading.
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cmd := start(t, w, args...)
			w.Close()
			got := readLines(t, r, early)
			await.True(t, "a commit of the early lines", 20*time.Second, func() bool {
				data, err := os.ReadFile(state)
				return err == nil && bytes.Contains(data, fmt.Appendf(nil, `"offset":%d`, offsets[early]))
			})
			appendLines(t, app, lines[early:]...)
			more := make([]byte, 256<<10)
			if _, err := io.ReadFull(r, more); err != nil {
				t.Fatal(err)
			}
			got = append(got, more...)
			stalled(t, r)
			exited := make(chan error, 1)
			termAt := time.Now()
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			go func() { exited <- cmd.Wait() }()
			const bound = 6 * time.Second // the final read's 5 s and a second
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("logship exit: %v", err)
				}
				t.Logf("logship exited %v after SIGTERM", time.Since(termAt).Round(time.Millisecond))
			case <-time.After(bound):
				_, _ = io.Copy(io.Discard, r) // until logship exits and closes the pipe
				<-exited
				t.Fatalf("logship did not exit within %v of SIGTERM while nobody read its stdout", bound)
			}
			rest, err := io.ReadAll(r) // what the pipe holds; logship closed its end
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, rest...)
			shipped := shippedLines(t, format, got)
			if diff := cmp.Diff(lines[:len(shipped)], shipped); diff != "" {
				t.Fatalf("first run: not the file's first lines, each once (-want +got):\n%s", diff)
			}
			off := checkpointOffset(t, state)
			if off > offsets[len(shipped)] {
				t.Fatalf("checkpoint at offset %d, past the %d lines (up to offset %d) the pipe took", off, len(shipped), offsets[len(shipped)])
			}
			from := slices.Index(offsets, off)
			if from < 0 {
				t.Fatalf("checkpoint at offset %d, inside a line", off)
			}
			t.Logf("first run: the pipe took %d of %d lines, checkpoint after line %d", len(shipped), len(lines), from)

			// Second run with a reader: every line after the checkpoint, once.
			var out syncbuf.Buffer
			cmd = start(t, &out, args...)
			await.True(t, "the last line", 20*time.Second, func() bool {
				return bytes.Count(out.Bytes(), []byte("\n")) >= len(lines)-from
			})
			term(t, cmd)
			if diff := cmp.Diff(lines[from:], shippedLines(t, format, out.Bytes())); diff != "" {
				t.Errorf("second run from the checkpoint (offset %d, line %d) (-want +got):\n%s", off, from, diff)
			}
		})
	}
}

// longLines returns 40,000 lines of 100 bytes (4 MB: 4 times the 1 MiB pipe logship asks for) and
// the offset of each in a file holding them (offsets[len(lines)] is its size).
func longLines() (lines []string, offsets []int64) {
	offsets = []int64{0}
	for i := range 40000 {
		l := fmt.Sprintf("n=%06d %s", i, strings.Repeat("x", 90))
		lines = append(lines, l)
		offsets = append(offsets, offsets[i]+int64(len(l))+1)
	}
	return lines, offsets
}

// readLines reads from r until what it read holds n newlines.
func readLines(t *testing.T, r io.Reader, n int) []byte {
	t.Helper()
	var got []byte
	for buf := make([]byte, 64<<10); bytes.Count(got, []byte("\n")) < n; {
		k, err := r.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:k]...)
	}
	return got
}

// stalled waits until the pipe r holds 64 KiB or more and has not changed for 300 ms: its writer
// waits for room.
func stalled(t *testing.T, r *os.File) {
	t.Helper()
	last, since := -1, time.Now()
	await.True(t, "the pipe to stay full", 20*time.Second, func() bool {
		if h := pipeHolds(t, r); h != last {
			last, since = h, time.Now()
		}
		return last >= 64<<10 && time.Since(since) >= 300*time.Millisecond
	})
}

// pipeHolds is how many bytes the pipe r holds (FIONREAD).
func pipeHolds(t *testing.T, r *os.File) int {
	t.Helper()
	var n int32
	rc, err := r.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil || errno != 0 {
		t.Fatalf("FIONREAD: %v %v", err, errno)
	}
	return int(n)
}

// shippedLines returns the lines of the whole output lines in out (in format raw or json).
func shippedLines(t *testing.T, format string, out []byte) []string {
	t.Helper()
	out = out[:bytes.LastIndexByte(out, '\n')+1]
	lines := []string{}
	if format == "raw" {
		if len(out) == 0 {
			return lines
		}
		return strings.Split(string(out[:len(out)-1]), "\n")
	}
	for _, r := range decode(t, out) {
		lines = append(lines, r.Line)
	}
	return lines
}

// checkpointOffset returns the offset of the one file in logship's checkpoint at path.
func checkpointOffset(t *testing.T, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Files []struct {
			Offset int64 `json:"offset"`
		} `json:"files"`
	}
	if err := json.Unmarshal(data, &st); err != nil || len(st.Files) != 1 {
		t.Fatalf("checkpoint %s: %v", data, err)
	}
	return st.Files[0].Offset
}
