package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Action is what a Reloader does after the watched content changed, and what a Syncer's hooks do
// after a publish. It is retried with backoff until it returns nil.
type Action func(ctx context.Context) error

// SignalPID returns an Action sending sig to the process with the given PID (in a pod: a container
// sharing the PID namespace). When there is no such process the Action returns an error wrapping
// ErrNoProcess (a Reloader, or a Syncer running it as a hook, logs and counts it, and does not
// retry), and from then on signals nothing, returning that error again: the process has exited, and
// the PID, once reused, names another process. A sig of 0 sends nothing and only checks that the
// process exists and may be signalled, as kill(2) does. Where processes cannot be signalled
// (Windows) the Action returns an error wrapping errors.ErrUnsupported. A pid of 0 or less names no
// one process (kill(2) would signal a process group, or every process the caller may signal): the
// Action signals nothing and returns a *ConfigError.
func SignalPID(pid int, sig syscall.Signal) Action {
	if pid <= 0 {
		err := &ConfigError{Field: "SignalPID", Reason: fmt.Sprintf("pid %d: want a positive process ID", pid)}
		return func(context.Context) error { return err }
	}
	var exited atomic.Bool
	gone := fmt.Errorf("signal %d: %w", pid, pidExited{pid})
	return func(context.Context) error {
		if exited.Load() {
			return gone
		}
		err := signalProcess(pid, sig)
		switch {
		case errors.Is(err, syscall.ESRCH):
			exited.Store(true)
			return gone
		case err != nil:
			return fmt.Errorf("signal %d: %w", pid, err)
		}
		return nil
	}
}

// pidExited is SignalPID's error once its process has exited: it wraps ErrNoProcess.
type pidExited struct{ pid int }

func (e pidExited) Error() string {
	return fmt.Sprintf("process %d has exited, and is not signalled again (its PID may name another process by now): %v", e.pid, ErrNoProcess)
}

func (pidExited) Unwrap() error { return ErrNoProcess }

// SignalName returns an Action sending sig to every process whose executable name (the base name of
// argv[0], or the kernel's comm) is name, found in procRoot (default "/proc" when empty). The calling
// process is never signalled. When no process has the name, or every one found exited before the
// signal reached it, the Action returns an error wrapping ErrNoProcess (the process may not be up
// yet: a Reloader, or a Syncer running it as a hook, logs and counts it, does not retry, and signals
// again at the next change or publish). A sig of 0 sends
// nothing and only checks, as kill(2) does. Where processes cannot be signalled (Windows) the Action
// returns an error wrapping errors.ErrUnsupported without looking for processes.
func SignalName(procRoot, name string, sig syscall.Signal) Action {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return func(context.Context) error {
		if errNoSignals != nil {
			return errNoSignals
		}
		pids, err := findProcesses(procRoot, name)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return fmt.Errorf("%w: %q", ErrNoProcess, name)
		}
		var errs []error
		gone := 0
		for _, pid := range pids {
			switch err := signalProcess(pid, sig); {
			case errors.Is(err, syscall.ESRCH):
				gone++
			case err != nil:
				errs = append(errs, fmt.Errorf("signal %d: %w", pid, err))
			}
		}
		if gone == len(pids) {
			return fmt.Errorf("%w: %q (exited before the signal)", ErrNoProcess, name)
		}
		return errors.Join(errs...)
	}
}

// findProcesses lists the PIDs in procRoot whose argv[0] base name or comm equals name.
func findProcesses(procRoot, name string) ([]int, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, de := range ents {
		pid, err := strconv.Atoi(de.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join(procRoot, de.Name())
		if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil {
			argv0, _, _ := bytes.Cut(cmdline, []byte{0})
			if len(argv0) > 0 && filepath.Base(string(argv0)) == name {
				pids = append(pids, pid)
				continue
			}
		}
		if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil && strings.TrimSpace(string(comm)) == name {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Webhook returns an Action that sends an HTTP request (method, default POST) to url with client
// (nil: a client with a 30s timeout); any 2xx answer is success.
func Webhook(client *http.Client, method, url string) Action {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	if method == "" {
		method = http.MethodPost
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%w: %s %s: %s", ErrHookStatus, method, url, resp.Status)
		}
		return nil
	}
}

// retry runs a until it succeeds or ctx ends, sleeping b(attempt) between tries.
func retry(ctx context.Context, a Action, b Backoff, onErr func(attempt int, err error)) error {
	for attempt := 1; ; attempt++ {
		err := a(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		onErr(attempt, err)
		t := time.NewTimer(b(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// runAction runs a, retried with backoff (onErr told of each failure) until it succeeds or ctx ends
// (err), except when it fails with ErrNoProcess or one of final: that error is not retried and is
// returned as settled. A signal that reached no process is not retried: a process that starts later
// reads the content as it is then, and one that just started may not handle the signal yet (SIGHUP's
// default terminates it), which a retry would send it at once. The Reloader (with ErrRejected in
// final) and the Syncer's hooks both run theirs so.
func runAction(ctx context.Context, a Action, b Backoff, onErr func(attempt int, err error), final ...error) (settled, err error) {
	err = retry(ctx, func(ctx context.Context) error {
		err := a(ctx)
		settled = nil
		if errors.Is(err, ErrNoProcess) || slices.ContainsFunc(final, func(f error) bool { return errors.Is(err, f) }) {
			settled = err
			return nil
		}
		return err
	}, b, onErr)
	return settled, err
}

// ErrRejected, wrapped in a Reloader action's error, says the action refused the content (a
// configuration that does not parse): the Reloader does not retry it, and does not count it
// applied; it logs it, counts it (result "rejected" of podblocks_sidecar_reloader_reloads_total),
// and runs the action again at the next change.
var ErrRejected = errors.New("sidecar: content rejected")

// Reloader watches files and directories, including Kubernetes' AtomicWriter layout (ConfigMap and
// Secret volumes, where an update swaps the ..data symlink), and runs an Action when their content
// changed. It watches the directories themselves (so symlink swaps and editors' rename-over are seen)
// and compares a hash of the content, so spurious events cause no reload; a missed event is caught by
// the periodic rescan (WithPollInterval). Changes are debounced (WithDebounce); the action is retried
// with backoff until it succeeds (for example until the application's reload endpoint is up), except
// when it fails with ErrNoProcess: a signal that reached no process is logged, counted (result
// "no_process" of podblocks_sidecar_reloader_reloads_total) and not retried, since a process that
// starts later reads the content as it is then, and one that just started may not handle the signal
// yet (SIGHUP's default is to terminate it); the next change signals again (SignalName), or, for a
// SignalPID whose process has exited, nothing again (the log says so). Nor is an action that
// rejects the content (ErrRejected) retried: the next change runs it again.
//
// A path may not exist yet when Run starts (an optional ConfigMap key, a file under a Syncer's link
// before its first publish): Run logs a warning for it ("does not exist yet"), shows it in Statusz
// ("paths not found"), and its appearance is a change that reloads. A path removed later is a
// change too.
//
// The directories watched are each path that is a directory and the directory of each other one
// (for a symlink to a file, the target's directory too); for one that does not exist, its nearest existing ancestor, whose change shows it appearing; and
// the directory holding each symlink met on the way to a path, where a swap of the link shows: for
// a Syncer's link, the root, whether the path is the link, a file under it, or one in a directory
// under it, so each publish is seen at once and the revision it published is watched from then on;
// for an AtomicWriter volume, the volume, where its ..data link is. A directory is watched once,
// by its path with symlinks resolved, however many paths need it. The watches are checked after
// every event and rescan: a directory removed or renamed away and made anew is watched again as soon
// as an event or the rescan shows it back (inotify drops a watch with the directory it is on), and a
// watch no path needs any more is removed.
type Reloader struct {
	paths  []string
	action Action
	o      options
	log    *zap.Logger
	m      *actionMetrics
	ready  chan struct{}

	mu       sync.Mutex
	applied  string
	reloads  uint64
	missed   uint64   // changes whose signal reached no process
	missing  []string // paths that did not exist at the last check
	lastErr  string
	lastTime time.Time
}

// NewReloader returns a Reloader for paths (files or directories) running action. Options:
// WithDebounce, WithPollInterval (rescan period, default 500ms), WithoutWatch, WithBackoff,
// WithLogger, WithRegisterer.
func NewReloader(paths []string, action Action, opts ...Option) (*Reloader, error) {
	if len(paths) == 0 {
		return nil, &ConfigError{Field: "paths", Reason: "none given"}
	}
	if action == nil {
		return nil, ErrNoAction
	}
	o := buildOptions(opts)
	if o.pollInterval <= 0 || o.debounce < 0 {
		return nil, &ConfigError{Field: "WithPollInterval/WithDebounce", Reason: "must be positive"}
	}
	clean := make([]string, len(paths))
	for i, p := range paths {
		clean[i] = filepath.Clean(p)
	}
	return &Reloader{paths: clean, action: action, o: o, log: o.logger.Named("reloader"),
		m: newActionMetrics(o.registerer, "reloader_reloads",
			result{"ok", "the action succeeded"}, result{"no_process", "its signal reached no process; not retried"},
			result{"rejected", "the action rejected the content (ErrRejected); not retried"}), ready: make(chan struct{})}, nil
}

// Ready is closed once the watches are set and the initial content is hashed.
func (r *Reloader) Ready() <-chan struct{} { return r.ready }

// Reloads returns how many reloads succeeded.
func (r *Reloader) Reloads() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloads
}

// Statusz reports the content hash applied last and the reload count.
func (r *Reloader) Statusz() (string, []string, [][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := ""
	if !r.lastTime.IsZero() {
		last = r.lastTime.UTC().Format(time.RFC3339)
	}
	return "sidecar reloader", []string{"key", "value"}, [][]string{
		{"paths", strings.Join(r.paths, ",")},
		{"paths not found", strings.Join(r.missing, ",")},
		{"content", r.applied},
		{"reloads", strconv.FormatUint(r.reloads, 10)},
		{"signals that reached no process", strconv.FormatUint(r.missed, 10)},
		{"last reload", last},
		{"last error", r.lastErr},
	}
}

// Run watches until ctx ends and returns nil. The content present at start is the baseline: it does
// not trigger a reload. A path that does not exist yet is logged, shown in Statusz, and watched
// for: its appearance is a change.
func (r *Reloader) Run(ctx context.Context) error {
	r.noteMissing(true)
	var events chan fsnotify.Event
	var werrs chan error
	var w *fsnotify.Watcher
	var ws *watchSet
	if !r.o.noWatch {
		var err error
		if w, err = fsnotify.NewWatcher(); err != nil {
			r.log.Warn("inotify unavailable, polling", zap.Error(err))
			w = nil
		} else {
			defer w.Close()
			ws = &watchSet{w: w, dirs: map[string]os.FileInfo{}, failed: map[string]bool{}}
			r.watch(ws)
			events, werrs = w.Events, w.Errors
		}
	}
	current := r.hash()
	r.mu.Lock()
	r.applied = current
	r.mu.Unlock()
	close(r.ready)

	poll := time.NewTicker(r.o.pollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	// A debounce pending since the first event of a burst holds the rescan back: a file written in
	// steps is read once it is still, not between two steps. Events that never stop (another file
	// in the directory written all the time) hold it back for less than a debounce and two poll
	// intervals (the first tick a debounce and a poll interval after the burst began).
	var pending time.Time
	for {
		check := false
		select {
		case <-ctx.Done():
			return nil
		case <-events:
			debounce.Reset(r.o.debounce)
			if pending.IsZero() {
				pending = time.Now()
			}
		case err := <-werrs:
			r.log.Warn("inotify error", zap.Error(err))
		case <-poll.C:
			check = pending.IsZero() || time.Since(pending) >= r.o.debounce+r.o.pollInterval
		case <-debounce.C:
			check = true
		}
		if check {
			pending = time.Time{}
		}
		if !check {
			continue
		}
		if ws != nil {
			// Before the hash: what changes after a directory is watched again is seen; what changed
			// before is in the hash.
			r.watch(ws)
		}
		h := r.hash()
		if h == current {
			continue
		}
		current = h
		r.noteMissing(false)
		settled, err := runAction(ctx, r.action, r.o.backoff, func(attempt int, err error) {
			r.m.tries.Inc()
			r.mu.Lock()
			r.lastErr = err.Error()
			r.mu.Unlock()
			r.log.Warn("reload action", zap.Int("attempt", attempt), zap.Error(err))
		}, ErrRejected)
		if err != nil {
			return nil // ctx ended
		}
		if rejected := settled; errors.Is(rejected, ErrRejected) {
			r.m.runs.WithLabelValues("rejected").Inc()
			r.mu.Lock()
			r.lastErr = rejected.Error()
			r.mu.Unlock()
			r.log.Warn("reload action rejected the content, the next change runs it again",
				zap.String("content", h), zap.Error(rejected))
			continue
		}
		if nobody := settled; nobody != nil {
			r.m.runs.WithLabelValues("no_process").Inc()
			r.mu.Lock()
			r.lastErr, r.missed = nobody.Error(), r.missed+1
			missed := r.missed
			r.mu.Unlock()
			msg := "reload signal reached no process, the next change signals again"
			if errors.As(nobody, new(pidExited)) {
				msg = "reload signal reached no process: it has exited, and is not signalled again"
			}
			r.log.Warn(msg, zap.String("content", h), zap.Uint64("missed", missed), zap.Error(nobody))
			continue
		}
		r.m.runs.WithLabelValues("ok").Inc()
		r.log.Info("reloaded", zap.String("content", h))
		r.mu.Lock()
		r.applied, r.lastErr, r.lastTime = h, "", time.Now()
		r.reloads++
		r.mu.Unlock()
	}
}

// watchSet is the directories a Reloader's watcher watches, each by the path it was added with (with
// symlinks resolved) and what it was then, and those whose watch could not be added (logged once).
type watchSet struct {
	w      *fsnotify.Watcher
	dirs   map[string]os.FileInfo
	failed map[string]bool
}

// watch makes ws watch the directories the paths need now (watchDir, and the directories holding
// the symlinks met on the way to a path: linkDirs). A directory is watched once, under its path with
// symlinks resolved, however many paths need it: inotify has one watch per directory, and the
// watcher knows it by the first path it was added with, so a watch added through a symlink and
// removed when the symlink moved on would drop it for every other path too. A watch whose
// directory no path needs any more, or that is gone or another directory now (removed or renamed
// away and made anew: the watch went with the old one), is removed, and what is needed and not
// watched is added.
func (r *Reloader) watch(ws *watchSet) {
	// A watch the kernel dropped (its directory removed) is no longer in the watcher's list: the
	// directory made anew at the path may have the old one's inode number (ext4 reuses it at
	// once), so the stat comparison below would take it for the one watched.
	live := map[string]bool{}
	for _, d := range ws.w.WatchList() {
		live[d] = true
	}
	for dir := range ws.dirs {
		if !live[dir] {
			delete(ws.dirs, dir)
		}
	}
	var need []string
	needs := map[string]os.FileInfo{}
	add := func(dir string) {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return // gone again: the next check looks further up
		}
		// Looked at before the watch is added: if the directory is replaced in between, the watch
		// is on the new one and the next check adds it again; the other way round it would stay on
		// the old one.
		fi, err := os.Stat(real)
		if err != nil || !fi.IsDir() || needs[real] != nil {
			return
		}
		need = append(need, real)
		needs[real] = fi
	}
	for _, p := range r.paths {
		add(watchDir(p))
		if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
			add(watchDir(real)) // a symlink to a file elsewhere: its target's directory
		}
		for _, d := range linkDirs(p) {
			add(d)
		}
	}
	for dir, fi := range ws.dirs {
		if now, err := os.Stat(dir); !holdsSame(needs, fi) || err != nil || !os.SameFile(fi, now) {
			_ = ws.w.Remove(dir) // the watcher dropped it already when the directory went
			delete(ws.dirs, dir)
		}
	}
	for _, dir := range need {
		// Watched already under another path (a bind mount): one watch is enough.
		if fi := needs[dir]; !holdsSame(ws.dirs, fi) {
			if err := ws.w.Add(dir); err != nil {
				if !ws.failed[dir] {
					ws.failed[dir] = true
					r.log.Warn("watch, polling instead", zap.String("dir", dir), zap.Error(err))
				}
				continue
			}
			delete(ws.failed, dir)
			ws.dirs[dir] = fi
		}
	}
}

// holdsSame reports whether m holds a directory that is fi (os.SameFile).
func holdsSame(m map[string]os.FileInfo, fi os.FileInfo) bool {
	for _, d := range m {
		if os.SameFile(d, fi) {
			return true
		}
	}
	return false
}

// linkDirs returns the directories, with symlinks resolved, that hold a symlink met when p is
// resolved, in the order met: a symlink swapped for another (a rename over it: a Syncer's publish,
// a Kubernetes ConfigMap update of its ..data link) is seen there, for p itself and for a path
// under the link alike. It stops where the path does not exist.
func linkDirs(p string) []string {
	p, err := filepath.Abs(p)
	if err != nil {
		return nil
	}
	sep := string(filepath.Separator)
	vol := filepath.VolumeName(p)
	dir, rest := vol+sep, strings.TrimPrefix(p[len(vol):], sep)
	var dirs []string
	for links := 0; rest != ""; {
		var name string
		name, rest, _ = strings.Cut(rest, sep)
		switch name {
		case "", ".":
			continue
		case "..":
			dir = filepath.Dir(dir)
			continue
		}
		next := filepath.Join(dir, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return dirs
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			dir = next
			continue
		}
		if links++; links > 40 { // ELOOP
			return dirs
		}
		dirs = append(dirs, dir)
		target, err := os.Readlink(next)
		if err != nil {
			return dirs
		}
		if filepath.IsAbs(target) {
			tvol := filepath.VolumeName(target)
			dir, target = tvol+sep, strings.TrimPrefix(target[len(tvol):], sep)
		}
		rest = strings.TrimSuffix(target+sep+rest, sep)
	}
	return dirs
}

// watchDir is the directory to watch for path p: p itself when it is a directory, else the nearest
// of its ancestors that is one (its own directory when that exists).
func watchDir(p string) string {
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return p
	}
	for d := filepath.Dir(p); ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() || filepath.Dir(d) == d {
			return d
		}
	}
}

// noteMissing records which paths do not exist (shown in Statusz), logging each at start.
func (r *Reloader) noteMissing(start bool) {
	var missing []string
	for _, p := range r.paths {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
			if start {
				r.log.Warn("watched path does not exist yet; a change is reported when it appears", zap.String("path", p), zap.Error(err))
			}
		}
	}
	r.mu.Lock()
	r.missing = missing
	r.mu.Unlock()
}

// hash digests the content of the watched paths. Directories are read through symlinks; entries
// named "..*" (AtomicWriter's internals) are skipped, their content is reached through the visible
// names. Missing paths hash as absent.
func (r *Reloader) hash() string {
	h := sha256.New()
	for _, p := range r.paths {
		fmt.Fprintf(h, "%s\x00", p)
		hashPath(h, p, 0)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func hashPath(h hash.Hash, p string, depth int) {
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		io.WriteString(h, "absent\x00")
	case fi.Mode().IsRegular():
		f, err := os.Open(p)
		if err != nil {
			io.WriteString(h, "unreadable\x00")
			return
		}
		fmt.Fprintf(h, "file %d\x00", fi.Size())
		_, _ = io.Copy(h, f)
		f.Close()
	case fi.IsDir() && depth < 8:
		ents, err := os.ReadDir(p)
		if err != nil {
			io.WriteString(h, "unreadable\x00")
			return
		}
		names := make([]string, 0, len(ents))
		for _, de := range ents {
			if !strings.HasPrefix(de.Name(), "..") {
				names = append(names, de.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(h, "entry %s\x00", n)
			hashPath(h, filepath.Join(p, n), depth+1)
		}
	}
}

// Exec returns an Action running the program path with args; exit status 0 is success. Its output is
// discarded, except that the first KiB of it is part of the error.
//
// The program runs in a process group of its own (where there are process groups: not on Windows).
// Its run ends when the program's own process exits: what it left running in its group (a shell's
// background jobs, `cmd &`) is killed then, as the workqueue's ExecWorker does, and the run does
// not wait for it to close the output. When ctx ends (a newer publish, a stop), the whole group is
// killed. A process that leaves the group (setsid, a daemon) is killed only if it has not left it
// yet when the group is killed: the kill races its setsid, so a `setsid cmd &` started just before
// the program exits may or may not be killed. One that escaped is left running; the run waits at
// most 2 s for it to close the output. So a hook that must start something lasting hands it to the
// application (a signal, a webhook) instead of running it in the background. On Windows only the
// program's own process is killed, when ctx ends; what it started is left running.
func Exec(path string, args ...string) Action {
	return func(ctx context.Context) error {
		out, err := newGroupCmd(ctx, path, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("exec %s: %w: %s", path, err, bytes.TrimSpace(out[:min(len(out), 1024)]))
		}
		return nil
	}
}
