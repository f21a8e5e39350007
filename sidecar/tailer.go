package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Tailer follows the files matching its glob patterns and hands their lines to a Sink.
//
// Files are identified by device and inode (on Windows: volume serial number and file index) plus a
// fingerprint of their first bytes (up to 1 KiB), not by path, so:
//   - a file renamed away from the pattern by rotation (app.log -> app.log.1) is read to its end, from
//     its open descriptor and under its new name, also after a restart;
//   - rotated siblings of a matching file (names matching PATTERN.* or PATTERN-*, except compressed
//     ones) that appear while the Tailer is down are found on restart and read, oldest first, before
//     the file itself; a sibling under 1 KiB written to in the last second (it may be a copy still
//     being written) is read once it settled, and the file waits for it, 5s at most;
//   - an inode reused for a new file is told apart by its fingerprint, and read from its start;
//   - truncation (copytruncate) restarts the file at 0, and the copy, recognised by its fingerprint,
//     is read from where the original had been delivered, so only the lines written between the
//     copy and the truncation are lost (inherent to copytruncate).
//
// NUL bytes at a file's end are taken for space reserved ahead of the writer (fallocate, ftruncate
// up) that it writes its lines into from its start, of any size: they are read once written, or once
// the file has a byte other than NUL after them (a hole, or space a writer reserved and never wrote
// before it crashed, and its restart appended after it), and the fingerprint stops before them. The
// bytes of reserved space beyond one read (WithReadChunkBytes) are checked once, skipping holes
// (SEEK_DATA on Linux), then again only when the file grows or shrinks, or 5s later (see
// unwritten). The writer must fill the space in order: once bytes other than NUL follow NUL bytes,
// those NUL bytes are the file's own (skipped at a line's start, see below), so lines written out of
// order are read (up to 5s late when more than one read past the lines before them), but lines
// written later into the NUL bytes before them are lost, or, within the file's first KiB (its
// fingerprint), taken for a rewrite of the file, which is then read again from its start. With
// WithSpliceFromFile, the lines of a file found to have such space are copied, not spliced: a stage
// of it may hold the space as it was before.
//
// NUL bytes at the start of a line, followed by another byte, are not part of it, however many: the
// Tailer skips them (its offset, and so the checkpoint, moves past them, also inside a run longer
// than one read) and the line starts at the first byte after them that is not NUL, so the first
// line a writer appends after space it never wrote is shipped (an empty line when a newline follows
// the NUL bytes). With WithMultiline such a run ends the record being joined, as a line matching
// the start pattern would, and the line after it starts a record: a writer that crashed and
// restarted does not go on with a record it began before. Each run is logged once (Info, with the
// file and the run's offset and length) and counted in
// podblocks_sidecar_tailer_skipped_total{reason="nul"}; of a run a restart cuts, the restarted
// Tailer logs and counts the rest, from the checkpoint's offset. NUL bytes after other bytes of a line are
// the line's: it is skipped as binary (or over the limit), also when a line the writer had begun
// before it crashed runs into the NUL bytes. Before the Tailer skips NUL bytes, or a line or its
// rest for holding them, it reads them once more: a read can catch a writer filling reserved space
// in the middle of a write, with NUL bytes it was replacing before bytes it wrote next. When they
// changed, the read ends at their line's start and the next one reads the line again (on the next
// poll when nothing before it was read); NUL bytes still NUL then stay so, as the writer fills the
// space from its start (see torn).
//
// A file deleted (or moved out of the watched directories) while the Tailer has it open is read on
// from that descriptor, where a writer holding it open still appends, until it has not grown for the
// grace period (WithDeletedGrace, default 5s) or Run ends, which first reads it up to the size it has
// then (for at most 5s).
//
// With WithCheckpoint, the offsets are committed to a checkpoint file after the sink confirmed
// delivery. With a sink that implements Committer (FileSink), a crash at any moment and a restart
// neither lose nor duplicate lines; with other sinks delivery is at-least-once. The exception is a
// deleted file: a restart cannot open it again, so what was appended to it after the last commit
// (and, with a Committer, what was shipped from it after that commit and is rolled back) is lost,
// and the restart logs it with the file's delivered offset. The Tailer commits right after each batch
// it reads from a deleted file to keep that window short.
//
// On its first start (no checkpoint yet) the Tailer reads matching files from their beginning and
// ignores rotated siblings that already exist.
type Tailer struct {
	globs []string
	dirs  []string
	sink  Sink
	o     options
	block bool // the sink takes blocks of lines in one Record (blockSink)
	raw   bool // the sink writes lines as they are: no line needs JSON escaping checked
	// piece, when not 0, is the most one read call takes (see readPiece): the sink writes
	// synchronously, so nothing else runs while the Tailer reads.
	piece int
	// stager, when set, captures each range of a file before the Tailer reads it (see stager).
	stager stager
	log    *zap.Logger
	m      *tailerMetrics
	ready  chan struct{}

	mu   sync.Mutex
	rows [][]string
}

// NewTailer returns a Tailer for the files matching globs (filepath.Match patterns, wildcards only in
// the last element) delivering to sink. Options: WithCheckpoint, WithPollInterval, WithoutWatch,
// WithMaxLineBytes, WithReadChunkBytes, WithCommitInterval, WithCloseIdle, WithDeletedGrace, WithMultiline,
// WithBackoff (sink retries), WithLogger, WithRegisterer.
func NewTailer(globs []string, sink Sink, opts ...Option) (*Tailer, error) {
	if len(globs) == 0 {
		return nil, ErrNoGlobs
	}
	if sink == nil {
		return nil, ErrNilSink
	}
	o := buildOptions(opts)
	t := &Tailer{sink: sink, o: o, log: o.logger.Named("tailer"), ready: make(chan struct{})}
	seen := map[string]bool{}
	for _, g := range globs {
		g = filepath.Clean(g)
		dir, base := filepath.Split(g)
		dir = filepath.Clean(dir)
		if strings.ContainsAny(dir, "*?[") {
			return nil, &ConfigError{Field: "globs", Reason: fmt.Sprintf("%q: wildcards only in the last element", g)}
		}
		if _, err := filepath.Match(base, ""); err != nil || base == "" {
			return nil, &ConfigError{Field: "globs", Reason: fmt.Sprintf("%q: bad pattern", g)}
		}
		t.globs = append(t.globs, g)
		if !seen[dir] {
			seen[dir] = true
			t.dirs = append(t.dirs, dir)
		}
	}
	switch {
	case o.maxLineBytes <= 0:
		return nil, &ConfigError{Field: "WithMaxLineBytes", Reason: "must be positive"}
	case o.readChunkBytes <= o.maxLineBytes:
		return nil, &ConfigError{Field: "WithReadChunkBytes", Reason: "must exceed the max line length"}
	case o.pollInterval <= 0:
		return nil, &ConfigError{Field: "WithPollInterval", Reason: "must be positive"}
	case o.commitInterval < 0:
		return nil, &ConfigError{Field: "WithCommitInterval", Reason: "must not be negative"}
	case o.deletedGrace < 0:
		return nil, &ConfigError{Field: "WithDeletedGrace", Reason: "must not be negative"}
	}
	if c, ok := sink.(configErr); ok {
		if err := c.configErr(); err != nil {
			return nil, err
		}
	}
	if b, ok := sink.(blockSink); ok {
		t.block, t.raw = true, b.rawOutput()
	}
	if s, ok := sink.(syncSink); ok && s.synchronous() {
		t.piece = readPiece
		if o.multiline == nil { // joined records are not the file's bytes
			if st, ok := sink.(stager); ok && st.splicing() {
				t.stager = st
			}
		}
	}
	t.m = newTailerMetrics(o.registerer)
	return t, nil
}

// Ready is closed once the Tailer restored its checkpoint, scanned its directories and committed its
// first checkpoint.
func (t *Tailer) Ready() <-chan struct{} { return t.ready }

// Statusz reports the tracked files and their delivered offsets.
func (t *Tailer) Statusz() (string, []string, [][]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rows := make([][]string, len(t.rows))
	copy(rows, t.rows)
	return "sidecar tailer", []string{"file", "inode", "delivered", "state"}, rows
}

// tfile is one tracked file.
type tfile struct {
	id       fileID
	path     string
	active   bool // path matches a glob (else a rotated sibling)
	seen     bool // seen by the latest scan
	gone     bool // no longer in the directory: read on for the grace period, then drop
	unlinked bool // its link count was 0: no restart can open it again
	goneAt   time.Time
	f        *os.File
	partial  []byte // bytes after off that do not form a complete line yet
	off      int64  // file offset of the first byte not consumed into a line
	done     int64  // offset up to which lines are delivered
	fp       string
	fpLen    int64
	// head holds the fpLen bytes fp was computed from, so that checking the file's start compares
	// bytes instead of hashing them; nil for a file restored from a checkpoint until its start was
	// checked once against fp.
	head     []byte
	skipping bool // inside an over-long line
	eof      bool // the latest read found no data
	lastData time.Time
	mtime    time.Time
	pend     []byte // multiline record being joined
	pendOff  int64  // offset of pend's first line; -1 when none
	// copyOf is the still untruncated file this one is a copy of (copytruncate in progress): tf waits
	// until that file is truncated, then starts where it had been delivered.
	copyOf *tfile
	// held: an active file not read while a rotated sibling of it, whose lines come first, waits to
	// be discovered (see holdActive), since heldSince (zero when no sibling of it waits).
	held      bool
	heldSince time.Time
	misses    int // consecutive listings that did not show the file
	// nulState is what the Tailer learnt of the file's NUL bytes and holes, which a truncation
	// (reset) forgets at once.
	nulState
	// reserved is set once a read left NUL bytes at its end unread (see unwritten): space that the
	// writer fills in place, which a stage (see stager) may hold as it was before (tmpfs stages a
	// hole or fallocated space as the kernel's shared zero page, which the writer's lines do not
	// change). The file's lines are then copied from the read buffer, not spliced from a stage.
	reserved bool
	// torn: the last read ended at bytes a writer was changing (see torn) having taken nothing, so
	// it returned 0 though the file goes on.
	torn bool
}

// nulState is a tfile's knowledge of its NUL bytes and holes (see tfile.nulState).
type nulState struct {
	// zerosTo, zerosAt: the file's bytes from the end of a full read that ended in NUL bytes up to
	// zerosTo were all NUL at zerosAt (see unwritten). dataAt, when not 0, is the offset of a byte
	// other than NUL found after such a read.
	zerosTo int64
	zerosAt time.Time
	dataAt  int64
	// dataTo: the file's bytes before it were data, not holes, when last checked (see stageable).
	dataTo int64
	// nulFrom, nulTo: the run of NUL bytes at a line's start being skipped (see skipNULs) spans the
	// file's bytes from nulFrom to nulTo; nulTo is 0 when none is.
	nulFrom, nulTo int64
	// keepFrom, keepTo: the file's bytes from keepFrom up to keepTo were data right after findData
	// dropped their pages at keepAt, which it does not do again for keepFor (see findData).
	keepFrom, keepTo int64
	keepAt           time.Time
}

// deferral is a new file whose discovery waits (see discover).
type deferral struct {
	path  string
	since time.Time
	seen  bool // deferred by the latest scan
}

// oldFP remembers a truncated file's fingerprint so that its copy is recognised.
type oldFP struct {
	path  string
	fp    string
	fpLen int64
	// head holds the fpLen bytes fp covers, when known (see tfile.head).
	head []byte
	done int64
	at   time.Time
}

type tailRun struct {
	files      map[fileID]*tfile
	order      []*tfile
	byPath     map[string]*tfile
	truncated  []oldFP
	restored   map[fileID]checkpointEntry
	reported   map[string]bool
	buf        []byte
	fpBuf      []byte // fpMax bytes for reading a file's start
	startReads int    // reads of tracked files' first bytes (start checks, fingerprint updates), which tests count
	zeroBuf    []byte // for checking the bytes after a read (see findData) and NUL bytes read (see torn); see checkBuf
	zeroReads  int64  // bytes read to check that bytes after a read are NUL, which tests count
	rereads    int64  // bytes read again to check NUL bytes read (see torn), which tests count
	dropped    int64  // bytes whose clean pages findData asked the kernel to drop, which tests count
	// readDone, when set, runs right after each read of a file's lines: tests change the file there,
	// as a writer racing the read would.
	readDone   func()
	arena      []byte
	recs       []Record
	dirty      bool
	urgent     bool // a gone file was read from: commit now, a restart cannot read it again
	deferred   bool
	lastCommit time.Time
	// goneDropped is set when a gone file was dropped since the sink last flushed: the sink may
	// still hold its lines (see finishGone).
	goneDropped bool
	// deferrals are the new files the latest scan deferred (see discover), by identity: their path
	// and when a scan first deferred them.
	deferrals map[fileID]*deferral
	// lastTF is the file of the last batch the sink took: a sink whose Flush fails holds the rest of
	// that batch (see partialSink).
	lastTF *tfile
	// stopping is set for Run's last commit, after its final read (see commit).
	stopping bool
	// ckptFailing is when commits began failing to write the checkpoint file (zero while they
	// succeed), ckptLogged when that was last logged (see ckptFailed).
	ckptFailing, ckptLogged time.Time
}

// Run follows the files until ctx ends, then reads the files deleted while open up to the size they
// have then (they cannot be reopened by a restart; this final read gets at most 5s, and what it
// leaves is logged), commits the checkpoint and returns nil. It returns an error when the checkpoint
// cannot be read, its directory cannot be created, its first commit (before Ready) cannot write it,
// or the sink cannot be rolled back.
func (t *Tailer) Run(ctx context.Context) error {
	rs := t.newRun()
	defer func() {
		for _, tf := range rs.files {
			tf.close()
		}
	}()
	if t.stager != nil {
		defer t.stager.unstage()
	}
	first := true
	if t.o.checkpoint != "" {
		// A checkpoint on a fresh volume (an emptyDir) may be in a directory nobody made yet.
		if err := os.MkdirAll(filepath.Dir(t.o.checkpoint), 0o755); err != nil {
			return fmt.Errorf("checkpoint directory: %w", err)
		}
		st, found, err := loadCheckpoint(t.o.checkpoint)
		if err != nil {
			return err
		}
		first = !found
		for _, e := range st.Files {
			if e.Unlinked {
				// Its inode may hold another file by now: never resume anything from this entry.
				t.reportUnlinked(e)
				continue
			}
			rs.restored[fileID{e.Dev, e.Ino}] = e
		}
		if u, ok := t.sink.(partialSink); ok && found {
			u.endTorn(st.SinkTorn)
		}
		if c, ok := t.sink.(Committer); ok && found {
			if err := c.Rollback(st.SinkMark); errors.Is(err, ErrSinkBehind) {
				t.log.Warn("sink shorter than checkpoint mark", zap.Error(err))
			} else if err != nil {
				return fmt.Errorf("roll back sink: %w", err)
			}
		}
	}

	var events chan fsnotify.Event
	var werrs chan error
	if !t.o.noWatch {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			t.log.Warn("inotify unavailable, polling", zap.Error(err))
		} else {
			defer w.Close()
			for _, d := range t.dirs {
				if err := w.Add(d); err != nil {
					t.log.Warn("watch directory, polling it", zap.String("dir", d), zap.Error(err))
				}
			}
			events, werrs = w.Events, w.Errors
		}
	}

	// A file renamed while the directory is listed can be missed: list again before declaring a
	// checkpointed file gone.
	t.scan(rs, first)
	for i := 0; i < 3 && len(rs.restored) > 0 && ctx.Err() == nil; i++ {
		time.Sleep(20 * time.Millisecond)
		t.scan(rs, first)
	}
	for id, e := range rs.restored {
		t.log.Warn("checkpointed file is gone", zap.String("file", e.Path), zap.Int64("offset", e.Offset))
		delete(rs.restored, id)
	}
	rs.dirty = true
	if err := t.commit(rs); err != nil {
		// No checkpoint can be written at all: every restart would ship everything again.
		return err
	}
	close(t.ready)

	tick := time.NewTicker(t.o.pollInterval)
	defer tick.Stop()
	soon := time.NewTimer(time.Hour)
	defer soon.Stop()
	for {
		progress, err := t.readAll(ctx, rs)
		if err != nil {
			break
		}
		if progress {
			if rs.urgent || time.Since(rs.lastCommit) >= t.o.commitInterval {
				t.commit(rs)
			}
			if ctx.Err() != nil {
				break
			}
			continue
		}
		t.idle(ctx, rs)
		wait := time.Duration(-1)
		if rs.dirty {
			if wait = t.o.commitInterval - time.Since(rs.lastCommit); wait <= 0 {
				t.commit(rs)
				wait = -1
			}
		}
		if rs.deferred && (wait < 0 || wait > 100*time.Millisecond) {
			wait = 100 * time.Millisecond
		}
		if wait >= 0 {
			soon.Reset(wait)
		}
		needScan := false
		select {
		case <-ctx.Done():
		case ev := <-events:
			needScan = t.needScan(rs, ev)
		drain:
			for {
				select {
				case ev := <-events:
					needScan = needScan || t.needScan(rs, ev)
				default:
					break drain
				}
			}
		case err := <-werrs:
			t.log.Warn("inotify error", zap.Error(err))
			needScan = true
		case <-tick.C:
			needScan = true
		case <-soon.C:
			needScan = rs.deferred
		}
		if ctx.Err() != nil {
			break
		}
		if needScan {
			t.scan(rs, false)
		}
	}
	// The final read and the commit after it share one budget: a sink writing in the background
	// (a JSON WriterSink) writes the final read's last batch with its ctx until the commit's Flush.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalReadTimeout)
	defer cancel()
	if t.finishGone(fctx, rs) {
		// Lines of gone files read before the stop may still be in the sink (a batch cut off when
		// ctx ended): a restart cannot read them again, so they get the rest of the budget too.
		// Without gone files the commit's Flush does not wait: a restart ships what the sink held.
		if d, ok := t.sink.(drainer); ok {
			_ = d.drain(fctx) // the commit's Flush reports what is left
		}
	}
	rs.dirty, rs.stopping = true, true
	t.commit(rs)
	return nil
}

// reportUnlinked tells, on start, what became of a file that was deleted while the last run read
// it, which no restart can open again: a warning when lines were left in it (its size when the last
// run stopped was past the offset delivered), or may have been (an entry without the size: written
// by a run that was killed before it stopped, or by an older version); else only a debug log.
func (t *Tailer) reportUnlinked(e checkpointEntry) {
	switch {
	case e.Size > e.Offset:
		t.log.Warn("checkpointed file was deleted while open and cannot be reopened: lines after the offset are lost",
			zap.String("file", e.Path), zap.Int64("offset", e.Offset), zap.Int64("size", e.Size))
	case e.Size == 0 && e.Offset == 0:
		t.log.Debug("checkpointed file was deleted while open, empty", zap.String("file", e.Path))
	case e.Size == 0:
		t.log.Warn("checkpointed file was deleted while open and cannot be reopened: lines written to it after the offset may be lost",
			zap.String("file", e.Path), zap.Int64("offset", e.Offset))
	default:
		t.log.Debug("checkpointed file was deleted while open, read to its end", zap.String("file", e.Path),
			zap.Int64("offset", e.Offset))
	}
}

func (t *Tailer) newRun() *tailRun {
	return &tailRun{
		files:    map[fileID]*tfile{},
		byPath:   map[string]*tfile{},
		restored: map[fileID]checkpointEntry{},
		reported: map[string]bool{},
		buf:      make([]byte, t.o.readChunkBytes),
		fpBuf:    make([]byte, fpMax),
	}
}

// finalReadTimeout bounds how long Run, once its context ended, reads and ships the files that are
// gone.
const finalReadTimeout = 5 * time.Second

// finishGone runs when Run is ending: files deleted while open cannot be opened again by a restart,
// so they are read up to the size they had when this final read started (a writer may go on
// appending) and, when that is their end, their last line is shipped even without a newline. It
// stops when ctx ends (Run gives it finalReadTimeout), so Run returns even when the sink is slower
// than the writer; what it leaves unread is logged. It reports whether the sink may hold lines of
// files that are gone: there are such files, or one was dropped since the sink last flushed.
func (t *Tailer) finishGone(fctx context.Context, rs *tailRun) (goneInSink bool) {
	now := time.Now()
	goneInSink = rs.goneDropped
	for _, tf := range rs.order {
		if tf.f == nil || tf.copyOf != nil {
			continue
		}
		t.checkUnlinked(rs, tf, now) // deleted since the last scan
		if !tf.gone {
			continue
		}
		goneInSink = true
		if err := t.finishFile(fctx, rs, tf); err != nil {
			t.log.Warn("ship the rest of a deleted file", zap.String("file", tf.path), zap.Error(err))
			return goneInSink
		}
	}
	return goneInSink
}

// finishFile reads a gone file up to its current size, or until ctx ends, and ships what it holds
// back when that is the file's end.
func (t *Tailer) finishFile(ctx context.Context, rs *tailRun, tf *tfile) error {
	fi, err := tf.f.Stat()
	if err != nil {
		return err
	}
	end := fi.Size()
	for tf.off+int64(len(tf.partial)) < end {
		if err := ctx.Err(); err != nil {
			break
		}
		n, err := t.readOnce(ctx, rs, tf)
		if err != nil {
			return err
		}
		if n == 0 {
			if !tf.torn {
				break
			}
			// Bytes a writer is changing: read them again once it is done, while ctx lasts.
			select {
			case <-ctx.Done():
			case <-time.After(tornRetry):
			}
		}
	}
	if fi, err := tf.f.Stat(); err == nil && fi.Size() > tf.off+int64(len(tf.partial)) && !onlyZeros(rs, tf, fi.Size()) {
		// Not its end: the rest cannot be read by a restart either.
		t.log.Warn("deleted file not read to its end when the Tailer stopped: the lines after the offset are lost",
			zap.String("file", tf.path), zap.Int64("offset", tf.delivered()), zap.Int64("size", fi.Size()),
			zap.Int64("size_at_stop", end), zap.NamedError("reason", ctx.Err()))
		return t.shipRest(ctx, rs, tf, false)
	}
	return t.shipRest(ctx, rs, tf, true)
}

// onlyZeros reports whether tf's bytes from its read offset to size are all NUL bytes: space
// reserved ahead of the writer that readOnce leaves unread (see unwritten), not lines.
func onlyZeros(rs *tailRun, tf *tfile, size int64) bool {
	at, err := findData(rs, tf, tf.off+int64(len(tf.partial)), size)
	return err == nil && at == size
}

// checkUnlinked marks tf gone (and unlinked) when its link count dropped to 0.
func (t *Tailer) checkUnlinked(rs *tailRun, tf *tfile, now time.Time) {
	if tf.f == nil || tf.unlinked {
		return
	}
	if fi, err := tf.f.Stat(); err == nil {
		if _, nlink, ok := fileIdentity(tf.f, fi); ok && nlink == 0 {
			tf.unlinked = true
			t.markGone(rs, tf, now)
		}
	}
}

// markGone starts tf's grace period.
func (t *Tailer) markGone(rs *tailRun, tf *tfile, now time.Time) {
	if tf.gone {
		return
	}
	tf.gone, tf.goneAt = true, now
	rs.dirty = true // Statusz shows it
	t.log.Debug("file gone, reading on until it stops growing", zap.String("file", tf.path),
		zap.Bool("deleted", tf.unlinked), zap.Duration("grace", t.o.deletedGrace))
}

// shipRest delivers what tf still holds back: a multiline record being joined and, when atEnd, its
// last line when it has no newline (tf will not be read again).
func (t *Tailer) shipRest(ctx context.Context, rs *tailRun, tf *tfile, atEnd bool) error {
	rs.recs, rs.arena = rs.recs[:0], rs.arena[:0]
	rest := len(tf.partial)
	if !atEnd {
		rest = 0 // the start of a line whose rest is not read
	}
	pend, pendOff := slices.Clone(tf.pend), tf.pendOff // t.line may change the record being joined
	if tf.f != nil && rest > 0 && !tf.skipping {
		t.line(rs, tf, tf.partial, tf.off, false)
	}
	t.flushPending(rs, tf)
	if err := t.deliver(ctx, rs, tf); err != nil {
		tf.pend, tf.pendOff = append(tf.pend[:0], pend...), pendOff // as before: tried again later
		return err
	}
	if rest > 0 {
		tf.off += int64(rest)
		tf.partial = tf.partial[:0]
	}
	tf.done = tf.delivered()
	rs.dirty = true
	return nil
}

func (t *Tailer) needScan(rs *tailRun, ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Write {
		_, known := rs.byPath[ev.Name]
		return !known
	}
	return ev.Op != fsnotify.Chmod
}

func (tf *tfile) close() {
	if tf.f != nil {
		tf.f.Close()
		tf.f = nil
	}
}

// delivered is the offset up to which the file's lines have reached the sink.
func (tf *tfile) delivered() int64 {
	if tf.pendOff >= 0 {
		return tf.pendOff
	}
	return tf.off
}

// reset restarts tf at offset 0 after truncation or replacement.
func (tf *tfile) reset(rs *tailRun) {
	if tf.fpLen > 0 && tf.done > 0 {
		rs.truncated = append(rs.truncated, oldFP{path: tf.path, fp: tf.fp, fpLen: tf.fpLen, head: slices.Clone(tf.head),
			done: tf.done, at: time.Now()})
	}
	for _, c := range rs.files {
		if c.copyOf == tf {
			// The copy was made before the truncation: what tf delivered past the copy's end was
			// written after the copy, and is not in it. Its offset stays within the copy, or a restart
			// would take the copy for a file truncated while stopped and read it all again.
			start := tf.done
			if c.f != nil {
				if fi, err := c.f.Stat(); err == nil {
					start = min(start, fi.Size())
				}
			}
			c.copyOf, c.off, c.done, c.eof = nil, start, start, false
		}
	}
	tf.off, tf.done, tf.partial, tf.skipping, tf.pend, tf.pendOff = 0, 0, tf.partial[:0], false, tf.pend[:0], -1
	tf.fp, tf.fpLen, tf.head = "", 0, tf.head[:0]
	tf.eof = false
	tf.nulState = nulState{}
	rs.dirty = true
}

type candidate struct {
	path   string
	active bool
	id     fileID
	size   int64
	mtime  time.Time
	f      *os.File // open until a tracked file takes it over
}

var compressedExt = []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".z"}

// classify tells whether name in dir matches a glob (active) or is a rotated sibling of one.
func (t *Tailer) classify(dir, name string) (active, sibling bool) {
	for _, g := range t.globs {
		if filepath.Dir(g) != dir {
			continue
		}
		base := filepath.Base(g)
		if ok, _ := filepath.Match(base, name); ok {
			return true, false
		}
		if ok, _ := filepath.Match(base+".*", name); ok {
			sibling = true
		} else if ok, _ := filepath.Match(base+"-*", name); ok {
			sibling = true
		}
	}
	if sibling {
		lower := strings.ToLower(name)
		for _, ext := range compressedExt {
			if strings.HasSuffix(lower, ext) {
				return false, false
			}
		}
	}
	return false, sibling
}

// scan lists the directories and reconciles what it finds with the tracked files. Every listed file
// is opened and identified by its descriptor, so renames racing the listing cannot mix files up.
func (t *Tailer) scan(rs *tailRun, first bool) {
	now := time.Now()
	for _, tf := range rs.files {
		tf.seen = false
	}
	rs.deferred = false
	var cands []candidate
	listed := map[fileID]bool{}
	for _, dir := range t.dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			if !rs.reported[dir] {
				rs.reported[dir] = true
				t.log.Warn("read directory", zap.String("dir", dir), zap.Error(err))
			}
			continue
		}
		delete(rs.reported, dir)
		for _, de := range ents {
			active, sibling := t.classify(dir, de.Name())
			if !active && !sibling {
				continue
			}
			c, ok := t.openCandidate(rs, filepath.Join(dir, de.Name()), active)
			if !ok {
				continue
			}
			if listed[c.id] { // renamed during the listing: seen under an earlier name
				c.f.Close()
				continue
			}
			listed[c.id] = true
			cands = append(cands, c)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].active != cands[j].active {
			return !cands[i].active
		}
		return cands[i].mtime.Before(cands[j].mtime)
	})
	// Known files first, so that new files can be recognised as copies of them.
	var fresh []*candidate
	for i := range cands {
		c := &cands[i]
		if tf, ok := rs.files[c.id]; ok {
			if t.rescan(rs, tf, c) {
				continue
			}
			// The inode now holds another file: forget the old one.
			t.drop(rs, tf)
			t.m.rotations.WithLabelValues("replaced").Inc()
		}
		if e, ok := rs.restored[c.id]; ok {
			delete(rs.restored, c.id)
			if t.restore(rs, e, c) {
				continue
			}
			t.m.rotations.WithLabelValues("replaced").Inc()
		}
		fresh = append(fresh, c)
	}
	for _, d := range rs.deferrals {
		d.seen = false
	}
	for _, c := range fresh {
		t.discover(rs, c, first, now)
	}
	maps.DeleteFunc(rs.deferrals, func(_ fileID, d *deferral) bool { return !d.seen })
	for i := range cands {
		if cands[i].f != nil {
			cands[i].f.Close()
		}
	}
	// Files no longer listed: deleted ones (and ones missing from three listings in a row, renamed
	// away from the patterns) are read on from the open descriptor until they stop growing (idle),
	// then dropped.
	for _, tf := range rs.files {
		if tf.seen {
			tf.misses = 0
			continue
		}
		tf.misses++
		t.checkUnlinked(rs, tf, now)
		if tf.misses >= 3 {
			t.markGone(rs, tf, now)
		}
		if tf.gone && tf.f == nil {
			t.drop(rs, tf)
		}
	}
	// Forget truncated fingerprints after a minute: their copies have been found by then.
	keep := rs.truncated[:0]
	for _, o := range rs.truncated {
		if now.Sub(o.at) < time.Minute {
			keep = append(keep, o)
		}
	}
	rs.truncated = keep
	holdActive(rs, now)
	t.reorder(rs)
}

// siblingHold bounds how long an active file is held back for deferred siblings (see holdActive),
// counted from when a scan first found one waiting, whatever the siblings do meanwhile: a sibling
// still young after it (written to on and on, dated in the future, or replaced by a new one again
// and again, like a state file rewritten by rename) is no rotation in progress, and must not stop
// the active file.
const siblingHold = 5 * time.Second

// holdActive holds back each active file that has a rotated sibling waiting to be discovered (see
// discover), for siblingHold at most: the sibling's lines are older, and are shipped first once it
// is discovered (rotated files are read before the active ones, see reorder). Without the hold, a
// restart right after rotations while the Tailer was down (app.log -> app.log.1, a new app.log)
// shipped the new app.log before the young app.log.1. The bound is the file's own (heldSince), not
// each sibling's: siblings that keep coming, each a new inode, must not hold it for good. It is
// reset only by a scan that finds no sibling of the file waiting.
func holdActive(rs *tailRun, now time.Time) {
	for _, tf := range rs.files {
		if !tf.active || tf.gone || !siblingWaits(rs, tf.path, now) {
			tf.held, tf.heldSince = false, time.Time{}
			continue
		}
		if tf.heldSince.IsZero() {
			tf.heldSince = now
		}
		tf.held = now.Sub(tf.heldSince) < siblingHold
	}
}

// siblingWaits reports whether a deferred new file, deferred for less than siblingHold, is a
// rotated sibling of path.
func siblingWaits(rs *tailRun, path string, now time.Time) bool {
	for _, d := range rs.deferrals {
		if now.Sub(d.since) < siblingHold && copyName(d.path, path) {
			return true
		}
	}
	return false
}

// openCandidate opens a listed file and identifies it by its descriptor.
func (t *Tailer) openCandidate(rs *tailRun, path string, active bool) (candidate, bool) {
	f, err := openLog(path)
	if os.IsNotExist(err) {
		return candidate{}, false
	}
	if err != nil {
		t.reportOnce(rs, path, "open", err)
		return candidate{}, false
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		t.reportOnce(rs, path, "stat", err)
		return candidate{}, false
	}
	id, _, ok := fileIdentity(f, fi)
	if !fi.Mode().IsRegular() || !ok {
		f.Close()
		t.reportOnce(rs, path, "not a regular file", nil)
		return candidate{}, false
	}
	delete(rs.reported, path)
	return candidate{path: path, active: active, size: fi.Size(), mtime: fi.ModTime(), f: f, id: id}, true
}

// rescan updates a tracked file from a listing; false means its inode was reused for another file.
func (t *Tailer) rescan(rs *tailRun, tf *tfile, c *candidate) bool {
	if tf.f == nil {
		if !tf.startIs(rs, c.f, 0, nil) {
			return false
		}
		if c.size > tf.off+int64(len(tf.partial)) {
			tf.f, tf.eof, c.f = c.f, false, nil
		}
	}
	if tf.path != c.path {
		t.log.Debug("file renamed", zap.String("from", tf.path), zap.String("to", c.path))
		if tf.active && !c.active {
			t.m.rotations.WithLabelValues("rename").Inc()
		}
		tf.path = c.path
		rs.dirty = true
	}
	tf.active, tf.seen, tf.gone, tf.mtime = c.active, true, false, c.mtime
	if tf.f != nil && c.active {
		t.checkReplaced(rs, tf, c.size)
	}
	return true
}

// checkReplaced resets tf when the file shrank below what was read or its first bytes changed.
func (t *Tailer) checkReplaced(rs *tailRun, tf *tfile, size int64) {
	if size < tf.off+int64(len(tf.partial)) {
		t.log.Info("file truncated", zap.String("file", tf.path), zap.Int64("size", size), zap.Int64("offset", tf.off))
		t.m.rotations.WithLabelValues("truncate").Inc()
		tf.reset(rs)
		return
	}
	t.resetIfStartChanged(rs, tf, 0, nil)
}

// resetIfStartChanged resets tf, counting a truncation, when the file's first bytes are no longer
// those its fingerprint covers, or data, just read at base, is no longer there (copytruncate and
// regrowth); it reports whether it did. Otherwise the fingerprint grows over data, as startIs does.
func (t *Tailer) resetIfStartChanged(rs *tailRun, tf *tfile, base int64, data []byte) bool {
	if tf.startIs(rs, tf.f, base, data) {
		return false
	}
	t.log.Info("file content replaced", zap.String("file", tf.path))
	t.m.rotations.WithLabelValues("truncate").Inc()
	tf.reset(rs)
	return true
}

// startIs reports whether f begins with the fpLen bytes tf's fingerprint covers, reading them into
// rs.fpBuf. It compares them with tf.head; only when those bytes are not known yet (a file being
// restored from a checkpoint) does it hash them, and then keeps them when they match.
//
// With data, what was just read from f at base, the same read takes the file's first bytes up to
// the end of data (fpMax at most). Where they overlap data they must equal it, but for bytes data
// holds as NUL in a file no shorter than data (a write after the read, see torn): otherwise the file
// was truncated and rewritten since data was read, with the same first fpLen bytes, and startIs
// reports false. When all matches, the fingerprint grows to cover those bytes as updateFP would,
// which then has nothing left to read; it never takes bytes that differ from what was read, which
// would leave the copy of a copytruncate unrecognised.
func (tf *tfile) startIs(rs *tailRun, f *os.File, base int64, data []byte) bool {
	if tf.fpLen == 0 {
		return true
	}
	end := base + int64(len(data))
	b := rs.fpBuf[:max(tf.fpLen, min(end, fpMax))]
	rs.startReads++
	got, err := f.ReadAt(b, 0)
	if int64(got) < tf.fpLen && err != nil {
		return false
	}
	b = b[:got]
	if !tf.headIs(b[:tf.fpLen]) {
		return false
	}
	if lo, hi := base, min(int64(got), end); lo < hi && !bytes.Equal(b[lo:hi], data[:hi-lo]) {
		// Only bytes the read saw NUL differ, in a file no shorter than the read (reserved space
		// never shrinks as it is filled): a write after the read (see torn), whose line the read
		// finds and reads again; the fingerprint does not take them. Else the file was truncated and
		// written again.
		return int64(got) >= min(end, fpMax) && sameButNUL(data[:hi-lo], b[lo:hi])
	}
	if int64(got) > tf.fpLen {
		tf.setFP(b)
	}
	return true
}

// sameButNUL reports whether read, bytes a read returned, equals now, the same bytes read later,
// but for NUL bytes in read.
func sameButNUL(read, now []byte) bool {
	for i, c := range read {
		if c != now[i] && c != 0 {
			return false
		}
	}
	return true
}

// headIs reports whether b, the first fpLen bytes of a file, are the bytes tf's fingerprint covers.
func (tf *tfile) headIs(b []byte) bool {
	if tf.head != nil {
		return bytes.Equal(b, tf.head)
	}
	if hashFP(b) != tf.fp {
		return false
	}
	tf.head = slices.Clone(b)
	return true
}

// setFP makes b, the file's first bytes, what tf's fingerprint covers; none when b is empty.
func (tf *tfile) setFP(b []byte) {
	if len(b) == 0 {
		tf.fp, tf.fpLen, tf.head = "", 0, tf.head[:0]
		return
	}
	tf.fp, tf.fpLen, tf.head = hashFP(b), int64(len(b)), append(tf.head[:0], b...)
}

// restore resumes a file from its checkpoint entry; false when the fingerprint does not match. It
// reads the file's start once: startIs hashes those bytes against the entry's fingerprint and keeps
// them as tf.head, so that the checks after reads compare them instead of hashing a second read.
func (t *Tailer) restore(rs *tailRun, e checkpointEntry, c *candidate) bool {
	if e.FPLen == 0 && e.FP != "" {
		return false // no bytes can have that fingerprint
	}
	tf := &tfile{id: c.id, path: c.path, active: c.active, seen: true, f: c.f, off: e.Offset, done: e.Offset,
		fp: e.FP, fpLen: e.FPLen, mtime: c.mtime, pendOff: -1, lastData: time.Now()}
	if !tf.startIs(rs, c.f, 0, nil) {
		// Truncated (and perhaps written again) while the Tailer was stopped, or the inode holds
		// another file: a copy of what the entry covers (copytruncate while stopped) must still be
		// recognised (see copyOf) and read from the entry's offset, not from its start.
		if e.FPLen > 0 && e.Offset > 0 {
			rs.truncated = append(rs.truncated, oldFP{path: e.Path, fp: e.FP, fpLen: e.FPLen, done: e.Offset, at: time.Now()})
		}
		return false
	}
	c.f = nil
	rs.files[c.id] = tf
	t.log.Debug("resume file", zap.String("file", c.path), zap.Uint64("inode", c.id.ino), zap.Int64("offset", e.Offset))
	if c.size < e.Offset {
		t.log.Info("file truncated while stopped", zap.String("file", c.path))
		t.m.rotations.WithLabelValues("truncate").Inc()
		tf.reset(rs)
	}
	return true
}

// discover starts tracking a file seen for the first time.
func (t *Tailer) discover(rs *tailRun, c *candidate, first bool, now time.Time) {
	if !first && !c.active && c.size < fpMax && now.Sub(c.mtime) < time.Second {
		// A young small sibling may be a copy still being written: decide once it has grown or settled.
		deferDiscovery(rs, c, now)
		return
	}
	start := int64(0)
	var orig *tfile
	switch {
	case first && !c.active:
		start = c.size // a rotated file from before the first start
	case !first:
		var ok bool
		if start, orig, ok = t.copyOf(rs, c.f, c); ok {
			if start > c.size {
				// The original was delivered past the copy's end. Either the lines written between
				// the copy and the truncation were read from it (then all of the copy is delivered),
				// or the copy is still being written (a listing can see part of a write, ending
				// inside a line): starting at its current end would ship the rest of that line as a
				// line, and again what follows. Decide once it settled.
				if now.Sub(c.mtime) < time.Second {
					deferDiscovery(rs, c, now)
					return
				}
				start = c.size
			}
			t.log.Info("file is a copy of a tracked file", zap.String("file", c.path), zap.Int64("offset", start))
			t.m.rotations.WithLabelValues("copy").Inc()
		} else {
			start = 0
		}
	}
	f := c.f
	c.f = nil
	tf := &tfile{id: c.id, path: c.path, active: c.active, seen: true, f: f, off: start, done: start,
		mtime: c.mtime, pendOff: -1, lastData: now, copyOf: orig}
	t.updateFP(rs, tf, c.size)
	rs.files[c.id] = tf
	rs.dirty = true
	t.log.Debug("new file", zap.String("file", c.path), zap.Uint64("inode", c.id.ino), zap.Int64("offset", start))
}

// deferDiscovery leaves the new file c for a later scan to discover; when c is a rotated sibling of
// an active file, that file is held back meanwhile (see holdActive).
func deferDiscovery(rs *tailRun, c *candidate, now time.Time) {
	rs.deferred = true
	if d := rs.deferrals[c.id]; d != nil {
		d.path, d.seen = c.path, true
		return
	}
	if rs.deferrals == nil {
		rs.deferrals = map[fileID]*deferral{}
	}
	rs.deferrals[c.id] = &deferral{path: c.path, since: now, seen: true}
}

// copyOf looks for a tracked, restored or recently truncated file whose fingerprint the new file
// shares (copytruncate): the new file is then read from where that one was delivered (returned as
// it is: it may lie past the copy's current end). When the
// original is tracked and not truncated yet, it is returned: the copy waits for the truncation.
func (t *Tailer) copyOf(rs *tailRun, f *os.File, c *candidate) (int64, *tfile, bool) {
	for _, tf := range rs.files {
		if tf.id == c.id || tf.copyOf != nil || !tf.active || tf.f == nil || !copyName(c.path, tf.path) {
			continue
		}
		if head, ok := sameStart(f, c.size, tf.f); ok {
			// The copy waits for tf's truncation, which tf's offset and fingerprint must tell: when
			// tf has read nothing since its last truncation, only the bytes just compared do (a
			// truncation and regrowth past its offset 0 before it reads would leave the copy waiting
			// for good). Its fingerprint covers them from now on; a tf replaced since it was read is
			// reset first (its delivered offset is not the copy's). The truncation may have come
			// after this scan checked tf, and tf regrown with bytes that begin like its old content:
			// a copy of what tf held before is read from where that was delivered.
			k := len(rs.truncated)
			if t.resetIfStartChanged(rs, tf, 0, nil) && len(rs.truncated) > k && rs.truncated[k].holds(f, c.size) {
				return rs.truncated[k].done, nil, true
			}
			tf.growFP(head)
			return tf.done, tf, true
		}
		// No match: tf may have been truncated after this scan checked it, and then the copy holds
		// what tf held. Noticing the truncation now (after the comparison) puts tf's old fingerprint
		// and delivered offset in rs.truncated, where the copy is looked up below; else the copy would
		// be read from its start, shipping again what was delivered from tf.
		if fi, err := tf.f.Stat(); err == nil {
			t.checkReplaced(rs, tf, fi.Size())
		}
	}
	var olds []oldFP
	for _, e := range rs.restored {
		if e.FPLen > 0 && e.Offset > 0 {
			olds = append(olds, oldFP{path: e.Path, fp: e.FP, fpLen: e.FPLen, done: e.Offset})
		}
	}
	olds = append(olds, rs.truncated...)
	best := int64(-1)
	for _, o := range olds {
		if copyName(c.path, o.path) && o.done > best && o.holds(f, c.size) {
			best = o.done
		}
	}
	return best, nil, best >= 0
}

// holds reports whether f, of size size, begins with what o's fingerprint covers: f is a copy of the
// truncated file's content.
func (o *oldFP) holds(f *os.File, size int64) bool {
	if size >= o.fpLen {
		fp, ok := fingerprint(f, o.fpLen)
		return ok && fp == o.fp
	}
	// A copy shorter than the fingerprint: the Tailer read lines written after the copy was taken,
	// before the truncation. It is the copy when it holds the fingerprint's bytes up to its end (at
	// least 64, as sameStart). Shorter, it is not told from a new file, and is read from its start.
	if int64(len(o.head)) != o.fpLen || size < 64 {
		return false
	}
	b := make([]byte, size)
	got, err := f.ReadAt(b, 0)
	return (int64(got) == size || err == nil) && bytes.Equal(b, o.head[:size])
}

// sameStart reports whether the file f of size size begins like orig as it is now (orig may not be
// fingerprinted or read yet), and returns orig's first bytes it compared.
func sameStart(f *os.File, size int64, orig *os.File) ([]byte, bool) {
	fi, err := orig.Stat()
	if err != nil {
		return nil, false
	}
	n := min(size, fi.Size(), fpMax)
	if n < 64 && (n != size || n != fi.Size() || n == 0) {
		return nil, false // too short to tell
	}
	a, b := make([]byte, n), make([]byte, n)
	if got, err := f.ReadAt(a, 0); int64(got) < n && err != nil {
		return nil, false
	}
	if got, err := orig.ReadAt(b, 0); int64(got) < n && err != nil {
		return nil, false
	}
	return b, bytes.Equal(a, b)
}

// copyName reports whether path is named like a rotated copy of orig: orig followed by "." or "-"
// and more (app.log.1, app.log-20260101).
func copyName(path, orig string) bool {
	rest, ok := strings.CutPrefix(path, orig)
	return ok && len(rest) > 1 && (rest[0] == '.' || rest[0] == '-')
}

// drop stops tracking tf. Copies waiting for it to be truncated hold nothing new: they are skipped.
func (t *Tailer) drop(rs *tailRun, tf *tfile) {
	t.log.Debug("drop file", zap.String("file", tf.path), zap.Uint64("inode", tf.id.ino), zap.Int64("delivered", tf.done),
		zap.Bool("gone", tf.gone), zap.Int("misses", tf.misses))
	tf.close()
	delete(rs.files, tf.id)
	rs.dirty = true
	rs.goneDropped = rs.goneDropped || tf.gone
	for _, c := range rs.files {
		if c.copyOf == tf {
			c.copyOf = nil
			if fi, err := os.Stat(c.path); err == nil {
				c.off, c.done = fi.Size(), fi.Size()
				c.partial = c.partial[:0]
			}
		}
	}
}

func (t *Tailer) updateFP(rs *tailRun, tf *tfile, size int64) {
	if tf.f == nil || tf.fpLen >= fpMax || size <= tf.fpLen {
		return
	}
	n := min(size, fpMax)
	buf := rs.fpBuf[:n]
	rs.startReads++
	if got, err := tf.f.ReadAt(buf, 0); int64(got) < n && err != nil {
		return
	}
	tf.growFP(buf)
}

// growFP makes buf, the file's first bytes as they are now, what tf's fingerprint covers, when they
// are more than it covers and begin with them.
func (tf *tfile) growFP(buf []byte) {
	if int64(len(buf)) <= tf.fpLen {
		return
	}
	// Extend the fingerprint only if the bytes it covers are unchanged: the file may have been
	// truncated and rewritten since it was read (copytruncate), and then it must not take the new
	// content's fingerprint with the old content's offsets.
	if tf.fpLen > 0 && !tf.headIs(buf[:tf.fpLen]) {
		return
	}
	// NUL bytes at the end of bytes not read yet may be space reserved ahead of the writer (see
	// unwritten), which its writing them must not make a new file: the fingerprint stops before
	// them. NUL bytes that were read or skipped (a hole, lines after them) are the file's, and it
	// covers them.
	read := int(min(max(tf.fpLen, tf.off+int64(len(tf.partial))), int64(len(buf))))
	buf = buf[:max(read, len(trimZeros(buf)))]
	tf.setFP(buf)
}

func (t *Tailer) reportOnce(rs *tailRun, path, what string, err error) {
	if rs.reported[path] {
		return
	}
	rs.reported[path] = true
	t.m.skipped.WithLabelValues("unreadable").Inc()
	t.log.Warn("skip file", zap.String("file", path), zap.String("reason", what), zap.Error(err))
}

// reorder sorts the read order: rotated files first, oldest first, then the active ones.
func (t *Tailer) reorder(rs *tailRun) {
	rs.order = rs.order[:0]
	clear(rs.byPath)
	for _, tf := range rs.files {
		rs.order = append(rs.order, tf)
		rs.byPath[tf.path] = tf
	}
	sort.SliceStable(rs.order, func(i, j int) bool {
		a, b := rs.order[i], rs.order[j]
		if a.active != b.active {
			return !a.active
		}
		if !a.mtime.Equal(b.mtime) {
			return a.mtime.Before(b.mtime)
		}
		return a.path < b.path
	})
	t.m.files.Set(float64(len(rs.files)))
}

// readAll reads every open file until it has no more data or has had its share; progress reports
// whether anything was read. The error is ctx's.
func (t *Tailer) readAll(ctx context.Context, rs *tailRun) (progress bool, err error) {
	for _, tf := range rs.order {
		if tf.f == nil || tf.copyOf != nil || tf.held {
			continue
		}
		for range 16 {
			n, err := t.readOnce(ctx, rs, tf)
			if err != nil {
				return progress, err
			}
			if n == 0 {
				break
			}
			progress = true
		}
	}
	return progress, nil
}

// readOnce reads one chunk of tf, delivers its complete lines and returns the bytes read.
func (t *Tailer) readOnce(ctx context.Context, rs *tailRun, tf *tfile) (int, error) {
	tf.torn = false
	if tf.eof && tf.active {
		// Coming back from the file's end: it may have been truncated and regrown meanwhile.
		if fi, err := tf.f.Stat(); err == nil {
			t.checkReplaced(rs, tf, fi.Size())
		}
	}
	buf := rs.buf
	base := tf.off
	np := copy(buf, tf.partial)
	if t.stager != nil && !tf.reserved {
		// Before the read: the staged bytes are then the ones read (see pipeOut).
		if k := stageable(tf, len(buf)); k > 0 {
			t.stager.stage(tf.f, tf.off, k)
		}
	}
	n, err := t.readAt(tf.f, buf[np:], tf.off+int64(np))
	if rs.readDone != nil {
		rs.readDone()
	}
	if n > 0 && buf[np+n-1] == 0 {
		k := unwritten(rs, tf, np, n)
		tf.reserved = tf.reserved || k < n // before appendBlock: this read's lines are not spliced either
		n = k
	}
	if n == 0 {
		tf.eof = true
		if err != nil && err != io.EOF {
			t.reportOnce(rs, tf.path, "read", err)
			return 0, nil
		}
		if fi, err := tf.f.Stat(); err == nil && tf.active {
			t.checkReplaced(rs, tf, fi.Size())
		}
		return 0, nil
	}
	if tf.active && tf.fpLen > 0 {
		// Checked after the read: if the file was truncated (copytruncate) and regrown before or
		// during the read, these bytes may be the new content at the old offset, and if after it,
		// they are no longer in the file. Drop them and start over; the old content's tail is in
		// the copy.
		if t.resetIfStartChanged(rs, tf, base, buf[:np+n]) {
			return n, nil
		}
	}
	tf.eof = false
	tf.lastData = time.Now()
	rs.urgent = rs.urgent || tf.gone
	t.m.bytes.Add(float64(n))
	data := buf[:np+n]
	rs.recs, rs.arena = rs.recs[:0], rs.arena[:0]
	if tf.nulTo != 0 && tf.nulTo == tf.off && data[0] != 0 {
		t.skipNULs(rs, tf, tf.off, 0, true) // the run skipped up to the previous read's end ended there
	}
	start := 0
	if t.block && t.o.multiline == nil && !tf.skipping {
		start = t.appendBlock(rs, tf, data)
	}
	// Usually no byte of the chunk needs JSON escaping: then no line needs checking on its own.
	var plain bool
	if start < len(data) && !t.raw {
		_, flagged := scanText(data[start:], true)
		plain = !flagged
	}
	fast := plain && t.o.multiline == nil
	// cut: NUL bytes that a line or rest held changed in the file since the read (see torn): the read
	// ends at that line's start, and the next one reads it again. A fast chunk holds no NUL byte.
	cut := false
	for {
		i := bytes.IndexByte(data[start:], '\n')
		if i < 0 {
			break
		}
		line, lineOff := data[start:start+i], tf.off+int64(start)
		if !fast && torn(rs, tf, lineOff, line) {
			cut = true
			break
		}
		start += i + 1
		if tf.skipping {
			tf.skipping = false
			continue
		}
		if fast && i <= t.o.maxLineBytes {
			rs.recs = append(rs.recs, Record{File: tf.path, Line: line, Offset: lineOff, plain: plain})
			continue
		}
		t.line(rs, tf, line, lineOff, plain)
	}
	rest := data[start:]
	if cut || !fast && torn(rs, tf, tf.off+int64(start), rest) {
		cut, rest = true, rest[:0]
	}
	if !tf.skipping && len(rest) > 0 && rest[0] == 0 {
		// A line starting with NUL bytes (not in tf.partial: its first byte never is NUL), read again
		// (see torn). Those up to the end of rest are followed by other bytes in the file (see
		// unwritten): they are skipped too, and the run goes on in the next read.
		k := len(rest) - len(trimZerosLeft(rest))
		t.skipNULs(rs, tf, tf.off+int64(start), k, k < len(rest))
		start += k
		rest = rest[k:]
	}
	consumed := int64(start)
	if !tf.skipping && len(rest) > t.o.maxLineBytes {
		t.tooLong(tf, tf.off+consumed)
		tf.skipping = true
	}
	if tf.skipping {
		consumed += int64(len(rest))
		rest = nil
	}
	tf.partial = append(tf.partial[:0], rest...)
	tf.off += consumed
	if err := t.deliver(ctx, rs, tf); err != nil {
		// Not delivered: read these lines again.
		tf.off -= consumed
		tf.partial = append(tf.partial[:0], data[:np]...)
		tf.pend, tf.pendOff = tf.pend[:0], -1
		return 0, err
	}
	tf.done = tf.delivered()
	if held := int(consumed) + len(tf.partial); base == 0 && tf.fpLen < fpMax && int64(held) > tf.fpLen {
		// The file's first bytes are in hand: fingerprint them without reading again (a truncation
		// right now must not leave a delivered file without a fingerprint). Not those after a cut.
		tf.setFP(data[:min(held, fpMax)])
	} else {
		t.updateFP(rs, tf, tf.off+int64(len(tf.partial)))
	}
	rs.dirty = true
	if tf.torn = cut && consumed == 0; tf.torn {
		// Nothing read but bytes a writer is changing: read them again on the next poll, not at once
		// (readAll and Run go on reading while reads return bytes); finishFile waits tornRetry.
		return 0, nil
	}
	return n, nil
}

// unwritten returns how many of the n bytes just read into rs.buf after its np held-back ones
// (rs.buf[0] is at the file offset tf.off), which end in a NUL byte, are written. NUL bytes at their
// end that reach the file's end are space reserved ahead of the writer (fallocate, ftruncate up),
// which it then writes its lines into from its start: they are left unread, and read again once
// written (the next read from tf.off sees that), or once the file has a byte other than NUL after
// them (a hole, or space its writer never wrote before it crashed: then read, and where they start a
// line, skipped; see skipNULs).
//
// A full read may end inside reserved space larger than a read: the bytes after it up to the file's
// end are then checked too (see zerosAfter), once, not on every poll of a file at its end.
func unwritten(rs *tailRun, tf *tfile, np, n int) int {
	end := np + n
	if end == len(rs.buf) { // a full read: the file may go on
		// Without its size, what follows is not known: the NUL bytes stay unread (the Tailer skips
		// the ones it reads at a line's start, see skipNULs), and are read again on the next poll.
		if fi, err := tf.f.Stat(); err == nil {
			if size, from := fi.Size(), tf.off+int64(end); size > from && !zerosAfter(rs, tf, from, size) {
				return n
			}
		}
	}
	return len(trimZeros(rs.buf[np:end]))
}

// zeroRecheck is how long the NUL bytes found after a full read (see zerosAfter) are taken to stay
// NUL while the file keeps its size.
const zeroRecheck = 5 * time.Second

// zerosAfter reports whether tf's bytes from from, the end of a full read that ended in NUL bytes,
// up to size, the file's size, are all NUL. The bytes checked are remembered: a writer fills
// reserved space from its start, which the reads from tf.off see, so while the file keeps its size
// they are not read again on every poll, only once zeroRecheck passed (a writer filling the space
// out of order is then seen). When the file grew, only the new bytes are checked.
func zerosAfter(rs *tailRun, tf *tfile, from, size int64) bool {
	if tf.dataAt >= from && tf.dataAt < size {
		// Found before: the NUL bytes up to there are content, read on through them.
		var b [1]byte
		if k, _ := tf.f.ReadAt(b[:], tf.dataAt); k == 1 && b[0] != 0 {
			return false
		}
		tf.dataAt = 0
	}
	now := time.Now()
	if tf.zerosTo < from || tf.zerosTo > size || now.Sub(tf.zerosAt) >= zeroRecheck {
		tf.zerosTo, tf.zerosAt = from, now // check them all
	}
	at, err := findData(rs, tf, tf.zerosTo, size)
	if err != nil {
		return true // not known to be written: read again on the next poll
	}
	if at < size {
		tf.dataAt = at
		return false
	}
	tf.zerosTo = size
	return true
}

// stageable returns how many of the n bytes of tf from tf.off the Tailer may stage before reading
// them (see stager): those before the file's first hole (SEEK_HOLE on Linux), which tmpfs also
// reports for fallocated space not written yet. tmpfs stages such space as the kernel's shared zero
// page, which lines the writer writes there do not change, so a writer filling reserved space
// between the stage and the read, up to the read's end (which then ends in a line and leaves
// nothing to mark the file reserved), would have NUL bytes shipped for the lines read. Data stays
// data in an append-only file, so the bytes found to be data are remembered (tf.dataTo) and only
// the bytes after them are checked: on tmpfs SEEK_HOLE walks the file's pages from where it starts.
func stageable(tf *tfile, n int) int {
	end := tf.off + int64(n)
	if tf.dataTo < end {
		from := max(tf.off, tf.dataTo)
		p, err := seekHole(tf.f, from)
		if errors.Is(err, errors.ErrUnsupported) {
			return n
		}
		if err != nil {
			return int(max(0, tf.dataTo-tf.off)) // ENXIO: at the file's end
		}
		tf.dataTo = p
	}
	return int(max(0, min(end, tf.dataTo)-tf.off))
}

// findData returns the offset of tf's first byte other than NUL from from up to size, or size when
// there is none. It skips what the file system reports as holes (SEEK_DATA on Linux; an ftruncate
// up, and on ext4 and XFS fallocated space whose pages are not in the page cache) and reads the
// rest. The bytes before from were read by the Tailer or found NUL by an earlier check.
//
// On ext4 and XFS, SEEK_DATA reports fallocated space whose pages are in the page cache as data,
// and any read caches them, the Tailer's own and the readahead the kernel adds to each read: every
// check read all of the space (32 MiB took 2 ms), and kept it cached for the next one. So the clean
// pages of the bytes to check are dropped first (dropCached; pages the writer dirtied or maps stay,
// and what it wrote that reached the disk is data on the disk), and each read stops where SEEK_HOLE
// says the data ends, so that the kernel reads nothing ahead into the space. The check then costs
// what the writer's bytes in the range do, not what the reserved space does.
//
// The pages are dropped in windows, each one only once the bytes before it were found NUL, so that
// lines after the space (a writer that restarted after it), which the Tailer reads next, keep
// theirs but for those of one window: the first dropWindow bytes, each next one twice the one
// before, each rounded up to end on a multiple of folioMax (the kernel drops only whole folios). A
// window that starts inside a folio leaves it: when the data from the window's start runs through
// it, the window is dropped again from the folioMax block holding its start (bytes the Tailer read
// or found NUL).
//
// Bytes that the file system still reports as data right after their pages were dropped are not
// dropped again for keepFor (tf.keepFrom, tf.keepTo): dropping them makes no hole, it only has the
// next check read them from the disk. Those are NUL bytes the writer wrote, pages it dirtied or
// maps (which may pass, hence the time limit), and on a file system that reports no holes
// (SEEK_HOLE is the file's end: fuse-overlayfs, rootless Podman's root; NFS before 4.2) all of the
// space, which every check then reads from the page cache instead of through the file system again
// (32 MiB took 14 ms on fuse-overlayfs, 3.7 ms cached).
func findData(rs *tailRun, tf *tfile, from, size int64) (int64, error) {
	zeroBuf := rs.checkBuf()
	f := tf.f
	// The bytes from from up to dropTo are in the window being checked, whose pages were dropped from
	// dropFrom on; -1 when they were not (bytes tf keeps).
	window, dropFrom, dropTo := int64(dropWindow), int64(-1), from
	if tf.keepTo > 0 && time.Since(tf.keepAt) >= keepFor {
		tf.keepFrom, tf.keepTo = 0, 0
	}
	for from < size {
		if from >= dropTo {
			if from >= tf.keepFrom && from < tf.keepTo {
				dropFrom, dropTo = -1, min(size, tf.keepTo)
			} else {
				dropFrom, dropTo = from, size
				if window < size-from-folioMax { // else the window reaches the end (no overflow)
					dropTo = (from + window + folioMax - 1) / folioMax * folioMax
					window = min(2*window, maxDropWindow)
				}
				rs.dropped += dropCached(f, dropFrom, dropTo)
			}
		}
		p, err := seekData(f, from) // ErrUnsupported: read it all
		if errors.Is(err, syscall.ENXIO) || err == nil && p >= size {
			return size, nil // holes up to the end
		}
		if err == nil && p > from {
			if from = p; from >= dropTo {
				continue // past the window: drop the next one before reading
			}
		}
		end := dropTo
		if h, err := seekHole(f, from); err == nil && h > from {
			if h >= dropTo && from == dropFrom && from%folioMax != 0 {
				// Data through the window from its start, which may be a folio that starts before it.
				dropFrom = from / folioMax * folioMax
				rs.dropped += dropCached(f, dropFrom, dropTo)
				continue
			}
			end = min(end, h) // not past the data: the kernel would read ahead into the space
			if dropFrom >= 0 {
				// Data right after its pages were dropped: not dropped again.
				if tf.keepTo == 0 || from < tf.keepFrom || from > tf.keepTo {
					tf.keepFrom, tf.keepTo, tf.keepAt = from, end, time.Now()
				} else {
					tf.keepTo = max(tf.keepTo, end)
				}
			}
		}
		b := zeroBuf[:min(int64(len(zeroBuf)), end-from)]
		k, err := f.ReadAt(b, from)
		rs.zeroReads += int64(k)
		if i := k - len(trimZerosLeft(b[:k])); i < k {
			return from + int64(i), nil
		}
		if err == io.EOF {
			return size, nil // the file shrank
		}
		if err != nil {
			return 0, err
		}
		from += int64(k)
	}
	return size, nil
}

// checkBuf returns rs.zeroBuf, allocated on first use.
func (rs *tailRun) checkBuf() []byte {
	if rs.zeroBuf == nil {
		rs.zeroBuf = make([]byte, 64<<10)
	}
	return rs.zeroBuf
}

// torn reports whether b, bytes of tf at off that readOnce read and is about to skip, ship without
// their NUL bytes or hold back, holds a NUL byte and the file no longer holds b from there on. A
// writer filling reserved space from its start (ftruncate up, then pwrite; or mmap) can be caught in
// the middle of a write, the pages of a read being copied one at a time: the read then holds NUL
// bytes the writer was replacing, and after them bytes it wrote next, or, at a full read's end, only
// NUL bytes, with bytes it wrote next found after the read (see zerosAfter). Read as they are, the
// NUL bytes would be skipped before the line's tail, or make the line binary. So they are read once
// more: bytes that changed are read again from their line's start by the next read. Bytes still NUL
// stay NUL: the writer filled them before the bytes seen after them, which were read before.
// Only lines and rests holding a NUL byte are read again, at most once each per read.
func torn(rs *tailRun, tf *tfile, off int64, b []byte) bool {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return false
	}
	buf := rs.checkBuf()
	for b, off = b[i:], off+int64(i); len(b) > 0; {
		c := buf[:min(len(buf), len(b))]
		k, _ := tf.f.ReadAt(c, off)
		rs.rereads += int64(k)
		if k < len(c) || !bytes.Equal(c, b[:k]) {
			return true // changed, or no longer there (a truncation, which the next read sees)
		}
		b, off = b[k:], off+int64(k)
	}
	return false
}

// tornRetry is how long the final read of a deleted file (finishFile) waits before it reads bytes a
// writer was changing (see torn) again.
const tornRetry = time.Millisecond

// dropWindow is the size of the first window of bytes whose pages findData drops, before rounding,
// and maxDropWindow the largest, so that doubling it never overflows.
const (
	dropWindow    = 64 << 10
	maxDropWindow = 1 << 50
)

// keepFor is how long findData leaves bytes that were data right after their pages were dropped
// (tf.keepFrom, tf.keepTo) alone. What kept them may pass: a writer that mapped its reserved space
// and died leaves pages that can be dropped once unmapped, and without an end to the keep every
// check would read them from then on. After keepFor they are dropped once more: on a file system
// without holes that costs one check through it a minute (14 ms for 32 MiB on fuse-overlayfs).
const keepFor = time.Minute

// folioMax is the size of the largest block of a file that the page cache holds as one (a folio;
// the PMD size on x86-64 and on arm64 with 4 KiB pages), which starts on a multiple of its size.
// The kernel drops only whole ones: a window of findData's that ended inside one (a reader's
// readahead, the Tailer's own too, caches reserved space in folios of up to 2 MiB) left it, and the
// check read it. Larger folios, elsewhere, are read.
const folioMax = 2 << 20

// zeroBlock is compared with blocks of bytes to skip NUL bytes faster than one at a time.
var zeroBlock [4 << 10]byte

// trimZeros returns b without the NUL bytes at its end: whole blocks of them compared at once, the
// rest one at a time (as fast as bytes.TrimRight's loop without its call).
func trimZeros(b []byte) []byte {
	for k := len(b) - len(zeroBlock); k >= 0 && b[k] == 0 && bytes.Equal(b[k:], zeroBlock[:]); k -= len(zeroBlock) {
		b = b[:k]
	}
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// trimZerosLeft returns b without the NUL bytes at its start.
func trimZerosLeft(b []byte) []byte {
	for len(b) >= len(zeroBlock) && bytes.Equal(b[:len(zeroBlock)], zeroBlock[:]) {
		b = b[len(zeroBlock):]
	}
	return bytes.TrimLeft(b, "\x00")
}

// readPiece is the most one read call takes when the sink writes synchronously (a raw WriterSink
// on a pipe): a read of 256 KiB from the page cache takes longer than the Go runtime's sysmon tick
// (20µs), and sysmon then hands the P off and keeps polling every 20µs while the reads go on. With a
// WriterSink's writing goroutine (JSON), that hand-off is what lets it run while the Tailer reads
// (JSON ran ~10% slower in bench/sidecar with 64 KiB reads), so then the buffer is read in one call.
const readPiece = 64 << 10

// readAt reads len(b) bytes at off, like f.ReadAt; with t.piece set, in calls of at most t.piece
// bytes (see readPieces).
func (t *Tailer) readAt(f *os.File, b []byte, off int64) (int, error) {
	if t.piece == 0 {
		return f.ReadAt(b, off)
	}
	return readPieces(f, b, off, t.piece)
}

// readPieces reads len(b) bytes at off, like f.ReadAt, in f.ReadAt calls of at most piece bytes
// (see readPiece). They go through the Go runtime's syscall state: a read of pages not in the page
// cache waits for the file system (FUSE, NFS), and a raw call would hold up every stop-the-world of
// the Go runtime meanwhile (TestColdFileReadDoesNotHoldUpGC).
func readPieces(f *os.File, b []byte, off int64, piece int) (int, error) {
	done := 0
	for done < len(b) {
		n, err := f.ReadAt(b[done:min(len(b), done+piece)], off+int64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (t *Tailer) tooLong(tf *tfile, off int64) {
	t.m.skipped.WithLabelValues("too_long").Inc()
	t.log.Warn("skip line over the limit", zap.String("file", tf.path), zap.Int64("offset", off),
		zap.Int("limit", t.o.maxLineBytes))
}

// appendBlock appends the complete lines at the start of data as one block record (see Record.lines)
// when no line among them is binary or over the limit, and returns the bytes they take; 0 when they
// must be handled line by line. One pass over the bytes finds the newlines and flags the bytes that
// need a closer look.
func (t *Tailer) appendBlock(rs *tailRun, tf *tfile, data []byte) int {
	end := bytes.LastIndexByte(data, '\n') + 1
	if end == 0 {
		return 0
	}
	whole := data[:end]
	n, flagged := scanText(whole, !t.raw)
	if flagged && binaryText(whole) || !linesWithin(whole, t.o.maxLineBytes) {
		return 0
	}
	rec := Record{File: tf.path, Line: whole[:end-1], Offset: tf.off, plain: !t.raw && !flagged, lines: n}
	if t.stager != nil && !tf.reserved {
		rec.from = tf.f
	}
	rs.recs = append(rs.recs, rec)
	return end
}

// linesWithin reports whether every line of s, which holds complete lines each ending in '\n', has at
// most max bytes: whether every max+1 bytes from a line's start hold a newline. Lines much shorter
// than max make this a few short backward searches per max bytes.
func linesWithin(s []byte, max int) bool {
	for len(s) > max+1 {
		i := bytes.LastIndexByte(s[:max+1], '\n')
		if i < 0 {
			return false
		}
		s = s[i+1:]
	}
	return true
}

// binaryText reports whether b holds a NUL byte or is not valid UTF-8: such lines are skipped.
func binaryText(b []byte) bool { return bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) }

// line handles one complete line; plain tells that it is known to need no JSON escaping. The fast
// paths of readOnce (appendBlock, and the lines of a chunk needing no JSON escaping) leave every line
// of a chunk holding a NUL byte to it, so the NUL bytes at a line's start are skipped here.
func (t *Tailer) line(rs *tailRun, tf *tfile, line []byte, off int64, plain bool) {
	if len(line) > 0 && line[0] == 0 {
		k := len(line) - len(trimZerosLeft(line))
		t.skipNULs(rs, tf, off, k, true) // a newline follows
		line, off = line[k:], off+int64(k)
	}
	if len(line) > t.o.maxLineBytes {
		t.tooLong(tf, off)
		return
	}
	plain = plain || isPlain(line)
	if !plain && binaryText(line) {
		t.m.skipped.WithLabelValues("binary").Inc()
		t.log.Warn("skip binary line", zap.String("file", tf.path), zap.Int64("offset", off))
		return
	}
	if t.o.multiline == nil {
		rs.recs = append(rs.recs, Record{File: tf.path, Line: line, Offset: off, plain: plain})
		return
	}
	if tf.pendOff >= 0 && !t.o.multiline.Match(line) && len(tf.pend)+1+len(line) <= t.o.maxLineBytes {
		tf.pend = append(append(tf.pend, '\n'), line...)
		return
	}
	t.flushPending(rs, tf)
	tf.pend, tf.pendOff = append(tf.pend[:0], line...), off
}

// skipNULs skips the k NUL bytes at off that start a line of tf (see Tailer): they are not part of
// it. ended tells that a byte other than NUL follows them in what was read; otherwise the run goes on
// in the next read, which starts at off+k, and is logged (once) when it ends: in that read, also at
// its first byte (readOnce then calls skipNULs with k 0). With WithMultiline the run ends the record
// being joined.
func (t *Tailer) skipNULs(rs *tailRun, tf *tfile, off int64, k int, ended bool) {
	if tf.nulTo != off { // else the run read up to off goes on
		tf.nulFrom = off
	}
	tf.nulTo = off + int64(k)
	t.flushPending(rs, tf)
	if !ended {
		return
	}
	t.m.skipped.WithLabelValues("nul").Inc()
	t.log.Info("skip NUL bytes before a line", zap.String("file", tf.path), zap.Int64("offset", tf.nulFrom),
		zap.Int64("bytes", tf.nulTo-tf.nulFrom))
	tf.nulFrom, tf.nulTo = 0, 0
}

// flushPending moves tf's joined multiline record into the batch.
func (t *Tailer) flushPending(rs *tailRun, tf *tfile) {
	if tf.pendOff < 0 {
		return
	}
	s := len(rs.arena)
	rs.arena = append(rs.arena, tf.pend...)
	rs.recs = append(rs.recs, Record{File: tf.path, Line: rs.arena[s:len(rs.arena):len(rs.arena)], Offset: tf.pendOff})
	tf.pend, tf.pendOff = tf.pend[:0], -1
}

// deliver hands the batch, lines of tf, to the sink, retrying with backoff until it succeeds or ctx ends.
func (t *Tailer) deliver(ctx context.Context, rs *tailRun, tf *tfile) error {
	if len(rs.recs) == 0 {
		return nil
	}
	for attempt := 1; ; attempt++ {
		err := t.sink.Write(ctx, rs.recs)
		if err == nil {
			t.m.lines.Add(float64(recordLines(rs.recs)))
			rs.lastTF = tf
			return nil
		}
		t.m.sinkErrs.Inc()
		t.log.Warn("sink write", zap.Int("attempt", attempt), zap.Error(err))
		timer := time.NewTimer(t.o.backoff(attempt))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// idle runs when every file is at its end: ship stale multiline records, close rotated files that
// stay idle, drop files that are gone and stopped growing for the grace period.
func (t *Tailer) idle(ctx context.Context, rs *tailRun) {
	now := time.Now()
	changed := false
	for _, tf := range rs.files {
		if tf.pendOff >= 0 && now.Sub(tf.lastData) >= t.o.multilineWait {
			rs.recs, rs.arena = rs.recs[:0], rs.arena[:0]
			t.flushPending(rs, tf)
			if t.deliver(ctx, rs, tf) != nil {
				return
			}
			tf.done = tf.delivered()
			rs.dirty = true
		}
		switch {
		case tf.gone && (tf.f == nil || tf.eof && now.Sub(later(tf.lastData, tf.goneAt)) >= t.o.deletedGrace):
			// Gone and not grown for the grace period: its last line has no newline.
			if t.shipRest(ctx, rs, tf, true) != nil {
				return
			}
			t.drop(rs, tf)
			changed = true
		case tf.gone:
			// Still in its grace period: a restart cannot reopen it, so it is never closed here.
		case !tf.active && tf.f != nil && tf.eof && now.Sub(tf.lastData) >= t.o.closeIdle:
			tf.close()
		}
	}
	if changed {
		t.reorder(rs)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// commit writes the checkpoint when something changed: the sink's mark first, then the offsets. It
// returns the error of a checkpoint file it could not write (reported as well, see ckptFailed);
// other failures leave the checkpoint as it was, logged, and are tried again at the next commit.
func (t *Tailer) commit(rs *tailRun) error {
	if !rs.dirty {
		return nil
	}
	rs.lastCommit = time.Now()
	rs.urgent = false
	// held, when set, is the file the sink holds lines of that it has not written (a Flush that
	// failed: the reader of a pipe stalled), from heldFrom on: its offset is committed there.
	var held *tfile
	var heldFrom int64
	if f, ok := t.sink.(Flusher); ok {
		if err := f.Flush(); err != nil {
			t.log.Warn("flush sink", zap.Error(err))
			u, ok := t.sink.(partialSink)
			if !ok {
				return nil
			}
			if heldFrom, ok = u.unwritten(); ok {
				if held = rs.lastTF; held == nil {
					return nil
				}
			}
		} else {
			rs.goneDropped = false // the sink holds nothing of them
		}
	}
	st := checkpointState{Version: 1, Files: make([]checkpointEntry, 0, len(rs.files))}
	if u, ok := t.sink.(partialSink); ok {
		st.SinkTorn = u.torn()
	}
	rows := make([][]string, 0, len(rs.files))
	for _, tf := range rs.files {
		done := tf.done
		if tf == held {
			done = min(done, heldFrom)
		}
		e := checkpointEntry{Path: tf.path, Dev: tf.id.dev, Ino: tf.id.ino, FP: tf.fp, FPLen: tf.fpLen, Offset: done,
			Unlinked: tf.unlinked}
		// A deleted file's size is known for good only after the final read: a commit while
		// running sees a size the writer may pass right after it, and a process killed then loses
		// those lines; its entry has no size, and the restart warns that lines may be lost.
		if tf.unlinked && tf.f != nil && rs.stopping {
			if fi, err := tf.f.Stat(); err == nil {
				e.Size = fi.Size()
			}
		}
		st.Files = append(st.Files, e)
		state := "active"
		switch {
		case tf.unlinked:
			state = "deleted"
		case tf.gone:
			state = "gone"
		case !tf.active && tf.f == nil:
			state = "rotated, closed"
		case !tf.active:
			state = "rotated"
		}
		rows = append(rows, []string{tf.path, strconv.FormatUint(tf.id.ino, 10), strconv.FormatInt(done, 10), state})
	}
	sort.Slice(st.Files, func(i, j int) bool { return st.Files[i].Path < st.Files[j].Path })
	sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
	t.mu.Lock()
	t.rows = rows
	t.mu.Unlock()
	if t.o.checkpoint == "" {
		rs.dirty = held != nil
		return nil
	}
	if c, ok := t.sink.(Committer); ok {
		mark, err := c.Mark()
		if err != nil {
			t.log.Warn("sink mark", zap.Error(err))
			return nil
		}
		st.SinkMark = mark
	}
	if err := writeCheckpoint(t.o.checkpoint, st); err != nil {
		t.ckptFailed(rs, err)
		return fmt.Errorf("checkpoint %s: %w", t.o.checkpoint, err)
	}
	if !rs.ckptFailing.IsZero() {
		t.log.Info("checkpoint written again", zap.String("checkpoint", t.o.checkpoint),
			zap.Duration("failing_for", time.Since(rs.ckptFailing)))
		rs.ckptFailing = time.Time{}
	}
	t.m.commits.Inc()
	rs.dirty = held != nil // commit again once the sink wrote what it holds
	return nil
}

// partialSink is implemented by sinks whose Flush can fail with part of the last batch unwritten
// (WriterSink): unwritten tells from which offset of that batch's file (the Tailer's lastTF) the
// lines are not written, and torn and endTorn keep a record written in part from running into the
// next one across a restart (see WriterSink.endTorn).
type partialSink interface {
	unwritten() (off int64, ok bool)
	torn() string
	endTorn(id string)
}

// ckptErrorEvery is how often a checkpoint that keeps failing to be written is logged again.
const ckptErrorEvery = time.Minute

// ckptFailed reports a checkpoint file commit could not write: counted each time, logged as an error
// when it starts failing and then once every ckptErrorEvery while it goes on (it is retried at every
// commit, several times a second).
func (t *Tailer) ckptFailed(rs *tailRun, err error) {
	t.m.ckptErrs.Inc()
	now := time.Now()
	if rs.ckptFailing.IsZero() {
		rs.ckptFailing, rs.ckptLogged = now, now
		t.log.Error("commit checkpoint: a restart ships again what was delivered since the last commit",
			zap.String("checkpoint", t.o.checkpoint), zap.Error(err))
		return
	}
	if now.Sub(rs.ckptLogged) >= ckptErrorEvery {
		rs.ckptLogged = now
		t.log.Error("commit checkpoint still failing", zap.String("checkpoint", t.o.checkpoint),
			zap.Duration("failing_for", now.Sub(rs.ckptFailing)), zap.Error(err))
	}
}
