package workqueue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Environment variables an ExecWorker's command gets (the run()/mount() contract).
const (
	EnvItemFile  = "WORK_ITEM_FILE"    // path of a file holding the item's payload
	EnvOutputDir = "OUTPUT_DIR"        // a directory for the command's results
	EnvItemID    = "WORK_ITEM_ID"      // the item's ID
	EnvAttempt   = "WORK_ITEM_ATTEMPT" // the attempt number, from 1
)

// ExitError is returned by ExecWorker.Handle when the command exits non-zero (or is killed).
type ExitError struct {
	Code   int    // exit code; -1 when killed by a signal
	Stderr string // the last few KiB of its standard error
}

func (e *ExitError) Error() string {
	s := "command exited with code " + strconv.Itoa(e.Code)
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
	killGrace  time.Duration
}

type execOptionFunc func(*execConfig)

func (f execOptionFunc) applyExec(c *execConfig) { f(c) }

// WithWorkRoot is where per-item work directories are made (and removed after each attempt).
// Default os.TempDir(). Several ExecWorkers, in one process or many, may share it: each holds a
// lock on the directories of its items in flight, and the first Handle of an ExecWorker removes
// the directories nobody holds (see ExecWorker).
func WithWorkRoot(dir string) ExecOption {
	return execOptionFunc(func(c *execConfig) { c.workRoot = dir })
}

// WithOutputRoot keeps results: OUTPUT_DIR is DIR/<item ID>, emptied before each attempt and kept
// after it. Default "": OUTPUT_DIR is inside the work directory and removed with it.
func WithOutputRoot(dir string) ExecOption {
	return execOptionFunc(func(c *execConfig) { c.outputRoot = dir })
}

// WithEnv adds KEY=VALUE entries to the command's environment (which otherwise is this process's).
func WithEnv(kv ...string) ExecOption {
	return execOptionFunc(func(c *execConfig) { c.env = append(c.env, kv...) })
}

// WithExecLogger receives the command's output, one log entry per line. Default zap.NewNop().
func WithExecLogger(l *zap.Logger) ExecOption {
	return execOptionFunc(func(c *execConfig) { c.logger = l })
}

// ExecWorker is a Handler that runs an external command per item, the paper's run()/mount()
// contract: the payload is written to a file in a fresh work directory, the command runs with
// WORK_ITEM_FILE and OUTPUT_DIR set, in its own process group. Exit 0 acks; a non-zero exit is an
// *ExitError (the pool retries). When the handler's ctx ends (item timeout, lease lost, drain budget)
// the whole process group is killed with SIGKILL, and after a normal exit any process the command
// left behind in its group is killed too. Under a Pool the lease is extended for as long as the
// command runs.
//
// # Work directories
//
// A work directory is WorkRoot/podblocks-item-<ID>-<random>; Handle removes it when the attempt
// ends. A worker process that is SIGKILLed cannot, so each Handle holds an flock(2) lock on its
// directory for as long as it uses it (the kernel drops it when the process dies, however it
// dies), and the first Handle of an ExecWorker, before it makes its own, removes every
// podblocks-item-* directory of the work root that nobody holds: those of dead workers. A worker
// restarted after a kill cleans up after the one it replaces.
//
// # Windows
//
// Windows has neither process groups to signal nor flock(2). There the ExecWorker kills only the
// command's own process (processes it started are left running), and its work directories are not
// locked: the first Handle logs that work-dir locks are not supported (an error wrapping
// errors.ErrUnsupported) and removes nothing, so the directories of killed workers stay in the
// work root.
type ExecWorker struct {
	argv  []string
	cfg   execConfig
	swept sync.Once
}

var _ Handler = (*ExecWorker)(nil)

// NewExecWorker returns a worker for the command argv (argv[0] is looked up in PATH when run).
func NewExecWorker(argv []string, opts ...ExecOption) (*ExecWorker, error) {
	cfg := execConfig{workRoot: os.TempDir(), logger: zap.NewNop(), killGrace: 2 * time.Second}
	for _, o := range opts {
		o.applyExec(&cfg)
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("%w: empty command", ErrInvalid)
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	return &ExecWorker{argv: append([]string(nil), argv...), cfg: cfg}, nil
}

// Handle implements Handler.
func (w *ExecWorker) Handle(ctx context.Context, it *Item) error {
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
		if err := os.RemoveAll(out); err != nil {
			return fmt.Errorf("clear output dir: %w", err)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("output dir: %w", err)
	}

	log := w.cfg.logger.With(zap.String("id", it.ID), zap.Int("attempt", it.Attempt))
	cmd := exec.CommandContext(ctx, w.argv[0], w.argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), w.cfg.env...)
	cmd.Env = append(cmd.Env, EnvItemFile+"="+itemFile, EnvOutputDir+"="+out, EnvItemID+"="+it.ID, EnvAttempt+"="+strconv.Itoa(it.Attempt))
	cmd.SysProcAttr = groupAttr()
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = w.cfg.killGrace
	stderr := &tailWriter{max: 4096}
	cmd.Stdout = &lineLogger{log: log, stream: "stdout"}
	cmd.Stderr = multiWriter{&lineLogger{log: log, stream: "stderr"}, stderr}
	if err := cmd.Start(); err != nil {
		return Permanent(fmt.Errorf("start %s: %w", w.argv[0], err))
	}
	err = cmd.Wait()
	_ = killGroup(cmd) // anything the command left running in its group
	cmd.Stdout.(*lineLogger).flush()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("command killed: %w", context.Cause(ctx))
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Code: ee.ExitCode(), Stderr: stderr.String()}
	}
	return fmt.Errorf("wait: %w", err)
}

// workDirPrefix starts the name of every work directory, and only theirs: sweepWorkDirs removes
// nothing else.
const workDirPrefix = "podblocks-item-"

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
