//go:build linux

package sidecar

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podblocks/podblocks/internal/await"
)

// The tests in this file change a log's bytes after its lines were shipped into the pipe (counted
// delivered, maybe checkpointed) but before the pipe's reader took them. What the reader gets must
// be the lines as they were read. With WithSpliceFromFile it is not (the pipe holds the file's
// pages): these changes are why splicing is opt-in, for append-only logs only.

// rewriteLines returns n lines of 12 to 61 bytes starting with prefix, and the file content they make.
func rewriteLines(prefix string, n int) (lines []string, content string) {
	for i := range n {
		lines = append(lines, fmt.Sprintf("%s %06d %s", prefix, i, strings.Repeat("y", (i*7)%50)))
	}
	return lines, strings.Join(lines, "\n") + "\n"
}

// rewriteDirs returns directories on the file systems to test: the test's temporary directory and,
// when there is one, a directory in tmpfs (/dev/shm).
func rewriteDirs(t *testing.T) map[string]string {
	dirs := map[string]string{"tempdir": t.TempDir()}
	if d, err := os.MkdirTemp("/dev/shm", "sidecar-test"); err == nil {
		t.Cleanup(func() { os.RemoveAll(d) })
		dirs["tmpfs"] = d
	}
	return dirs
}

// shipThenChange has a Tailer with a default raw WriterSink ship dir/app.log holding lines into a
// 1 MiB pipe nobody reads yet, runs change on the file once every line is in the pipe, stops the
// Tailer and checks that the pipe's first bytes are the lines as they were (the Tailer may ship
// more after change, from the file's new state).
func shipThenChange(t *testing.T, dir string, lines []string, change func(app string)) {
	t.Helper()
	app := filepath.Join(dir, "app.log")
	appendFile(t, app, lines...)
	tl, sink, r, w := rawPipeTailer(t, dir, 1<<20)
	stop := runTailer(t, tl)
	await.True(t, "every line shipped", 20*time.Second, func() bool { return counterValue(tl.m.lines) == float64(len(lines)) })
	change(app)
	stop()
	got := slowReader(r, 64<<10, 1<<30)
	w.Close()
	checkShipped(t, strings.Join(lines, "\n")+"\n", <-got)
	if sink.pipe.spliced != 0 {
		t.Errorf("%d bytes spliced from the file without WithSpliceFromFile", sink.pipe.spliced)
	}
}

// checkShipped compares the first len(want) bytes of got with want.
func checkShipped(t *testing.T, want string, got []byte) {
	t.Helper()
	if len(got) < len(want) {
		t.Fatalf("the reader got %d bytes, want at least %d", len(got), len(want))
	}
	bad, first := 0, -1
	for i := range len(want) {
		if got[i] != want[i] {
			bad++
			if first < 0 {
				first = i
			}
		}
	}
	if bad > 0 {
		lo := max(first-20, 0)
		t.Errorf("%d of the %d bytes shipped before the change differ, the first at %d: got %q, want %q",
			bad, len(want), first, got[lo:min(len(got), first+60)], want[lo:min(len(want), first+60)])
	}
}

// A log truncated to a non-zero length inside a page of lines already shipped (the kernel zeroes
// the rest of that page) does not change them.
func TestPartialTruncateKeepsShippedLines(t *testing.T) {
	for name, dir := range rewriteDirs(t) {
		t.Run(name, func(t *testing.T) {
			lines, content := rewriteLines("line", 400)
			cut := strings.Index(content, "line 000200 ")
			if cut%4096 == 0 {
				t.Fatal("the cut is page-aligned: it zeroes no page's rest")
			}
			shipThenChange(t, dir, lines, func(app string) {
				if err := os.Truncate(app, int64(cut)); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// A log rewritten in place (a writer that opened it without O_APPEND or O_TRUNC, like a shell's
// `exec 1<>app.log`) does not change the lines already shipped.
func TestInPlaceRewriteKeepsShippedLines(t *testing.T) {
	for name, dir := range rewriteDirs(t) {
		t.Run(name, func(t *testing.T) {
			lines, content := rewriteLines("line", 400)
			_, other := rewriteLines("OTHER-CONTENT", 400)
			shipThenChange(t, dir, lines, func(app string) {
				f, err := os.OpenFile(app, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteAt([]byte(other[:len(content)]), 0); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// A hole punched over lines already shipped (a consumer freeing the space of the part it read)
// does not change them.
func TestPunchHoleKeepsShippedLines(t *testing.T) {
	for name, dir := range rewriteDirs(t) {
		t.Run(name, func(t *testing.T) {
			lines, content := rewriteLines("line", 400)
			cut := strings.Index(content, "line 000200 ")
			shipThenChange(t, dir, lines, func(app string) {
				f, err := os.OpenFile(app, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				const punchHole = 0x02 | 0x01 // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
				if err := syscall.Fallocate(int(f.Fd()), punchHole, 0, int64(cut)); err != nil {
					t.Skipf("this file system punches no holes: %v", err)
				}
			})
		})
	}
}

// reserve counts the splices still in the pipe from the bytes it holds; when other writers of the
// pipe put more bytes in it than this pipeOut wrote, none of this pipeOut's splices is known to be
// taken, and all keep their room (the count wrapped around and dropped them all: reserve 0, then
// raw writes into a pipe short of slots).
func TestPipeOutReserveKeepsSplicesWhenOthersFillThePipe(t *testing.T) {
	p := &pipeOut{written: 3 << 12}
	p.written = 1 << 12
	p.addSlack(spliceSlack)
	p.written = 2 << 12
	p.addSlack(spliceSlack)
	p.written = 3 << 12
	if got := p.reserve(64 << 10); got != 2*spliceSlack {
		t.Errorf("reserve with the pipe holding more than was written through it: %d, want %d", got, 2*spliceSlack)
	}
	if got := p.reserve(3 << 12); got != 2*spliceSlack {
		t.Errorf("reserve with the pipe holding all that was written through it: %d, want %d", got, 2*spliceSlack)
	}
	if got := p.reserve(2<<12 - 1); got != spliceSlack {
		t.Errorf("reserve with the first splice taken: %d, want %d", got, spliceSlack)
	}
	if got := p.reserve(0); got != 0 || len(p.slack) != 0 {
		t.Errorf("reserve with the pipe empty: %d (%d splices kept), want 0", got, len(p.slack))
	}
}

// Reading a log's pages that are not in the page cache waits for the file system: on FUSE (or NFS)
// as long as its daemon (server) takes. The read must wait in the Go runtime's syscall state, not in
// a raw system call, which keeps the runtime from stopping the world meanwhile: a GC, and with it
// every goroutine that allocates, would wait for the file system too. The FUSE file system is
// fuse-overlayfs, whose daemon the test stops for two seconds.
func TestColdFileReadDoesNotHoldUpGC(t *testing.T) {
	fuse := mountFuseOverlay(t)
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = 'a' + byte(i%26)
		if i%100 == 99 {
			data[i] = '\n'
		}
	}
	for _, tc := range []struct {
		name string
		read func(t *testing.T, f *os.File) int
	}{
		{"pread", func(_ *testing.T, f *os.File) int {
			n, _ := readPieces(f, make([]byte, len(data)), 0, readPiece)
			return n
		}},
		{"splice", func(t *testing.T, f *os.File) int {
			_, w := newTestPipe(t, 1<<20)
			p := newPipeOut(w, true)
			defer p.dropStage()
			p.capture(f, 0, len(data))
			return p.st.n
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := createOpen(t, filepath.Join(fuse.dir, tc.name+".log"), data)
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				t.Fatalf("fadvise: %v", err)
			}
			if err := fuse.daemon.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			// Resumed by another process: with the world stopped on the old code, no goroutine of
			// this one would run to do it.
			cont := exec.Command("sh", "-c", "sleep 2; kill -CONT "+strconv.Itoa(fuse.daemon.Pid))
			if err := cont.Start(); err != nil {
				_ = fuse.daemon.Signal(syscall.SIGCONT)
				t.Fatal(err)
			}
			defer func() {
				_ = cont.Wait()
				_ = fuse.daemon.Signal(syscall.SIGCONT)
			}()
			done := make(chan int, 1)
			go func() { done <- tc.read(t, f) }()
			time.Sleep(200 * time.Millisecond)
			start := time.Now()
			runtime.GC()
			gc := time.Since(start)
			n := <-done
			t.Logf("runtime.GC() started 200ms into the read took %v; %d bytes read", gc, n)
			if gc > time.Second {
				t.Errorf("a GC waited %v for a read blocked in the file system", gc)
			}
		})
	}
}

// fuseOverlay is a fuse-overlayfs mount: its directory and its daemon.
type fuseOverlay struct {
	dir    string
	daemon *os.Process
}

// mountFuseOverlay mounts a fuse-overlayfs over empty directories for the test, or skips it when
// that is not possible here (no fuse-overlayfs, no /dev/fuse, no right to mount).
func mountFuseOverlay(t *testing.T) fuseOverlay {
	t.Helper()
	bin, err := exec.LookPath("fuse-overlayfs")
	if err != nil {
		t.Skip("no fuse-overlayfs (apt package fuse-overlayfs): the FUSE file system this test needs")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	umount, err := exec.LookPath("fusermount3")
	if err != nil {
		if umount, err = exec.LookPath("fusermount"); err != nil {
			t.Skip("no fusermount3 or fusermount to unmount a FUSE file system")
		}
	}
	base := t.TempDir()
	var d [4]string
	for i, n := range []string{"lower", "upper", "work", "merged"} {
		d[i] = filepath.Join(base, n)
		if err := os.Mkdir(d[i], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "-f", "-o", "lowerdir="+d[0]+",upperdir="+d[1]+",workdir="+d[2], d[3])
	if err := cmd.Start(); err != nil {
		t.Skipf("fuse-overlayfs: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		if out, err := exec.Command(umount, "-u", d[3]).CombinedOutput(); err != nil {
			t.Logf("%s -u: %v: %s", umount, err, out)
			_ = cmd.Process.Kill()
		}
		<-exited
	})
	var root syscall.Stat_t
	if err := syscall.Stat(base, &root); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		var st syscall.Stat_t
		if err := syscall.Stat(d[3], &st); err == nil && st.Dev != root.Dev {
			break // mounted
		}
		select {
		case err := <-exited:
			exited <- err
			t.Skipf("fuse-overlayfs could not mount here: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Skip("fuse-overlayfs did not mount within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fuseOverlay{dir: d[3], daemon: cmd.Process}
}
