//go:build unix

package workqueue_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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
// is retried, not buried.
func TestExecWorkerEndedContextIsNotPermanent(t *testing.T) {
	w, _ := workqueue.NewExecWorker([]string{"true"})
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("lease lost"))
	err := w.Handle(ctx, &workqueue.Item{ID: "late", Attempt: 1})
	var perm *workqueue.PermanentError
	if err == nil || errors.As(err, &perm) || !strings.Contains(err.Error(), "lease lost") {
		t.Errorf("Handle with an ended ctx: %v, want a retryable error with the ctx's cause", err)
	}
}

// writeScript writes a shell script that exits with code 0 to dir/name (making dir), with mode
// perm, and returns its path.
func writeScript(t *testing.T, dir, name string, perm os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return p
}

// NewExecWorker refuses, naming it, a command that exec.Command could not run: before the fix it
// took any, and each item's first attempt failed to start it.
func TestNewExecWorkerRefusesCommandsThatCannotRun(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, "noexec.sh", 0o644)
	writeScript(t, dir, "dottool", 0o755)
	writeScript(t, filepath.Join(dir, "bin"), "tool", 0o755)
	t.Chdir(dir)
	for _, tc := range []struct {
		name    string
		argv    []string
		opts    []workqueue.ExecOption
		path    string // PATH while NewExecWorker runs ("": unchanged)
		wantIs  error  // besides ErrInvalid
		mention string // what the message must name
	}{
		{name: "missing path", argv: []string{"/nonexistent/podblocks-command"}, wantIs: fs.ErrNotExist, mention: "/nonexistent/podblocks-command"},
		{name: "missing in PATH", argv: []string{"podblocks-no-such-command", "x"}, wantIs: exec.ErrNotFound, mention: "podblocks-no-such-command"},
		{name: "not executable, relative", argv: []string{"./noexec.sh"}, wantIs: fs.ErrPermission, mention: "./noexec.sh"},
		{name: "not executable, absolute", argv: []string{filepath.Join(dir, "noexec.sh")}, wantIs: fs.ErrPermission, mention: filepath.Join(dir, "noexec.sh")},
		{name: "a directory", argv: []string{"./bin"}, wantIs: syscall.EISDIR, mention: "./bin"},
		{name: "found in a relative PATH entry", argv: []string{"tool"}, path: "bin", wantIs: exec.ErrDot, mention: "tool"},
		{name: "found in an empty PATH entry (the current directory)", argv: []string{"dottool"}, path: ":/nonexistent", wantIs: exec.ErrDot, mention: "dottool"},
		{name: "NUL in an argument", argv: []string{"sh", "-c", "true\x00"}, mention: "NUL"},
		{name: "NUL in the environment", argv: []string{"sh"}, opts: []workqueue.ExecOption{workqueue.WithEnv("A=\x00")}, mention: "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.path != "" {
				t.Setenv("PATH", tc.path)
			}
			w, err := workqueue.NewExecWorker(tc.argv, tc.opts...)
			if w != nil || !errors.Is(err, workqueue.ErrInvalid) || (tc.wantIs != nil && !errors.Is(err, tc.wantIs)) ||
				!strings.Contains(fmt.Sprint(err), tc.mention) {
				t.Errorf("NewExecWorker(%q): %v (a worker: %t); want no worker, and an error wrapping ErrInvalid and %v that names %q",
					tc.argv, err, w != nil, tc.wantIs, tc.mention)
			}
		})
	}
}

// The command is resolved as exec.Command resolves it, in the current directory of the caller of
// NewExecWorker, not in the item's work directory where it runs; its argv[0] is the one given.
func TestExecWorkerResolvesCommandLikeExecCommand(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, filepath.Join(dir, "bin"), "tool", 0o755)
	writeScript(t, dir, "tool.sh", 0o755)
	t.Chdir(dir)
	handle := func(t *testing.T, argv []string, opts ...workqueue.ExecOption) {
		t.Helper()
		w, err := workqueue.NewExecWorker(argv, opts...)
		if err != nil {
			t.Fatalf("NewExecWorker(%q): %v", argv, err)
		}
		if err := w.Handle(context.Background(), &workqueue.Item{ID: "x", Attempt: 1}); err != nil {
			t.Errorf("Handle of %q: %v", argv, err)
		}
	}
	t.Run("relative path", func(t *testing.T) { handle(t, []string{"./tool.sh"}) })
	t.Run("relative PATH entry with GODEBUG=execerrdot=0", func(t *testing.T) {
		t.Setenv("PATH", "bin")
		t.Setenv("GODEBUG", "execerrdot=0")
		handle(t, []string{"tool"})
	})
	t.Run("argv[0] as given", func(t *testing.T) {
		if _, err := os.Stat("/proc/self/cmdline"); err != nil {
			t.Skipf("no /proc/self/cmdline to read argv from: %v", err)
		}
		out := t.TempDir()
		handle(t, []string{"sh", "-c", `tr '\0' '\n' < /proc/$$/cmdline > "$OUTPUT_DIR/argv"; true`}, workqueue.WithOutputRoot(out))
		b, err := os.ReadFile(filepath.Join(out, "x", "argv"))
		if got, _, _ := strings.Cut(string(b), "\n"); err != nil || got != "sh" {
			t.Errorf("the command's argv[0]: %q (%v), want %q", got, err, "sh")
		}
	})
}

// A command that cannot start after NewExecWorker resolved it (removed, made not executable) gets
// a retryable error, not a PermanentError; before the fix each item was buried on its first attempt.
func TestExecWorkerStartFailureIsRetryable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		breakCmd func(path string) error
		wantIs   error
	}{
		{"removed", os.Remove, fs.ErrNotExist},
		{"made not executable", func(p string) error { return os.Chmod(p, 0o644) }, fs.ErrPermission},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := writeScript(t, t.TempDir(), "cmd.sh", 0o755)
			w, err := workqueue.NewExecWorker([]string{cmd})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Handle(context.Background(), &workqueue.Item{ID: "ok", Attempt: 1}); err != nil {
				t.Fatalf("Handle before the command broke: %v", err)
			}
			if err := tc.breakCmd(cmd); err != nil {
				t.Fatal(err)
			}
			err = w.Handle(context.Background(), &workqueue.Item{ID: "broken", Attempt: 1})
			var perm *workqueue.PermanentError
			if err == nil || errors.As(err, &perm) || !errors.Is(err, tc.wantIs) {
				t.Errorf("Handle: %v, want a retryable error wrapping %v", err, tc.wantIs)
			}
		})
	}
	// The one start failure that is the item's own: an ID no environment variable can carry.
	w, err := workqueue.NewExecWorker([]string{"true"})
	if err != nil {
		t.Fatal(err)
	}
	var perm *workqueue.PermanentError
	if err := w.Handle(context.Background(), &workqueue.Item{ID: "a\x00b", Attempt: 1}); !errors.As(err, &perm) {
		t.Errorf("Handle of an item whose ID holds a NUL byte: %v, want a PermanentError", err)
	}
}

// Under a Pool a command that vanished is retried with backoff and buried after its 3 attempts,
// whether the queue's max attempts or the pool's decide; before the fix it was buried at once.
func TestExecWorkerStartFailureUnderPoolUsesMaxAttempts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		qopts      []workqueue.Option
		popts      []workqueue.PoolOption
		wantCounts workqueue.Counts
	}{
		{"queue WithMaxAttempts(3)", []workqueue.Option{workqueue.WithMaxAttempts(3)}, nil, workqueue.Counts{Retried: 3}},
		{"pool WithPoolMaxAttempts(3)", nil, []workqueue.PoolOption{workqueue.WithPoolMaxAttempts(3)}, workqueue.Counts{Retried: 2, Buried: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := writeScript(t, t.TempDir(), "cmd.sh", 0o755)
			w, err := workqueue.NewExecWorker([]string{cmd})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(cmd); err != nil {
				t.Fatal(err)
			}
			q := mustMemory(t, tc.qopts...)
			p, err := workqueue.NewPool(q, w, append([]workqueue.PoolOption{workqueue.WithProgressEvery(0),
				workqueue.WithBackoff(func(int) time.Duration { return 10 * time.Millisecond })}, tc.popts...)...)
			if err != nil {
				t.Fatal(err)
			}
			stop := runPool(t, p)
			ctx := context.Background()
			if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{}); err != nil {
				t.Fatal(err)
			}
			var dead []workqueue.DeadItem
			await.True(t, "the item to be buried", 20*time.Second, func() bool {
				dead, err = q.Dead(ctx, 10)
				return err == nil && len(dead) > 0
			})
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(dead) != 1 || dead[0].Attempts != 3 {
				t.Errorf("dead letters %+v, want one item buried after 3 attempts", dead)
			}
			if diff := cmp.Diff(tc.wantCounts, p.Counts()); diff != "" {
				t.Errorf("pool counts (-want +got):\n%s", diff)
			}
		})
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
			doneFile := filepath.Join(dir, "done") // touched as the shell exits (not when it is killed)
			if tc.escapes {
				killEscapee(t, escapeeFile)
			}
			core, logs := observer.New(zap.InfoLevel)
			w, err := workqueue.NewExecWorker([]string{"sh", "-c", `trap ': > "$DONE"' EXIT` + "\n" + tc.script},
				workqueue.WithEnv("CHILD="+childFile, "ESCAPEE="+escapeeFile, "DONE="+doneFile), workqueue.WithLogger(zap.New(core)))
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
			// Before the fix Handle waited 2 s (exec.Cmd.WaitDelay) for the pipes to close. The
			// command's end is when its shell exited, or its timeout where it was killed: the
			// script's own run time, long on a loaded machine, is not counted.
			ended := start.Add(tc.timeout)
			if fi, err := os.Stat(doneFile); err == nil {
				ended = fi.ModTime()
			} else if tc.timeout == 0 {
				t.Errorf("the shell did not say when it exited: %v", err)
			}
			if el := time.Since(ended); el > 1500*time.Millisecond {
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
		workqueue.WithEnv("ESCAPEE="+escapeeFile, "LOGGED="+loggedFile), workqueue.WithLogger(zap.New(core, slow)))
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
