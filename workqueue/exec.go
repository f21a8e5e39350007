package workqueue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podblocks/podblocks/internal/pdeathsig"
	"github.com/podblocks/podblocks/internal/procgroup"
	"go.uber.org/zap"
)

// Environment variables an ExecWorker's command gets (the run()/mount() contract).
const (
	EnvItemFile  = "WORK_ITEM_FILE"    // path of a file holding the item's payload
	EnvOutputDir = "OUTPUT_DIR"        // a directory for the command's results
	EnvItemID    = "WORK_ITEM_ID"      // the item's ID
	EnvAttempt   = "WORK_ITEM_ATTEMPT" // the attempt number, from 1
)

// ExitError is returned by ExecWorker.Handle when the command exits non-zero (or is killed by a
// signal it was not sent by the ExecWorker: the OOM killer's SIGKILL, say). Its message says which:
// "command exited with code 3: <last line of stderr>", "command killed by signal 9 (killed): ...".
type ExitError struct {
	Code   int       // exit code; -1 when killed by a signal
	Signal os.Signal // the signal that killed the command; nil when it exited
	Stderr string    // the last few KiB of its standard error
}

func (e *ExitError) Error() string {
	s := "command exited with code " + strconv.Itoa(e.Code)
	if e.Signal != nil {
		s = "command killed by signal " + signalName(e.Signal)
	}
	if t := strings.TrimSpace(e.Stderr); t != "" {
		if i := strings.LastIndexByte(t, '\n'); i >= 0 {
			t = t[i+1:]
		}
		s += ": " + t
	}
	return s
}

// ExecOption configures an ExecWorker.
type ExecOption interface{ applyExec(*execConfig) }

type execConfig struct {
	workRoot   string
	outputRoot string
	env        []string
	logger     *zap.Logger
	// outputGrace is how long Handle waits, once the command's group is killed, for its output
	// pipes to close before it stops reading them.
	outputGrace time.Duration
}

type execOptionFunc func(*execConfig)

func (f execOptionFunc) applyExec(c *execConfig) { f(c) }

// WithWorkRoot is where per-item work directories are made (and removed after each attempt).
// Default (and for "") os.TempDir() when NewExecWorker is called. A relative DIR is relative to
// the current directory when NewExecWorker is called. Several ExecWorkers, in one process or many,
// may share it: each holds a lock on the directories of its items in flight, and the first Handle
// of an ExecWorker removes the directories nobody holds (see ExecWorker).
func WithWorkRoot(dir string) ExecOption {
	return execOptionFunc(func(c *execConfig) { c.workRoot = dir })
}

// WithOutputRoot keeps results: OUTPUT_DIR is DIR/<item ID>, empty when each attempt starts and
// kept after it. What an earlier run left in DIR/<item ID> is never removed: it is moved to
// DIR/<item ID>.<n> (the first n free), be it an earlier attempt's partial results or another
// item's (an ID a queue handed out again: Memory numbers its items anew after a restart; or one
// whose name in DIR is the same: characters other than ASCII letters, digits, '-' and '_' become
// '_', and only the first 64 count). Default "": OUTPUT_DIR is inside the work directory and
// removed with it. A relative DIR is relative to the current directory when NewExecWorker is
// called (OUTPUT_DIR is absolute).
func WithOutputRoot(dir string) ExecOption {
	return execOptionFunc(func(c *execConfig) { c.outputRoot = dir })
}

// WithEnv adds KEY=VALUE entries to the command's environment (which otherwise is this process's).
// NewExecWorker refuses an entry that is not KEY=VALUE with a KEY, or that holds a NUL byte.
func WithEnv(kv ...string) ExecOption {
	return execOptionFunc(func(c *execConfig) { c.env = append(c.env, kv...) })
}

// ExecWorker is a Handler that runs an external command per item, the paper's run()/mount()
// contract: the payload is written to a file in a fresh work directory, the command runs with
// WORK_ITEM_FILE and OUTPUT_DIR set, in its own process group. Exit 0 acks; a non-zero exit is an
// *ExitError (the pool retries). When the handler's ctx ends (item timeout, lease lost, drain budget)
// the whole process group is killed with SIGKILL, and after a normal exit any process the command
// left behind in its group is killed too, at once. On Linux that is done before the command's
// process is collected (waitid WNOWAIT), while the group's id, the command's process id, cannot
// have been given to another process; elsewhere on Unix it is done right after, and in the moment
// between, an unrelated process that got the freed id and leads a group of its own could be
// killed instead. Under a Pool the lease is extended for as long as the command runs.
//
// # When the worker dies
//
// On Linux the command is started with a parent-death signal (PR_SET_PDEATHSIG): when the worker
// process dies, however it dies (SIGKILL, the OOM killer), the kernel kills the command with
// SIGKILL, so an item redone elsewhere is not still being done here. Each command running holds
// an OS thread of the worker for this (Handle locks its goroutine to the thread that started the
// command until it has been waited for). The signal reaches the command's own process alone:
// processes it started live on (their parent is then init), still writing to OUTPUT_DIR, unless
// they are in a container that ends with the worker (a pod's). A command that runs its work as a
// child (sh script.sh running convert) is therefore better written to exec it (exec convert ...).
// The kernel also clears the signal when the command executes a set-user-ID or set-group-ID
// binary or one with file capabilities. Elsewhere (macOS, the BSDs, Windows) a command outlives
// a worker killed with SIGKILL.
//
// # Starting the command
//
// NewExecWorker resolves the command once, as exec.Command does: a name without a path separator
// is looked up in PATH, and one found only through a relative PATH entry is refused (exec.ErrDot,
// unless GODEBUG=execerrdot=0); a path with a separator is used as it is. A relative result is
// relative to the current directory when NewExecWorker is called, not to the item's work directory
// where the command runs. A command that is not found or not executable is an error wrapping
// ErrInvalid, so a worker with a typo fails when it starts, before it takes any item.
//
// A command that fails to start later (its binary removed or replaced, fork failing with EAGAIN, a
// work directory or payload file that cannot be written because the disk is full) returns an
// ordinary error: the pool retries the item with its backoff and buries it only after its max
// attempts, since the cause is the machine's, not the item's. The one start failure that is the
// item's own is an item ID holding a NUL byte, which no environment variable can carry: that is a
// *PermanentError.
//
// # Output
//
// The command's standard output and error are logged line by line (WithLogger), to the last
// partial line, and the last few KiB of its standard error are kept for the *ExitError. The
// outcome follows the exit status of the command's own process alone: processes it left running do
// not delay Handle, and nothing the command wrote before it ended is lost. A process that left the
// command's group (setsid) and holds its output open is not killed and not waited for: Handle reads
// what it writes for a moment (200 ms) after the command ends, then takes what the pipe still holds
// without waiting, at most 1 MiB a stream (logging that may take longer than the 200 ms), and stops.
//
// # Work directories
//
// A work directory is WorkRoot/podblocks-item-<ID>-<random>; Handle removes it when the attempt
// ends. A worker process that is SIGKILLed cannot, so each Handle holds an flock(2) lock on its
// directory for as long as it uses it (the kernel drops it when the process dies, however it
// dies), and the first Handle of an ExecWorker, before it makes its own, removes every
// podblocks-item-* directory of the work root that nobody holds: those of dead workers. A worker
// restarted after a kill cleans up after the one it replaces. The kernel kills the command of a
// worker that dies (its parent-death signal) but not what the command started, which would go on
// running, in the old work directory and writing to the item's OUTPUT_DIR while the item is tried
// again: so Handle writes the command's process group id to the file "pgid" in the work directory
// (next to "item" and "output") once the command started, and on Linux the sweep kills that group,
// if it still runs, before it removes the directory; a process of the group must still show it is
// the command's (its working directory is in the work directory, or its environment names the
// directory's item file), so that a group id the kernel gave out again is not killed. On other
// systems, without /proc to tell, the group is left running.
//
// # Windows
//
// Windows has neither process groups to signal nor flock(2). There the ExecWorker kills only the
// command's own process (processes it started are left running; when they hold its output open,
// Handle stops reading it 200 ms after the command ends, and what the pipe holds then is not
// logged), and its work directories are not locked: the first Handle logs that work-dir locks are
// not supported (an error wrapping errors.ErrUnsupported) and removes nothing, so the directories
// of killed workers stay in the work root.
type ExecWorker struct {
	argv  []string // as given: argv[0] is the command's argv[0]
	path  string   // argv[0] resolved, absolute
	cfg   execConfig
	swept sync.Once
}

var _ Handler = (*ExecWorker)(nil)

// NewExecWorker returns a worker for the command argv. It resolves argv[0] now, as exec.Command
// would (see ExecWorker), and returns an error wrapping ErrInvalid when the command is not found
// or not executable, when an argument or WithEnv entry holds a NUL byte, or when a WithEnv entry
// is not KEY=VALUE.
func NewExecWorker(argv []string, opts ...ExecOption) (*ExecWorker, error) {
	cfg := execConfig{logger: zap.NewNop(), outputGrace: 200 * time.Millisecond}
	for _, o := range opts {
		o.applyExec(&cfg)
	}
	if cfg.workRoot == "" { // the default, also for WithWorkRoot(""): one root to make in and sweep
		cfg.workRoot = os.TempDir()
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%w: empty command", ErrInvalid)
	}
	// No process can be started with these: every item would fail on them.
	for i, s := range slices.Concat(argv, cfg.env) {
		if strings.IndexByte(s, 0) >= 0 {
			what := "command argument"
			if i >= len(argv) {
				what = "environment entry"
			}
			return nil, fmt.Errorf("%w: %s %q holds a NUL byte", ErrInvalid, what, s)
		}
	}
	for _, kv := range cfg.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, badOption("WithEnv", strconv.Quote(kv), "want KEY=VALUE entries, with a KEY")
		}
	}
	path, err := exec.LookPath(argv[0]) // its error names argv[0]
	if err != nil {
		return nil, fmt.Errorf("%w: command: %w", ErrInvalid, err)
	}
	// The command runs in the item's work directory (exec.Cmd.Dir), where a relative path would
	// name another file.
	if path, err = filepath.Abs(path); err != nil {
		return nil, fmt.Errorf("%w: command %q: %w", ErrInvalid, argv[0], err)
	}
	// So must the roots be absolute: the command gets OUTPUT_DIR and WORK_ITEM_FILE, which a
	// relative root would make relative to this process's directory, not to the command's.
	for _, d := range []*string{&cfg.workRoot, &cfg.outputRoot} {
		if *d == "" { // WithOutputRoot's default
			continue
		}
		abs, err := filepath.Abs(*d)
		if err != nil {
			return nil, fmt.Errorf("%w: directory %q: %w", ErrInvalid, *d, err)
		}
		*d = abs
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	return &ExecWorker{argv: append([]string(nil), argv...), path: path, cfg: cfg}, nil
}

// Handle implements Handler.
func (w *ExecWorker) Handle(ctx context.Context, it *Item) error {
	if strings.IndexByte(it.ID, 0) >= 0 {
		return Permanent(fmt.Errorf("%w: item ID %q holds a NUL byte: it cannot go in %s", ErrInvalid, it.ID, EnvItemID))
	}
	w.swept.Do(func() {
		if n, err := sweepWorkDirs(w.cfg.workRoot); n > 0 || err != nil {
			w.cfg.logger.Info("removed work directories of dead workers", zap.String("root", w.cfg.workRoot), zap.Int("removed", n), zap.Error(err))
		}
	})
	dir, release, err := makeWorkDir(w.cfg.workRoot, it.ID)
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	defer release()
	itemFile := filepath.Join(dir, "item")
	if err := os.WriteFile(itemFile, it.Payload, 0o600); err != nil {
		return fmt.Errorf("write item: %w", err)
	}
	out := filepath.Join(dir, "output")
	if w.cfg.outputRoot != "" {
		out = filepath.Join(w.cfg.outputRoot, safeName(it.ID))
		if kept, err := keepOutput(out); err != nil {
			return fmt.Errorf("keep the output found in the output dir: %w", err)
		} else if kept != "" {
			w.cfg.logger.Info("moved the output found in the output dir aside", zap.String("id", it.ID), zap.String("to", kept))
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("output dir: %w", err)
	}

	log := w.cfg.logger.With(zap.String("id", it.ID), zap.Int("attempt", it.Attempt))
	cmd := exec.CommandContext(ctx, w.path, w.argv[1:]...)
	cmd.Args[0] = w.argv[0] // as exec.Command(argv[0]) has it
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), w.cfg.env...)
	cmd.Env = append(cmd.Env, EnvItemFile+"="+itemFile, EnvOutputDir+"="+out, EnvItemID+"="+it.ID, EnvAttempt+"="+strconv.Itoa(it.Attempt))
	cmd.SysProcAttr = pdeathsig.Set(groupAttr())
	if pdeathsig.Supported {
		// The parent-death signal comes when the thread that started the command exits, not the
		// process; and Go ends a thread when a goroutine locked to it returns. Unlocked, this
		// goroutine could leave its thread, while the command runs, to such a goroutine, and the
		// command would be killed. Locked, the thread runs nothing else until Handle returns,
		// after Wait.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	reaper := &procgroup.Reaper{Cmd: cmd, KillGroup: func(c *exec.Cmd) error { return killGroup(c) }}
	cmd.Cancel = reaper.Cancel
	// The command writes to pipes of ours (*os.File), not to pipes exec.Cmd copies from: so Wait
	// returns when the command exits, not when every process holding its output has closed it.
	outPipe, err := newOutputPipe()
	if err != nil {
		return fmt.Errorf("stdout pipe: %w", err)
	}
	errPipe, err := newOutputPipe()
	if err != nil {
		outPipe.discard()
		return fmt.Errorf("stderr pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = outPipe.w, errPipe.w
	if err := cmd.Start(); err != nil {
		outPipe.discard()
		errPipe.discard()
		if ctx.Err() != nil {
			// The item's time ran out (or its lease was lost, or the pool drains) before the
			// command could start: nothing says the command cannot run, so this is no dead letter.
			return fmt.Errorf("start %s: %w", w.argv[0], context.Cause(ctx))
		}
		// The command resolved when the worker was made: what fails now (the binary removed,
		// fork's EAGAIN, ...) is the machine's doing, and may pass. The pool retries.
		return fmt.Errorf("start %s: %w", w.argv[0], err)
	}
	if err := recordGroup(dir, cmd.Process.Pid); err != nil {
		log.Warn("could not record the command's process group in its work directory: should this worker die, a sweep will not kill what the command left running", zap.Error(err))
	}
	stdoutLog := &lineLogger{log: log, stream: "stdout"}
	stderrLog := &lineLogger{log: log, stream: "stderr"}
	stderr := &tailWriter{max: 4096}
	outPipe.start(stdoutLog)
	errPipe.start(multiWriter{stderrLog, stderr})
	err, waitErr := reaper.Wait()
	if waitErr != nil {
		log.Warn("could not wait for the command without collecting it: what it left in its group is not killed", zap.Error(waitErr))
	}
	finishOutput(w.cfg.outputGrace, outPipe, errPipe)
	stdoutLog.flush()
	stderrLog.flush()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("command killed: %w", context.Cause(ctx))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Code: ee.ExitCode(), Signal: exitSignal(ee.ProcessState), Stderr: stderr.String()}
	}
	return fmt.Errorf("wait: %w", err)
}

// groupFile, in a work directory, holds the process group id of the command running there, for
// the sweep of a worker that finds the directory after its worker died (killLeftGroup).
const groupFile = "pgid"

// workDirPrefix starts the name of every work directory, and only theirs: sweepWorkDirs removes
// nothing else.
const workDirPrefix = "podblocks-item-"

// keepOutput moves what an earlier run left in the output dir out (an earlier attempt of the item,
// or another item whose ID has the same name: a Memory queue numbers its items anew after a
// restart) to out.<n>, the first n free, and returns where; it returns "" when out is empty or
// missing. No item's output dir is named so: safeName makes no dots.
func keepOutput(out string) (string, error) {
	f, err := os.Open(out)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err == nil {
		_, err = f.Readdirnames(1)
		f.Close()
		if err == io.EOF { // empty
			return "", nil
		}
	}
	// Not empty, or not a directory we can read: moved as it is.
	for n := 1; ; n++ {
		kept := out + "." + strconv.Itoa(n)
		if _, err := os.Lstat(kept); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		// A directory that appeared at kept meanwhile (another worker's) makes Rename fail, or,
		// if it is empty, is replaced: nothing is lost either way.
		if err := os.Rename(out, kept); errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return "", err
		}
		return kept, nil
	}
}

func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// outputPipe carries one of the command's output streams to a writer.
type outputPipe struct {
	r, w *os.File      // read end; write end, which the command gets
	done chan struct{} // closed when copy returns
}

func newOutputPipe() (*outputPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &outputPipe{r: r, w: w, done: make(chan struct{})}, nil
}

// discard closes both ends of a pipe whose command did not start.
func (p *outputPipe) discard() {
	p.r.Close()
	p.w.Close()
}

// start closes the write end, which the started command holds now, and copies what the pipe
// carries to dst until every process holding the write end has closed it, or until stop.
func (p *outputPipe) start(dst io.Writer) {
	p.w.Close()
	go p.copy(dst)
}

func (p *outputPipe) copy(dst io.Writer) {
	defer close(p.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := p.r.Read(buf)
		if n > 0 {
			dst.Write(buf[:n])
		}
		if errors.Is(err, os.ErrDeadlineExceeded) { // stopped: take what the pipe holds, no more
			readBuffered(p.r, dst, buf, maxBuffered)
		}
		if err != nil {
			return
		}
	}
}

// maxBuffered bounds what copy reads after stop, so that a process that keeps writing cannot keep
// it reading. It is the largest pipe buffer Linux lets an unprivileged process ask for by default
// (fs.pipe-max-size): a pipe holds no more than that of what the command wrote and copy has not read.
const maxBuffered = 1 << 20

// stop makes copy return without waiting for the writers: its Read fails at once, and it reads what
// the pipe holds already (readBuffered). Where pipes have no deadlines (Windows) stop closes the
// read end instead, and what the pipe holds is dropped.
func (p *outputPipe) stop() {
	if p.r.SetReadDeadline(time.Unix(1, 0)) != nil {
		p.r.Close()
	}
}

// finishOutput waits for the copies of pipes to end, stops those still running after grace (a
// process outside the command's group holds the pipe open), and closes the read ends.
func finishOutput(grace time.Duration, pipes ...*outputPipe) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for _, p := range pipes {
		select {
		case <-p.done:
		case <-ctx.Done():
			p.stop()
			<-p.done
		}
		p.r.Close()
	}
}

// lineLogger logs each complete line written to it.
type lineLogger struct {
	log    *zap.Logger
	stream string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.log.Info("command output", zap.String("stream", l.stream), zap.ByteString("line", l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 { // a very long line: log it in pieces
		l.log.Info("command output", zap.String("stream", l.stream), zap.ByteString("line", l.buf))
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.log.Info("command output", zap.String("stream", l.stream), zap.ByteString("line", l.buf))
		l.buf = nil
	}
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

type multiWriter []interface{ Write([]byte) (int, error) }

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		w.Write(p)
	}
	return len(p), nil
}
