package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Source fetches content for a Syncer.
type Source interface {
	// Fetch compares the remote version with have (the version published now, "" for none). When it
	// differs, Fetch writes the content into dir (existing and empty) and returns the new version;
	// when it is the same it returns have and writes nothing.
	Fetch(ctx context.Context, have, dir string) (version string, err error)
}

// GitSource fetches a branch, tag or commit of a git repository with the git binary (shallow fetch
// into a bare cache repository, then git archive), so it works with every URL and credential helper
// git itself supports. Each git command runs in a process group of its own: when the fetch's ctx
// ends, the group is killed, the transport's processes (ssh, a remote helper) with it, so that a
// hung transport does not hold the fetch, nor the Syncer's stop.
type GitSource struct {
	Repo  string // anything git fetch accepts: URL or local path
	Ref   string // branch, tag or commit; empty: HEAD
	Cache string // bare cache repository; empty: ROOT/.git-cache (set by the Syncer)
}

// Fetch implements Source.
func (g *GitSource) Fetch(ctx context.Context, have, dir string) (string, error) {
	if g.Cache == "" {
		return "", &ConfigError{Field: "GitSource.Cache", Reason: "empty"}
	}
	if _, err := os.Stat(filepath.Join(g.Cache, "HEAD")); err != nil {
		if out, err := git(ctx, "", "init", "--bare", "-q", g.Cache); err != nil {
			return "", fmt.Errorf("git init: %w: %s", err, out)
		}
	}
	ref := g.Ref
	if ref == "" {
		ref = "HEAD"
	}
	if out, err := git(ctx, g.Cache, "fetch", "-q", "--depth=1", "--no-tags", g.Repo, "+"+ref+":refs/podblocks/sync"); err != nil {
		return "", fmt.Errorf("git fetch: %w: %s", err, out)
	}
	out, err := git(ctx, g.Cache, "rev-parse", "refs/podblocks/sync^{commit}")
	if err != nil {
		return "", fmt.Errorf("git rev-parse: %w: %s", err, out)
	}
	version := strings.TrimSpace(out)
	if version == have {
		return have, nil
	}
	cmd := newGroupCmd(ctx, "git", "-C", g.Cache, "archive", "--format=tar", version)
	cmd.Env = gitEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("git archive: %w", err)
	}
	xerr := extractTar(stdout, dir)
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("git archive: %w: %s", err, stderr.String())
	}
	if xerr != nil {
		return "", xerr
	}
	return version, nil
}

func gitEnv() []string {
	return append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := newGroupCmd(ctx, "git", args...)
	cmd.Env = gitEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// HTTPArchiveSource fetches a tar or tar.gz archive over HTTP(S). The version is the response's
// ETag when there is one (sent back as If-None-Match, so an unchanged archive costs a 304), else the
// SHA-256 of the body.
type HTTPArchiveSource struct {
	URL    string
	Client *http.Client // nil: a client with a 5 minute timeout
}

// Fetch implements Source.
func (h *HTTPArchiveSource) Fetch(ctx context.Context, have, dir string) (string, error) {
	client := h.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return "", fmt.Errorf("archive request: %w", err)
	}
	if strings.HasPrefix(have, `"`) || strings.HasPrefix(have, `W/"`) {
		req.Header.Set("If-None-Match", have)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("get archive: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return have, nil
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("get archive: %w %s", ErrFetchStatus, resp.Status)
	}
	etag := resp.Header.Get("ETag")
	if etag != "" && etag == have {
		return have, nil
	}
	sum := sha256.New()
	if err := extractTar(io.TeeReader(io.LimitReader(resp.Body, maxArchiveBytes), sum), dir); err != nil {
		return "", err
	}
	_, _ = io.Copy(sum, io.LimitReader(resp.Body, maxArchiveBytes)) // trailing padding
	if etag != "" {
		return etag, nil
	}
	version := "sha256:" + hex.EncodeToString(sum.Sum(nil))
	return version, nil
}

// Syncer keeps ROOT/LINK (default ROOT/current) pointing at the latest content of a Source: each
// version is fetched into its own directory and published by an atomic symlink swap, so readers see
// either the old or the new tree, never a mix. After each publish, and once at startup for content
// already published by a previous run, the hooks run in the order given, each retried with backoff
// until it succeeds (a newer publish replaces the pending hook run), except a signal that reached
// no process (ErrNoProcess, from SignalPID or SignalName): it is logged, not retried (the process
// may have just started and not handle the signal yet), and the run is counted with result
// "no_process" of podblocks_sidecar_syncer_hooks_total; the hooks after it still run. Syncs happen at start, every
// WithInterval (default 1m; 0: never), on Trigger, and on HTTP POST to the Syncer as a handler.
// An Exec hook runs in a process group of its own (not on Windows): what it starts in the
// background (`cmd &`) is killed when the hook's own process exits, so a hook cannot leave a
// server running. One that leaves the group (setsid, a daemon) may or may not be killed: the kill
// races its setsid. A hook that must start something lasting hands it to the application (a
// signal, a webhook).
//
// The content is readable by other users (a web server's workers, another container's user) as
// mkdir(1) and the archive make it: directories 0755, files 0644, or 0755 when executable in the
// archive, each less the Syncer's umask (git records no other modes). A revision published
// 0700 by an older Syncer is given that mode when Run finds it. A link Run finds pointing at
// anything but a revision directory of the root (a symlink, a path out of it) is left alone and
// replaced by the first publish.
//
// The link is the Syncer's: a sync that finds it removed, dangling, replaced by a file, or pointing
// at anything but the published version's revision fetches that content anew and publishes it
// again (counted "published", and the hooks run), even when the source has nothing new. So a
// change made to the link by hand, a rollback to an older revision included, is undone by the next
// sync (at the next interval at the latest), which publishes the source's content again and runs
// the hooks: to roll back, roll the source back (or stop the Syncer). A directory at the link's
// path (not a symlink) is not replaced: a publish cannot swap a symlink in for it atomically, and
// it may hold someone's data. Each sync then fails without fetching (counted "error", logged once
// with the path) until the directory is removed or moved away. A publish that fails leaves nothing
// behind: the revision it made, its version file and the temporary link are removed.
//
// Each fetch goes into a directory ROOT/.fetch-<random>, renamed to the revision when it is
// published and removed otherwise; a Syncer killed mid-fetch cannot remove it. A fetch holds its
// directory locked (flock(2)), so Run, as it starts, removes the .fetch- directories of its root
// that no fetch holds and that were not modified for 10 minutes (the lock may not be seen by
// another node: see One Syncer per root): real directories only (a symlink of that name is left alone, nothing is
// followed), named as this version names them (not the os.MkdirTemp names of older Syncers, which
// locked nothing), never a revision. Where there is no flock(2) (Windows), or the file system
// cannot lock (ENOLCK, EOPNOTSUPP: fetches then go unlocked, logged once), they are left. A fetch
// publishes only the very directory it made: one removed meanwhile (by another Syncer), even if
// made anew at its path, fails the sync, retried as any failed sync.
//
// # One Syncer per root
//
// Two Syncers on one root (two replicas sharing a volume, a Syncer started twice) would each prune
// the other's revisions, and swap the link back and forth. So Run holds the lock file
// ROOT/.podblocks-syncer.lock (flock(2), released by the kernel when the process dies, SIGKILL
// included) while it runs, with the holder (pid, host name, start time) written in it, and a
// second Run on the root returns a *RootInUseError naming them, whatever its link name, in this
// process or another. A lock file Run may not write (left by another user: an init container run
// as root, a changed runAsUser) or on a read-only root is locked read-only, and the holder is not
// written then (a refused Run names the one written last, or none). On NFS, Linux emulates flock(2)
// with whole-file fcntl(2) locks the server sees, so Syncers on two nodes are refused too, unless the
// mount is local_lock=flock, local_lock=all or nolock (then the lock is local to a node, and Syncers
// on two nodes are not refused); an exclusive lock there needs a writable file, so one locked
// read-only is not locked. Where the file system cannot lock (ENOLCK, EOPNOTSUPP), or the lock file
// cannot be opened at all (a read-only root without one), Run logs that it runs unlocked; where
// there is no flock(2) (Windows) nothing is locked.
type Syncer struct {
	root    string
	link    string
	src     Source
	hooks   []Action
	o       options
	log     *zap.Logger
	m       *prometheus.CounterVec // a failed sync is not retried: the next interval tries again
	hm      *actionMetrics
	trigger chan struct{}
	ready   chan struct{}
	once    sync.Once

	noLockOnce  sync.Once // logs that fetch directories cannot be locked
	linkBlocked bool      // the last sync found a directory at the link's path (Run's goroutine only)

	mu        sync.Mutex
	version   string
	syncs     uint64
	hooked    string // version the hooks last completed for
	lastErr   string
	lastSync  time.Time
	published uint64
}

// WithHooks sets the Syncer's post-publish hooks, run in this order.
func WithHooks(hooks ...Action) Option {
	return optionFunc(func(o *options) { o.hooks = append(o.hooks, hooks...) })
}

// WithLinkName sets the name of the published symlink under the root (default "current").
func WithLinkName(name string) Option {
	return optionFunc(func(o *options) { o.linkName = name })
}

// NewSyncer returns a Syncer publishing src under root. Options: WithInterval, WithHooks,
// WithLinkName, WithBackoff, WithLogger, WithRegisterer. A GitSource without Cache gets
// ROOT/.git-cache.
func NewSyncer(root string, src Source, opts ...Option) (*Syncer, error) {
	if root == "" {
		return nil, &ConfigError{Field: "root", Reason: "empty"}
	}
	if src == nil {
		return nil, &ConfigError{Field: "source", Reason: "nil"}
	}
	o := buildOptions(opts)
	name := o.linkName
	if name == "" {
		name = "current"
	}
	if strings.ContainsRune(name, filepath.Separator) || strings.HasPrefix(name, ".") {
		return nil, &ConfigError{Field: "WithLinkName", Reason: fmt.Sprintf("%q: want a plain name", name)}
	}
	if o.interval < 0 {
		return nil, &ConfigError{Field: "WithInterval", Reason: "negative"}
	}
	if g, ok := src.(*GitSource); ok && g.Cache == "" {
		g.Cache = filepath.Join(root, ".git-cache")
	}
	return &Syncer{root: root, link: filepath.Join(root, name), src: src, hooks: o.hooks, o: o,
		log: o.logger.Named("syncer"), m: newResultCounter(o.registerer, "syncer_syncs", result{"published", "new content is current"},
			result{"unchanged", "the source had nothing new"}, result{"error", "the sync failed"}),
		hm: newActionMetrics(o.registerer, "syncer_hooks", result{"ok", "every hook ran"},
			result{"no_process", "a hook's signal reached no process; not retried"}),
		trigger: make(chan struct{}, 1), ready: make(chan struct{})}, nil
}

// Ready is closed once content is published (by this run or, found at start, by a previous one).
func (s *Syncer) Ready() <-chan struct{} { return s.ready }

// Trigger asks for a sync now; triggers while one is pending coalesce.
func (s *Syncer) Trigger() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// ServeHTTP triggers a sync on POST (answering 202) and reports the published version on GET.
func (s *Syncer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		s.Trigger()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "sync triggered\n")
	case http.MethodGet, http.MethodHead:
		io.WriteString(w, s.Version()+"\n")
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "use POST to trigger a sync", http.StatusMethodNotAllowed)
	}
}

// Version returns the published version ("" before the first publish).
func (s *Syncer) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// HookedVersion returns the version whose hooks last all succeeded.
func (s *Syncer) HookedVersion() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hooked
}

// Statusz reports the published version and the last sync.
func (s *Syncer) Statusz() (string, []string, [][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := ""
	if !s.lastSync.IsZero() {
		last = s.lastSync.UTC().Format(time.RFC3339)
	}
	return "sidecar syncer", []string{"key", "value"}, [][]string{
		{"link", s.link},
		{"version", s.version},
		{"hooks done for", s.hooked},
		{"syncs", strconv.FormatUint(s.syncs, 10)},
		{"publishes", strconv.FormatUint(s.published, 10)},
		{"last sync", last},
		{"last error", s.lastErr},
	}
}

const revPrefix = ".rev-"

// rootLock is the name of the lock file a running Syncer holds in its root.
const rootLock = ".podblocks-syncer.lock"

// Run syncs until ctx ends and returns nil; it returns an error only when the root cannot be created
// or locked: a *RootInUseError when another Syncer runs on it (see Syncer).
func (s *Syncer) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return fmt.Errorf("syncer root: %w", err)
	}
	host, _ := os.Hostname()
	unlock, noLock, err := lockRoot(s.root, fmt.Sprintf("pid %d host %s since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339)))
	if ue := (*RootInUseError)(nil); errors.As(err, &ue) {
		return err
	} else if err != nil {
		return fmt.Errorf("syncer root %s: %w", s.root, err)
	}
	defer unlock()
	if noLock != nil {
		s.log.Warn("the root's lock file is not locked: a second Syncer on this root is not refused",
			zap.String("root", s.root), zap.Error(noLock))
	}
	s.sweepFetchDirs()
	hookCh := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.runHooks(ctx, hookCh)
	}()
	defer wg.Wait()

	if target, err := os.Readlink(s.link); err == nil {
		v, err := s.foundRevision(target)
		if err != nil {
			s.log.Warn("published link ignored, fetching anew", zap.String("link", s.link), zap.Error(err))
		} else {
			s.openUp(target)
			s.mu.Lock()
			s.version = v
			s.mu.Unlock()
			s.markReady()
			s.log.Info("found published content, running hooks for it", zap.String("version", v))
			sendLatest(hookCh, v)
		}
	}
	var tick <-chan time.Time
	if s.o.interval > 0 {
		t := time.NewTicker(s.o.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		s.syncOnce(ctx, hookCh)
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		case <-s.trigger:
		}
	}
}

func (s *Syncer) markReady() { s.once.Do(func() { close(s.ready) }) }

// sendLatest replaces a pending value in a one-slot channel.
func sendLatest(ch chan string, v string) {
	for {
		select {
		case ch <- v:
			return
		default:
			select {
			case <-ch:
			default:
			}
		}
	}
}

const versionFile = ".podblocks-version"

// revName names the revision directory of version, fetched at now.
func revName(version string, now time.Time) string {
	sum := sha256.Sum256([]byte(version))
	return revPrefix + hex.EncodeToString(sum[:8]) + "-" + strconv.FormatInt(now.UnixNano(), 36)
}

// isRevName reports whether name has the form revName gives: ".rev-", 16 hex digits, "-", base-36
// digits. So it is a plain name in the root: no separator, no "..".
func isRevName(name string) bool {
	rest, ok := strings.CutPrefix(name, revPrefix)
	if !ok || len(rest) < 18 || rest[16] != '-' {
		return false
	}
	for i, c := range rest {
		switch {
		case i == 16:
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case i > 16 && 'g' <= c && c <= 'z':
		default:
			return false
		}
	}
	return true
}

// foundRevision checks target, what the link points at when Run starts, is a revision directory
// as fetchAndPublish makes it (a real directory, not a symlink, named by revName, in the root), and
// returns its version. Anyone who can write the volume can point the link elsewhere.
func (s *Syncer) foundRevision(target string) (string, error) {
	if !isRevName(target) {
		return "", fmt.Errorf("link target %q: not a revision name (want %s<16 hex digits>-<base-36 digits>, in the root)", target, revPrefix)
	}
	fi, err := os.Lstat(filepath.Join(s.root, target))
	if err != nil {
		return "", fmt.Errorf("link target: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("link target %q: %v, want a directory (not a symlink)", target, fi.Mode().Type())
	}
	data, err := os.ReadFile(filepath.Join(s.root, target+versionFile))
	if err != nil {
		return "", fmt.Errorf("link target's version: %w", err)
	}
	// Written as the version and a newline, by every release: the version is what comes before,
	// exactly as the Source gave it (white space included).
	return strings.TrimSuffix(string(data), "\n"), nil
}

func (s *Syncer) syncOnce(ctx context.Context, hookCh chan string) {
	var have, version string
	err := s.linkPathOurs()
	blocked := err != nil
	if err == nil {
		have = s.linkedVersion()
		version, err = s.fetchAndPublish(ctx, have)
	}
	s.mu.Lock()
	s.syncs++
	s.lastSync = time.Now()
	if err != nil {
		s.lastErr = err.Error()
	} else {
		s.lastErr = ""
	}
	s.mu.Unlock()
	defer func() { s.linkBlocked = blocked }()
	switch {
	case blocked:
		s.m.WithLabelValues("error").Inc()
		if !s.linkBlocked {
			s.log.Warn("the link's path is a directory, not a symlink: nothing is fetched or published until it is removed or moved away, which the Syncer does not do (it may hold someone's data)",
				zap.String("link", s.link), zap.Error(err))
		}
	case err != nil:
		if ctx.Err() == nil {
			s.m.WithLabelValues("error").Inc()
			s.log.Warn("sync", zap.Error(err))
		}
	case version == have:
		s.m.WithLabelValues("unchanged").Inc()
	default:
		s.m.WithLabelValues("published").Inc()
		s.log.Info("published", zap.String("version", version))
		s.markReady()
		sendLatest(hookCh, version)
	}
}

// linkPathOurs returns an error when the link's path is a directory (not a symlink to one): the
// Syncer did not make it, a publish cannot replace it (rename(2) puts a symlink over a file, never
// over a directory), and removing it could lose someone's data; so a sync then fetches nothing,
// since the content could not be published. Anything else there (nothing, a symlink, a file) a
// publish replaces.
func (s *Syncer) linkPathOurs() error {
	fi, err := os.Lstat(s.link)
	if err != nil || fi.Mode()&fs.ModeSymlink != 0 || !fi.IsDir() {
		return nil
	}
	return fmt.Errorf("%s: a directory, not the Syncer's symlink: remove it or move it away for the Syncer to publish", s.link)
}

// linkedVersion returns the version published, as Version does, when the link still names a
// revision directory of it; else "" (the link or the revision was removed, or the link replaced),
// so that the sync fetches the content anew and publishes it again, whatever the source's version.
func (s *Syncer) linkedVersion() string {
	v := s.Version()
	if v == "" {
		return ""
	}
	target, err := os.Readlink(s.link)
	if err == nil {
		var found string
		found, err = s.foundRevision(target)
		if err == nil && found != v {
			err = fmt.Errorf("link target %q: version %q, want %q", target, found, v)
		}
	}
	if err != nil {
		s.log.Warn("published link broken, fetching anew", zap.String("link", s.link), zap.String("version", v), zap.Error(err))
		return ""
	}
	return v
}

// fetchAndPublish fetches into a fresh directory and, if the version changed, swaps the link to it.
func (s *Syncer) fetchAndPublish(ctx context.Context, have string) (string, error) {
	fd, err := mkdirFetch(s.root)
	if err != nil {
		return "", fmt.Errorf("fetch dir: %w", err)
	}
	defer fd.release()
	if fd.noLock != nil {
		s.noLockOnce.Do(func() {
			s.log.Warn("fetch directories cannot be locked here, fetching without the lock: a Syncer starting on this root removes no fetch directory",
				zap.String("root", s.root), zap.Error(fd.noLock))
		})
	}
	tmp := fd.path
	version, err := s.src.Fetch(ctx, have, tmp)
	if err != nil {
		return "", err
	}
	if version == have {
		return have, nil
	}
	// Another Syncer (an older version's sweep, one on another node of a network file system) may
	// have removed the directory meanwhile, and the fetch made a new one at the path, with part of
	// the content: publish only the directory made and held here.
	if err := fd.check(tmp); err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	name := revName(version, time.Now())
	rev := filepath.Join(s.root, name)
	if err := os.Rename(tmp, rev); err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	tmpLink := s.link + ".tmp"
	// Once the content is the revision, a failed publish removes it, its version file and the
	// temporary link: else each failing sync would leave a full copy of the content behind.
	unpublished := func(err error) (string, error) {
		_ = os.RemoveAll(rev)
		_ = os.Remove(rev + versionFile)
		_ = os.Remove(tmpLink)
		return "", fmt.Errorf("publish: %w", err)
	}
	if err := fd.check(rev); err != nil {
		return unpublished(err)
	}
	// The version exactly, and a newline, as every release wrote it (foundRevision).
	if err := os.WriteFile(rev+versionFile, []byte(version+"\n"), 0o644); err != nil {
		return unpublished(err)
	}
	old, _ := os.Readlink(s.link)
	_ = os.Remove(tmpLink)
	if err := os.Symlink(name, tmpLink); err != nil {
		return unpublished(err)
	}
	if err := os.Rename(tmpLink, s.link); err != nil {
		return unpublished(err)
	}
	if d, err := os.Open(s.root); err == nil {
		_ = d.Sync()
		d.Close()
	}
	s.mu.Lock()
	s.version = version
	s.published++
	s.mu.Unlock()
	s.prune(name, old)
	return version, nil
}

const fetchPrefix = ".fetch-"

// fetchNameLen is the length of a fetch directory's name after fetchPrefix: a uint64 in base 36,
// zero-padded. os.MkdirTemp, which the first Syncers used and which locked nothing, gave at most 10
// decimal digits: the sweep tells those apart and never removes one (a Syncer of that version may
// still be fetching into it during a rolling update).
const fetchNameLen = 13

// sweepAge is how long a fetch directory has not been modified before the sweep may remove it. The
// lock tells a live fetch on this node, not always one on another node of a network file system
// (flock(2) is local there on an NFS mount with local_lock=flock or nolock), nor where the lock
// cannot be taken: such a fetch adds entries to its directory
// as it extracts, which updates its mtime, and the HTTP archive source gives up after 5 minutes. A
// fetch whose directory is removed anyway fails (fetchDir.check) instead of publishing.
const sweepAge = 10 * time.Minute

// fetchDir is a directory mkdirFetch made to fetch into.
type fetchDir struct {
	path   string
	held   fs.FileInfo // the directory made (from a descriptor held open where the OS allows it)
	noLock error       // why it is not locked (flock(2) unsupported by the file system), or nil
	unlock func()
}

// release removes the directory, unless it was renamed (published), and unlocks it.
func (d *fetchDir) release() {
	_ = os.RemoveAll(d.path)
	d.unlock()
}

// check returns an error unless path is still the directory mkdirFetch made (not one made anew at
// its path after it was removed).
func (d *fetchDir) check(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("fetch directory: %w", err)
	}
	if !os.SameFile(d.held, fi) {
		return fmt.Errorf("fetch directory %s: removed while fetching, and made anew", path)
	}
	return nil
}

// mkdirFetch makes a new directory in root to fetch into, named .fetch-<random>, with the mode
// os.Mkdir gives (0755 less the umask): it becomes the published revision, which readers running as
// other users (a web server's workers) must be able to enter. os.MkdirTemp would make it 0700. The
// directory is held locked (lockFetchDir) until release, which removes it, unless it was renamed
// (published) meanwhile, and unlocks it. Where the file system cannot lock it, it is used unlocked
// (noLock says why): a cleanup must not keep content from being published.
func mkdirFetch(root string) (*fetchDir, error) {
	var err error
	for range 100 { // names clash only with leftovers of fetches that crashed, by chance
		n := strconv.FormatUint(rand.Uint64(), 36)
		dir := filepath.Join(root, fetchPrefix+strings.Repeat("0", fetchNameLen-len(n))+n)
		err = os.Mkdir(dir, 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var d *fetchDir
		d, err = lockFetchDir(dir) // err stays set when every try ends here
		if errors.Is(err, errFetchDirGone) {
			continue // a starting Syncer's sweep removed it before the lock was taken
		}
		if err != nil {
			_ = os.Remove(dir)
			return nil, err
		}
		return d, nil
	}
	return nil, err
}

// errFetchDirGone is lockFetchDir's answer when the directory was removed, or replaced, before the
// lock was taken.
var errFetchDirGone = errors.New("sidecar: fetch directory removed before it was locked")

// isFetchName reports whether name has the form mkdirFetch gives: ".fetch-" and fetchNameLen
// base-36 digits. So it is a plain name in the root, no revision's, and no os.MkdirTemp name.
func isFetchName(name string) bool {
	rest, ok := strings.CutPrefix(name, fetchPrefix)
	if !ok || len(rest) != fetchNameLen {
		return false
	}
	for _, c := range rest {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// sweepFetchDirs removes the fetch directories in the root left by fetches that were killed: those
// that no fetch holds locked (sweepLock) and that were not modified for sweepAge. It looks at
// nothing but real directories named as mkdirFetch names them, follows no symlink (os.RemoveAll
// does not either), and leaves alone what the link points at.
func (s *Syncer) sweepFetchDirs() {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		s.log.Warn("list the root for leftover fetch directories", zap.String("root", s.root), zap.Error(err))
		return
	}
	published, _ := os.Readlink(s.link)
	for _, de := range ents {
		name := de.Name()
		if !isFetchName(name) || name == published || !de.IsDir() {
			continue
		}
		dir := filepath.Join(s.root, name)
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < sweepAge {
			continue
		}
		unlock, ok := sweepLock(dir, fi)
		if !ok {
			continue // a live fetch's, not ours to lock, or not lockable here
		}
		// Held while removing it, so that a fetch that has just made it waits, sees it gone and
		// makes another.
		err = os.RemoveAll(dir)
		unlock()
		if err != nil {
			s.log.Warn("remove a leftover fetch directory", zap.String("dir", dir), zap.Error(err))
			continue
		}
		s.log.Info("removed a fetch directory left by a killed fetch", zap.String("dir", dir))
	}
}

// openUp gives the revision name (checked by foundRevision), published by a version of the
// Syncer that made revisions 0700 (os.MkdirTemp's mode), the mode a new revision gets, unless that
// is 0700 too (a umask of 077). The chmod goes through a descriptor of the directory itself, opened
// without following a symlink where the OS can (openDirNoFollow) and checked to be the directory
// Lstat saw: the root is shared, and what is there can change between a check and the chmod, so a
// Syncer running as root would otherwise open up wherever a symlink swapped in meanwhile points.
func (s *Syncer) openUp(name string) {
	dir := filepath.Join(s.root, name)
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		return
	}
	probe, err := mkdirFetch(s.root)
	if err != nil {
		return
	}
	pfi, err := os.Lstat(probe.path)
	probe.release()
	if err != nil || pfi.Mode().Perm() == 0o700 {
		return
	}
	err = chmodDir(dir, fi, pfi.Mode().Perm())
	if err != nil {
		s.log.Warn("make the published revision readable", zap.String("dir", dir), zap.Error(err))
		return
	}
	s.log.Info("made the published revision readable", zap.String("dir", dir), zap.Stringer("mode", pfi.Mode().Perm()))
}

// chmodDir sets mode on dir through a descriptor of it, if it is still the directory fi describes.
func chmodDir(dir string, fi fs.FileInfo, mode fs.FileMode) error {
	f, err := openDirNoFollow(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	ffi, err := f.Stat()
	if err != nil {
		return err
	}
	if !ffi.IsDir() || !os.SameFile(fi, ffi) {
		return fmt.Errorf("%s: replaced while being checked", dir)
	}
	return f.Chmod(mode)
}

// prune removes revisions other than the current and the previous one (readers may still be in it).
func (s *Syncer) prune(current, previous string) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return
	}
	for _, de := range ents {
		n := de.Name()
		if !strings.HasPrefix(n, revPrefix) || strings.HasSuffix(n, versionFile) || n == current || n == previous {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.root, n)); err != nil {
			s.log.Warn("remove old revision", zap.String("dir", n), zap.Error(err))
		}
		_ = os.Remove(filepath.Join(s.root, n+versionFile))
	}
}

// runHooks runs the hooks for each version received, in order, each retried until it succeeds; a
// newer version abandons the pending run.
func (s *Syncer) runHooks(ctx context.Context, versions <-chan string) {
	for {
		var v string
		select {
		case <-ctx.Done():
			return
		case v = <-versions:
		}
		for len(s.hooks) > 0 {
			next, done, nobody := s.hookRun(ctx, v, versions)
			if next == "" {
				if done {
					s.mu.Lock()
					s.hooked = v
					s.mu.Unlock()
					result := "ok"
					if nobody {
						result = "no_process"
					}
					s.hm.runs.WithLabelValues(result).Inc()
				}
				break
			}
			v = next
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// hookRun runs every hook for v. It returns a newer version that arrived meanwhile (to run
// instead), or done=true when all hooks are done: succeeded, or (nobody=true for a run where one
// did) sent a signal that reached no process, which is logged and not retried (runAction).
func (s *Syncer) hookRun(ctx context.Context, v string, versions <-chan string) (next string, done, nobody bool) {
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		err    error
		nobody bool
	}
	result := make(chan outcome, 1)
	go func() {
		var out outcome
		for i, h := range s.hooks {
			missed, err := runAction(hctx, h, s.o.backoff, func(attempt int, err error) {
				s.hm.tries.Inc()
				s.log.Warn("hook", zap.Int("hook", i), zap.String("version", v), zap.Int("attempt", attempt), zap.Error(err))
			})
			if err != nil {
				out.err = err
				break
			}
			if missed != nil {
				out.nobody = true
				s.log.Warn("hook signal reached no process, not retried: a process that starts later reads the published content",
					zap.Int("hook", i), zap.String("version", v), zap.Error(missed))
			}
		}
		result <- out
	}()
	select {
	case out := <-result:
		return "", out.err == nil, out.nobody
	case n := <-versions:
		cancel()
		<-result
		return n, false, false
	}
}
