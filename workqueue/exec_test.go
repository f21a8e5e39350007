//go:build unix

package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/workqueue"
)

// Environment of TestExecWorkerHelperProcess, set by TestExecWorkerSweepsDeadWorkersDirs.
const (
	envHelperRoot    = "PODBLOCKS_WQ_HELPER_ROOT"
	envHelperStarted = "PODBLOCKS_WQ_HELPER_STARTED"
)

// TestExecWorkerHelperProcess is the worker process that TestExecWorkerSweepsDeadWorkersDirs
// SIGKILLs while its command runs; it does nothing in a normal run.
func TestExecWorkerHelperProcess(t *testing.T) {
	root := os.Getenv(envHelperRoot)
	if root == "" {
		t.Skip("the worker process of TestExecWorkerSweepsDeadWorkersDirs")
	}
	w, err := workqueue.NewExecWorker([]string{"sh", "-c", `echo $$ > "$STARTED.tmp" && mv "$STARTED.tmp" "$STARTED" && exec sleep 300`},
		workqueue.WithWorkRoot(root), workqueue.WithEnv("STARTED="+os.Getenv(envHelperStarted)))
	if err != nil {
		t.Fatal(err)
	}
	err = w.Handle(context.Background(), &workqueue.Item{ID: "killed", Payload: []byte("x"), Attempt: 1})
	t.Errorf("Handle returned (%v) before the process was killed", err)
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// A worker process SIGKILLed while its command runs cannot remove the item's work directory. The
// next ExecWorker on that work root removes it in its first Handle; a later ExecWorker's sweep
// leaves alone the directory a live Handle holds, and anything not named like a work directory.
func TestExecWorkerSweepsDeadWorkersDirs(t *testing.T) {
	root := t.TempDir()
	started := filepath.Join(t.TempDir(), "started")
	for _, d := range []string{"unrelated", "item-1-123"} { // not ours: a sweep must keep them
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	keep := dirNames(t, root)

	helper := exec.Command(os.Args[0], "-test.run=^TestExecWorkerHelperProcess$")
	helper.Env = append(os.Environ(), envHelperRoot+"="+root, envHelperStarted+"="+started)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	var pgid int
	await.True(t, "the helper's command to start", 30*time.Second, func() bool {
		b, err := os.ReadFile(started)
		pgid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pgid > 0
	})
	helper.Process.Kill() // SIGKILL: no deferred cleanup runs
	helper.Wait()
	syscall.Kill(-pgid, syscall.SIGKILL) // its command, in a process group of its own
	left := dirNames(t, root)
	if len(left) != len(keep)+1 {
		t.Fatalf("after the kill the work root holds %q, want %q and the killed item's directory", left, keep)
	}

	// Worker a: its first Handle sweeps, then its command runs until go exists.
	gate := filepath.Join(t.TempDir(), "go")
	running := filepath.Join(t.TempDir(), "running")
	a, err := workqueue.NewExecWorker([]string{"sh", "-c", `pwd > "$RUNNING.tmp" && mv "$RUNNING.tmp" "$RUNNING"; while [ ! -e "$GATE" ]; do sleep 0.01; done`},
		workqueue.WithWorkRoot(root), workqueue.WithEnv("RUNNING="+running, "GATE="+gate))
	if err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() { aDone <- a.Handle(context.Background(), &workqueue.Item{ID: "live", Attempt: 1}) }()
	var aDir string
	await.True(t, "a's command to run", 30*time.Second, func() bool {
		b, err := os.ReadFile(running)
		aDir = strings.TrimSpace(string(b))
		return err == nil && aDir != ""
	})
	want := append(slices.Clone(keep), filepath.Base(aDir))
	slices.Sort(want)
	if got := dirNames(t, root); !slices.Equal(got, want) {
		t.Errorf("while a runs the work root holds %q, want %q: the dead worker's directory removed", got, want)
	}

	// Worker b's first Handle sweeps too, while a's directory is in use.
	b, err := workqueue.NewExecWorker([]string{"true"}, workqueue.WithWorkRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Handle(context.Background(), &workqueue.Item{ID: "b", Attempt: 1}); err != nil {
		t.Fatalf("b: %v", err)
	}
	if _, err := os.Stat(aDir); err != nil {
		t.Errorf("a's work directory, in use: %v", err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-aDone; err != nil {
		t.Errorf("a: %v", err)
	}
	if got := dirNames(t, root); !slices.Equal(got, keep) {
		t.Errorf("at the end the work root holds %q, want %q", got, keep)
	}
	if _, err := os.Stat(aDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a's work directory after its Handle: %v, want it removed", err)
	}
}

// A command that cannot start because the item's ctx ended first (its timeout, a lost lease, a drain)
// is retried, not buried: only a command that cannot start at all is a permanent failure.
func TestExecWorkerEndedContextIsNotPermanent(t *testing.T) {
	w, _ := workqueue.NewExecWorker([]string{"true"})
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("lease lost"))
	err := w.Handle(ctx, &workqueue.Item{ID: "late", Attempt: 1})
	var perm *workqueue.PermanentError
	if err == nil || errors.As(err, &perm) || !strings.Contains(err.Error(), "lease lost") {
		t.Errorf("Handle with an ended ctx: %v, want a retryable error with the ctx's cause", err)
	}
	w, _ = workqueue.NewExecWorker([]string{"/nonexistent/podblocks-command"})
	if err := w.Handle(context.Background(), &workqueue.Item{ID: "never", Attempt: 1}); !errors.As(err, &perm) {
		t.Errorf("Handle of a command that cannot start: %v, want a PermanentError", err)
	}
}

// TestExecWorkerKillsProcessGroup checks that a timeout kills the command and its children.
func TestExecWorkerKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	w, _ := workqueue.NewExecWorker([]string{"sh", "-c", `sleep 300 & echo $! > "$PIDFILE"; wait`}, workqueue.WithEnv("PIDFILE="+pidFile))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := w.Handle(ctx, &workqueue.Item{ID: "slow", Attempt: 1})
	if err == nil {
		t.Fatal("Handle returned nil for a killed command")
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Handle took %v after the timeout", el)
	}
	awaitDead(t, readPid(t, pidFile))
}

// The outcome follows the command's exit status even when it leaves processes behind that hold its
// output open: those in its process group are killed as soon as it exits, and one that left the
// group (setsid) is not waited for. What the command wrote before it ended is logged, to the last
// partial line.
func TestExecWorkerLeftBehindProcesses(t *testing.T) {
	// Each script starts a child in the command's group that would outlive it, and writes its pid
	// to $CHILD; $ESCAPEE gets the pid of a process that left the group, where a script starts one.
	const (
		child   = `sleep 300 & echo $! > "$CHILD"` + "\n"
		escapee = `setsid sh -c 'echo $$ > "$ESCAPEE.tmp" && mv "$ESCAPEE.tmp" "$ESCAPEE" && exec sleep 300' &
while [ ! -e "$ESCAPEE" ]; do sleep 0.01; done
`
	)
	var numbers []string
	for i := 1; i <= 20000; i++ { // 109 KB: more than a pipe holds
		numbers = append(numbers, strconv.Itoa(i))
	}
	isExit3 := func(err error) bool {
		var ee *workqueue.ExitError
		return errors.As(err, &ee) && ee.Code == 3 && strings.Contains(ee.Stderr, "boom")
	}
	for _, tc := range []struct {
		name       string
		script     string
		timeout    time.Duration // 0: none
		escapes    bool          // the script starts a process that leaves the group
		errOK      func(error) bool
		wantErr    string
		wantStdout []string
		wantStderr []string
	}{{
		name:       "exit 0 acks",
		script:     child + "seq 1 20000\necho to-stderr >&2\nprintf 'err tail' >&2\nprintf 'no newline'\nexit 0",
		errOK:      func(err error) bool { return err == nil },
		wantErr:    "nil",
		wantStdout: append(slices.Clone(numbers), "no newline"),
		wantStderr: []string{"to-stderr", "err tail"},
	}, {
		name:       "exit 3 retries",
		script:     child + "echo out\necho boom >&2\nexit 3",
		errOK:      isExit3,
		wantErr:    "an *ExitError with code 3 and stderr boom",
		wantStdout: []string{"out"},
		wantStderr: []string{"boom"},
	}, {
		name:       "exit 0 with an escaped process acks",
		script:     child + escapee + "echo done\nexit 0",
		escapes:    true,
		errOK:      func(err error) bool { return err == nil },
		wantErr:    "nil",
		wantStdout: []string{"done"},
	}, {
		name:       "exit 3 with an escaped process retries",
		script:     child + escapee + "echo out\necho boom >&2\nexit 3",
		escapes:    true,
		errOK:      isExit3,
		wantErr:    "an *ExitError with code 3 and stderr boom",
		wantStdout: []string{"out"},
		wantStderr: []string{"boom"},
	}, {
		name:       "timeout with an escaped process kills the group",
		script:     child + escapee + "echo started\nwait",
		timeout:    500 * time.Millisecond,
		escapes:    true,
		errOK:      func(err error) bool { return errors.Is(err, context.DeadlineExceeded) },
		wantErr:    "an error wrapping context.DeadlineExceeded",
		wantStdout: []string{"started"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			childFile, escapeeFile := filepath.Join(dir, "child"), filepath.Join(dir, "escapee")
			if tc.escapes {
				killEscapee(t, escapeeFile)
			}
			core, logs := observer.New(zap.InfoLevel)
			w, err := workqueue.NewExecWorker([]string{"sh", "-c", tc.script},
				workqueue.WithEnv("CHILD="+childFile, "ESCAPEE="+escapeeFile), workqueue.WithExecLogger(zap.New(core)))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			start := time.Now()
			err = w.Handle(ctx, &workqueue.Item{ID: "left", Attempt: 1})
			// Before the fix Handle waited 2 s (exec.Cmd.WaitDelay) for the pipes to close.
			if el := time.Since(start) - tc.timeout; el > 1500*time.Millisecond {
				t.Errorf("Handle took %v after the command ended", el)
			}
			if !tc.errOK(err) {
				t.Errorf("Handle: %v, want %s", err, tc.wantErr)
			}
			awaitDead(t, readPid(t, childFile))
			lines := map[string][]string{}
			for _, e := range logs.FilterMessage("command output").All() {
				m := e.ContextMap()
				s, _ := m["stream"].(string)
				l, _ := m["line"].(string)
				lines[s] = append(lines[s], l)
			}
			if diff := cmp.Diff(tc.wantStdout, lines["stdout"]); diff != "" {
				t.Errorf("stdout lines logged (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantStderr, lines["stderr"]); diff != "" {
				t.Errorf("stderr lines logged (-want +got):\n%s", diff)
			}
		})
	}
}

// When a process that left the command's group holds its output open, Handle stops reading at a
// bound; what the command wrote before it ended is logged still, however slow the logger was.
func TestExecWorkerLogsOutputHeldOpenBySlowLogger(t *testing.T) {
	dir := t.TempDir()
	escapeeFile, loggedFile := filepath.Join(dir, "escapee"), filepath.Join(dir, "logged")
	killEscapee(t, escapeeFile)
	// The first line stalls the logger for longer than Handle waits for the pipes to close; the
	// command writes the rest (less than a pipe holds) meanwhile, and exits.
	var once sync.Once
	slow := zap.Hooks(func(e zapcore.Entry) error {
		if e.Message == "command output" {
			once.Do(func() {
				os.WriteFile(loggedFile, nil, 0o644)
				time.Sleep(time.Second)
			})
		}
		return nil
	})
	core, logs := observer.New(zap.InfoLevel)
	script := `setsid sh -c 'echo $$ > "$ESCAPEE.tmp" && mv "$ESCAPEE.tmp" "$ESCAPEE" && exec sleep 300' &
while [ ! -e "$ESCAPEE" ]; do sleep 0.01; done
echo first
while [ ! -e "$LOGGED" ]; do sleep 0.01; done
seq 1 2000`
	w, err := workqueue.NewExecWorker([]string{"sh", "-c", script},
		workqueue.WithEnv("ESCAPEE="+escapeeFile, "LOGGED="+loggedFile), workqueue.WithExecLogger(zap.New(core, slow)))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Handle(context.Background(), &workqueue.Item{ID: "slow-log", Attempt: 1}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	want := []string{"first"}
	for i := 1; i <= 2000; i++ {
		want = append(want, strconv.Itoa(i))
	}
	var got []string
	for _, e := range logs.FilterMessage("command output").FilterField(zap.String("stream", "stdout")).All() {
		l, _ := e.ContextMap()["line"].(string)
		got = append(got, l)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stdout lines logged (-want +got):\n%s", diff)
	}
}

// killEscapee skips t where there is no setsid(1); else it kills, when t ends, the process whose
// pid a command wrote to file: one that left the command's group, which the ExecWorker leaves
// running.
func killEscapee(t *testing.T, file string) {
	t.Helper()
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skipf("no setsid(1) to leave the process group: %v", err)
	}
	t.Cleanup(func() {
		b, err := os.ReadFile(file)
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// readPid reads the pid a command wrote to file.
func readPid(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("child pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("child pid %q: %v", b, err)
	}
	return pid
}

// awaitDead waits for process pid to be dead (gone, or a zombie).
func awaitDead(t *testing.T, pid int) {
	t.Helper()
	await.True(t, fmt.Sprintf("process %d to die", pid), 20*time.Second, func() bool {
		err := syscall.Kill(pid, 0)
		if err == nil {
			// A zombie still answers kill 0; it is dead if its state is Z.
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			return strings.Contains(string(st), ") Z ")
		}
		return errors.Is(err, syscall.ESRCH)
	})
}
