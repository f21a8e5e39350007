package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/workqueue"
)

var (
	bucketItems = []byte("items")
	bucketDead  = []byte("dead")
	bucketMeta  = []byte("meta")
	keyLastID   = []byte("last-id")
	keyEpoch    = []byte("epoch") // how many times the file was opened (see the package doc)
)

// ErrCorrupt is returned by Open when a stored record cannot be decoded.
var ErrCorrupt = errors.New("workqueue/bolt: corrupt record")

// ErrLocked is returned by Open when another Open holds the file, in this process or another,
// for as long as Open waited (WithOpenTimeout).
var ErrLocked = errors.New("workqueue/bolt: file locked by another Open, in this process or another")

// Option configures a Queue.
type Option interface{ apply(*config) }

type config struct {
	mem      []workqueue.Option
	timeout  time.Duration
	noSync   bool
	asyncAck bool
	logger   *zap.Logger
	name     string
	bad      []error // invalid options, refused before the file is opened
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLeaseDuration sets how long a lease lasts without Extend. Default 30s.
func WithLeaseDuration(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d <= 0 {
			c.bad = append(c.bad, fmt.Errorf("%w: lease duration %v must be positive", workqueue.ErrInvalid, d))
		}
		c.mem = append(c.mem, workqueue.WithLeaseDuration(d))
	})
}

// WithMaxAttempts buries an item instead of leasing it for attempt n+1. Default 0: unlimited.
func WithMaxAttempts(n int) Option {
	return optionFunc(func(c *config) {
		if n < 0 {
			c.bad = append(c.bad, fmt.Errorf("%w: max attempts %d must not be negative", workqueue.ErrInvalid, n))
		}
		c.mem = append(c.mem, workqueue.WithMaxAttempts(n))
	})
}

// WithLogger sets the logger. Default zap.NewNop().
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l; c.mem = append(c.mem, workqueue.WithLogger(l)) })
}

// WithRegisterer registers the queue's metrics with r: those of workqueue.Memory (see
// workqueue.WithRegisterer and workqueue.NewStatsCollector), read at scrape time. Close
// unregisters them. Default nil: not registered.
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(c *config) { c.mem = append(c.mem, workqueue.WithRegisterer(r)) })
}

// WithQueueName names the queue in its metrics (the label queue="name") and log lines, so that
// several queues can register with one registerer (see workqueue.WithQueueName). Default "".
func WithQueueName(name string) Option {
	return optionFunc(func(c *config) { c.name = name; c.mem = append(c.mem, workqueue.WithQueueName(name)) })
}

// WithOpenTimeout bounds how long Open waits for the file while another Open holds it (in this
// process or another: the lock is the OS's, on the open file), then fails with ErrLocked. Default
// 5s. 0 waits for as long as the file is held (bbolt's Options.Timeout). bbolt tries the lock
// every 50ms, so a d of 50ms or less tries it once. A negative d is refused: Open returns an error
// wrapping workqueue.ErrInvalid.
func WithOpenTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d < 0 {
			c.bad = append(c.bad, fmt.Errorf("%w: open timeout %v must not be negative (0 waits for as long as the file is held)", workqueue.ErrInvalid, d))
		}
		c.timeout = d
	})
}

// WithNoSync skips fsync (faster, but a machine crash can lose acknowledged adds; a process crash
// cannot). Default false: every commit is fsynced. Open still fsyncs once, after it commits its
// epoch (see the package doc).
func WithNoSync() Option { return optionFunc(func(c *config) { c.noSync = true }) }

// WithAsyncAck lets Ack and AckBatch return before their commit, as Lease always does: the acks go
// into the next commit, which happens within flushDelay (5ms) plus one fsync. A crash in that window
// hands the items out again (at least once, as always). Adds stay synchronous. Default false.
func WithAsyncAck() Option { return optionFunc(func(c *config) { c.asyncAck = true }) }

// flushDelay is how long a change that did not wait for its commit (a lease, an async ack) may wait
// for a commit to carry it, when no other commit comes first.
const flushDelay = 5 * time.Millisecond

// maxFlushDelay bounds how long a flush waits after commits that failed in a row: the wait doubles
// from flushDelay with each failure, so a disk that keeps failing (full, read-only) is tried about
// once a second, not 200 times.
const maxFlushDelay = time.Second

// Queue is a durable work queue in one bbolt file. It is a workqueue.Memory whose state changes are
// committed to the file (see workqueue.Journal): an Add, Ack, Nack, Release and Bury return after
// their commit, so a process crash loses no added item and brings back no acked one.
//
// A Lease does not wait for its commit: the lease (its attempt count and deadline) goes into the
// next commit, which some other call's commit or, on a queue that sees none, a flush makes within
// flushDelay (5ms) plus one fsync (see workqueue.LazyJournal), and so does an Extend's new deadline.
// On Open after a crash, an item whose lease was committed stays leased until that lease's last
// committed deadline (its holder can extend it again meanwhile) and then comes back with its next
// attempt; an item whose lease
// the crash caught in that window is ready at once and is leased again under the same attempt
// number. Lease tokens name the Open that handed them out (see the package doc), so the token of a lease
// the crash lost never matches the new lease: its holder's Ack, Extend, Nack or Bury gets
// workqueue.ErrLeaseLost, while the token of a committed lease keeps working across restarts.
//
// Commits are group-committed: while one goroutine commits (one fsync), the changes of every other
// goroutine queue up and go into the next transaction together, so throughput grows with concurrency
// without any added delay.
//
// A commit that fails returns its error to the calls that wait for it: their changes are made in
// memory and not tried again, so the file keeps the older state of those items until a later change
// of each is committed. The changes in it that no call waits for (leases, async acks) are tried again
// with the next commit, or by a flush if none comes, until one succeeds; Close's own commit is
// their last try, and its error is Close's. The flush waits flushDelay after one failed commit and
// twice as long after each further one in a row, up to a second, and flushDelay again from the
// first commit that succeeds. A failed commit that leaves such changes to try again is logged at
// error level with its error, once in a run of failures and at most once a minute (a caller that
// waits gets the error itself), and the success that ends a logged run at info level.
type Queue struct {
	*workqueue.Memory
	db *bbolt.DB

	epoch  uint64 // this Open's number, in every lease token it hands out
	suffix string // "@<epoch>", the end of those tokens

	// recovered holds the leases found in the file by Open that are not known to have ended: an
	// Ack, Nack, Release or Bury with a recovered lease's token removes it once Memory has ended it,
	// Lease as it hands out the item's next lease (see memLease and forgetRecovered), so one that
	// ran out goes when its item is leased again, and a journal change that removes the item (see
	// forgetRemoved), so one that ran out on the item's last attempt goes when Memory buries it.
	// Until then it stays, and Memory refuses its token.
	// nrecovered is its length, read without recMu so that a queue with no recovered lease left
	// checks the tokens of this Open, and leases, with no lock.
	recMu      sync.Mutex
	recovered  map[uint64]*recLease
	nrecovered atomic.Int64

	logger *zap.Logger

	mu         sync.Mutex
	failures   int       // commits that failed in a row; a flush waits longer after each
	failLogged bool      // this run of failures was logged
	failLogAt  time.Time // when a failure was last logged
	pending    []*commitReq
	committing bool
	asyncAck   bool
	flushing   bool           // a flush is scheduled
	flushWG    sync.WaitGroup // the scheduled flush
	flushTimer *time.Timer
	closed     bool
	closeOnce  sync.Once
	closeErr   error
}

var (
	_ workqueue.Queue       = (*Queue)(nil)
	_ workqueue.LazyJournal = (*Queue)(nil)
	_ workqueue.Batcher     = (*Queue)(nil)
)

type commitReq struct {
	changes []workqueue.Change
	done    chan error
}

// Open opens (creating if needed) the queue stored at path and recovers its items. While another
// Open holds the file it waits for it (see WithOpenTimeout), and gives the wait up when ctx ends:
// it returns at once, within lockRetry (50ms), an error wrapping ErrLocked and ctx.Err(), with the
// file closed and nothing of it changed. A ctx that ended before the call gets that error, ErrLocked
// aside, before the file is created. Once the file is locked, Open recovers the queue whatever ctx
// does; ctx is not kept.
func Open(ctx context.Context, path string, opts ...Option) (*Queue, error) {
	cfg := config{timeout: 5 * time.Second, logger: zap.NewNop()}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := errors.Join(cfg.bad...); err != nil {
		return nil, err // before the file is created
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err) // before the file is created
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	if cfg.name != "" {
		cfg.logger = cfg.logger.With(zap.String("queue", cfg.name))
	}
	db, err := openDB(ctx, path, cfg.timeout, &bbolt.Options{NoSync: cfg.noSync, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return nil, openError(ctx, path, cfg.timeout, err)
	}
	var recs []workqueue.Record
	var lastID, epoch uint64
	recovered := map[uint64]*recLease{}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketItems, bucketDead, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyLastID); len(v) == 8 {
			lastID = binary.BigEndian.Uint64(v)
		}
		if v := meta.Get(keyEpoch); len(v) == 8 {
			epoch = binary.BigEndian.Uint64(v)
		}
		epoch++ // committed with this transaction, before any lease of this Open
		if err := meta.Put(keyEpoch, binary.BigEndian.AppendUint64(nil, epoch)); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketItems, bucketDead} {
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				r, leaseEpoch, err := decode(v)
				if err != nil {
					return fmt.Errorf("%w: key %x: %v", ErrCorrupt, k, err)
				}
				recs = append(recs, r)
				if !r.Dead && !r.Deadline.IsZero() {
					recovered[r.ID] = &recLease{id: r.ID, leaseStamp: leaseStamp{attempt: r.Attempt, epoch: leaseEpoch}}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("recover %s: %w", path, err)
	}
	if cfg.noSync {
		// The epoch must be on disk before a lease of this Open: a machine crash that lost it would
		// give the next Open this epoch again, and this Open's tokens would match its leases.
		if err := syncDB(db); err != nil {
			db.Close()
			return nil, fmt.Errorf("sync %s: %w", path, err)
		}
	}
	q := &Queue{db: db, logger: cfg.logger, asyncAck: cfg.asyncAck, epoch: epoch, suffix: tokenSuffix(epoch), recovered: recovered}
	q.nrecovered.Store(int64(len(recovered)))
	mem, err := workqueue.NewMemory(append(cfg.mem, workqueue.WithJournal(q, recs, lastID))...)
	if err != nil {
		db.Close()
		return nil, err
	}
	q.Memory = mem
	cfg.logger.Info("queue opened", zap.String("path", path), zap.Int("records", len(recs)))
	return q, nil
}

// lockRetry is how often openDB tries the lock of a file another Open holds: bbolt's own
// interval, at which its Options.Timeout tries it.
const lockRetry = 50 * time.Millisecond

// openDB is bbolt.Open of path with o, waiting for the file's lock as bbolt does with a Timeout of
// timeout (0: no limit), tries lockRetry apart, but giving the wait up when ctx ends, with
// ctx.Err(). bbolt's own wait cannot be cut short: each try is a bbolt.Open that tries the lock
// once (a Timeout of 1ns), and closes the file if it is held.
func openDB(ctx context.Context, path string, timeout time.Duration, o *bbolt.Options) (*bbolt.DB, error) {
	o.Timeout = time.Nanosecond
	start := time.Now()
	var t *time.Timer
	for {
		db, err := bbolt.Open(path, 0o600, o)
		if err == nil || !errors.Is(err, berrors.ErrTimeout) {
			return db, err
		}
		// As bbolt: no try that would end past timeout (so a timeout of lockRetry or less tries once).
		if timeout != 0 && time.Since(start) > timeout-lockRetry {
			return nil, err
		}
		if t == nil {
			t = time.NewTimer(lockRetry)
			defer t.Stop()
		} else {
			t.Reset(lockRetry)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// openError is err, from openDB of path under ctx with lock timeout wait, with the path named once
// (the OS's error of opening the file, a missing directory say, names it already), bbolt's
// "timeout" said as what it is, ErrLocked after wait, and the end of ctx as ErrLocked and why the
// wait ended.
func openError(ctx context.Context, path string, wait time.Duration, err error) error {
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe) && pe.Op == "open" && pe.Path == path:
		return err
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("open %s: %w: gave up after %v (WithOpenTimeout; bbolt: %w)", path, ErrLocked, wait, err)
	case err == ctx.Err():
		return fmt.Errorf("open %s: %w: gave up waiting: %w", path, ErrLocked, err)
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// syncDB fsyncs the file, and commitTx runs a commit's transaction (variables for tests).
var (
	syncDB   = (*bbolt.DB).Sync
	commitTx = (*bbolt.DB).Update
)

// Commit implements workqueue.Journal with group commit.
func (q *Queue) Commit(changes []workqueue.Change) error {
	q.forgetRemoved(changes)
	if q.asyncAck && onlyAcks(changes) {
		q.mu.Lock()
		q.pending = append(q.pending, &commitReq{changes: changes})
		q.scheduleFlushLocked()
		q.mu.Unlock()
		return nil
	}
	r := &commitReq{changes: changes, done: make(chan error, 1)}
	q.mu.Lock()
	q.pending = append(q.pending, r)
	if q.committing {
		q.mu.Unlock()
		return <-r.done
	}
	q.committing = true
	for {
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		err := commitTx(q.db, func(tx *bbolt.Tx) error { return apply(tx, batch, q.epoch) })
		var again []*commitReq
		for _, b := range batch {
			if b.done != nil {
				b.done <- err
			} else if err != nil {
				again = append(again, b)
			}
		}
		q.mu.Lock()
		q.noteCommitLocked(err, len(again) > 0)
		if len(again) > 0 {
			// No caller waits for these (leases, async acks): they go before the changes that came
			// since, into the next try. That is this loop's if a caller waits for it, else a flush's.
			q.pending = append(again, q.pending...)
			if !anyWaits(q.pending) {
				q.committing = false
				q.scheduleFlushLocked()
			}
		}
		if !q.committing || len(q.pending) == 0 {
			q.committing = false
			q.mu.Unlock()
			return <-r.done
		}
	}
}

// failLogEvery bounds how often a failed commit is logged.
const failLogEvery = time.Minute

// noteCommitLocked counts the commits that failed in a row, for the flush's wait, and logs a
// failure that leaves changes to try again (retry) that no caller waits for, once in a run and at
// most once every failLogEvery, and the success that ends a logged run. Called with mu held.
func (q *Queue) noteCommitLocked(err error, retry bool) {
	if err != nil {
		q.failures++
		if retry && !q.failLogged && time.Since(q.failLogAt) >= failLogEvery {
			q.failLogged, q.failLogAt = true, time.Now()
			q.logger.Error("commit failed; leases and acks no caller waits for will be tried again", zap.Error(err))
		}
		return
	}
	if q.failures == 0 {
		return
	}
	if q.failLogged {
		q.logger.Info("commit succeeded after failures", zap.Int("failed", q.failures))
		q.failLogged = false
	}
	q.failures = 0
	// A flush scheduled while commits failed may be up to maxFlushDelay away: bring it to flushDelay.
	if q.flushing && q.flushTimer.Stop() {
		q.flushTimer.Reset(flushDelay)
	}
}

// anyWaits reports whether a caller waits for one of reqs.
func anyWaits(reqs []*commitReq) bool {
	for _, r := range reqs {
		if r.done != nil {
			return true
		}
	}
	return false
}

// onlyAcks reports whether changes are acks (of one Ack or one AckBatch) and nothing else.
func onlyAcks(changes []workqueue.Change) bool {
	for _, c := range changes {
		if c.Op != workqueue.OpDelete {
			return false
		}
	}
	return len(changes) > 0
}

// apply writes batch's changes in tx; a lease among them (a record with a deadline) is stamped with
// epoch, the Open that handed it out.
func apply(tx *bbolt.Tx, batch []*commitReq, epoch uint64) error {
	items, dead, meta := tx.Bucket(bucketItems), tx.Bucket(bucketDead), tx.Bucket(bucketMeta)
	var maxID uint64
	var k [8]byte
	for _, r := range batch {
		for _, c := range r.changes {
			binary.BigEndian.PutUint64(k[:], c.Record.ID)
			var err error
			switch c.Op {
			case workqueue.OpPut:
				var leaseEpoch uint64
				if !c.Record.Deadline.IsZero() {
					leaseEpoch = epoch
				}
				err = items.Put(k[:], encode(c.Record, leaseEpoch))
				maxID = max(maxID, c.Record.ID)
			case workqueue.OpExtend:
				err = extend(items, k[:], c.Record)
			case workqueue.OpDelete:
				err = items.Delete(k[:])
			case workqueue.OpBury:
				if err = items.Delete(k[:]); err == nil {
					err = dead.Put(k[:], encode(c.Record, 0))
				}
			}
			if err != nil {
				return err
			}
		}
	}
	if maxID > 0 {
		if v := meta.Get(keyLastID); len(v) != 8 || binary.BigEndian.Uint64(v) < maxID {
			binary.BigEndian.PutUint64(k[:], maxID)
			return meta.Put(keyLastID, append([]byte(nil), k[:]...))
		}
	}
	return nil
}

// extend stores r, a lease's new deadline, if the record stored under k holds that lease (the same
// attempt, leased), with the stored record's lease epoch: a lease recovered from an earlier Open
// keeps that Open's epoch, so its holder's token goes on holding it after the next restart too.
func extend(items *bbolt.Bucket, k []byte, r workqueue.Record) error {
	v := items.Get(k)
	if v == nil {
		return nil // acked or buried
	}
	stored, leaseEpoch, err := decode(v)
	if err != nil || stored.Attempt != r.Attempt || stored.Deadline.IsZero() {
		return nil // another lease, or none: this Extend lost the race with its lease's end
	}
	return items.Put(k, encode(r, leaseEpoch))
}

// scheduleFlushLocked makes a flush commit what is pending within flushDelay (longer after failed
// commits, see flushWaitLocked), unless one is scheduled already, a commit is running (it goes on
// until nothing is pending), or the queue is closing (Close commits what is pending itself). Called
// with mu held.
func (q *Queue) scheduleFlushLocked() {
	if !q.flushing && !q.committing && !q.closed {
		q.flushing = true
		q.flushWG.Add(1)
		q.flushTimer = time.AfterFunc(q.flushWaitLocked(), q.flush)
	}
}

// flushWaitLocked is how long the next flush waits: flushDelay, doubled for each commit that failed
// in a row after the first, at most maxFlushDelay.
func (q *Queue) flushWaitLocked() time.Duration {
	d := flushDelay
	for i := 1; i < q.failures && d < maxFlushDelay; i++ {
		d *= 2
	}
	return min(d, maxFlushDelay)
}

// testHookFlush, when not nil, is called by every flush as it starts.
var testHookFlush func()

// flush commits what async acks and leases left pending (unless another commit took it meanwhile).
func (q *Queue) flush() {
	defer q.flushWG.Done()
	if testHookFlush != nil {
		testHookFlush()
	}
	q.mu.Lock()
	q.flushing = false
	empty := len(q.pending) == 0
	q.mu.Unlock()
	if !empty {
		_ = q.Commit(nil) // on an error, Commit schedules the next try
	}
}

// CommitLater implements workqueue.LazyJournal: the changes go into the next commit, which happens
// within flushDelay even if no Add or Ack comes to make one.
func (q *Queue) CommitLater(changes []workqueue.Change) {
	q.forgetRemoved(changes)
	q.mu.Lock()
	q.pending = append(q.pending, &commitReq{changes: changes})
	q.scheduleFlushLocked()
	q.mu.Unlock()
}

// Close closes the queue, commits what is pending, and closes the file. Idempotent.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.Memory.Close()
		q.mu.Lock()
		q.closed = true
		if q.flushing && q.flushTimer.Stop() {
			q.flushing = false
			q.flushWG.Done()
		}
		q.mu.Unlock()
		q.flushWG.Wait()
		q.closeErr = q.Commit(nil)
		if err := q.db.Close(); q.closeErr == nil {
			q.closeErr = err
		}
	})
	return q.closeErr
}

// Shutdown drains (see workqueue.Memory.Shutdown) and then closes the file.
func (q *Queue) Shutdown(ctx context.Context) error {
	err := q.Memory.Shutdown(ctx)
	if cerr := q.Close(); err == nil {
		err = cerr
	}
	return err
}

// Statusz reports the queue's counts for a status page.
func (q *Queue) Statusz() (title string, header []string, rows [][]string) {
	_, header, rows = q.Memory.Statusz()
	return "workqueue (bolt " + q.db.Path() + ")", header, rows
}

// The record formats: version 1 (before lease epochs) and version 2, which adds after the dead flag
// the epoch of the Open that handed out the record's lease. A version 1 record's lease has epoch 0,
// as have the tokens of that version. encode writes version 2 only for a lease with an epoch. An
// Ack, Nack, Release or Bury rewrites its lease's record as version 1 (or deletes it), but a lease
// that runs out writes nothing: its record stays version 2 until its item's next lease ends by one
// of those. So a binary that knows version 1 only opens a file whose every lease with an epoch
// ended by Ack, Nack, Release or Bury.
const (
	recVersion1 = 1
	recVersion  = 2
)

// encode is r in the record format, with its lease's epoch: version 1 when that is 0.
func encode(r workqueue.Record, leaseEpoch uint64) []byte {
	b := make([]byte, 0, 72+len(r.Key)+len(r.Reason)+len(r.Payload))
	version := byte(recVersion)
	if leaseEpoch == 0 {
		version = recVersion1
	}
	b = append(b, version)
	b = binary.BigEndian.AppendUint64(b, r.ID)
	b = binary.AppendVarint(b, int64(r.Attempt))
	b = binary.AppendVarint(b, int64(r.Priority))
	b = binary.AppendVarint(b, unixNano(r.NotBefore))
	b = binary.AppendVarint(b, unixNano(r.Deadline))
	b = binary.AppendVarint(b, unixNano(r.Added))
	if r.Dead {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	if version == recVersion {
		b = binary.AppendUvarint(b, leaseEpoch)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Key)))
	b = append(b, r.Key...)
	b = binary.AppendUvarint(b, uint64(len(r.Reason)))
	b = append(b, r.Reason...)
	return append(b, r.Payload...)
}

// unixNano is t in nanoseconds since 1970, 0 for the zero time. It saturates where
// time.Time.UnixNano is undefined (after 2262, before 1678): a delay too long for the clock, which
// workqueue.Memory saturates to hundreds of years, stays in the future across a restart rather
// than wrapping around to the past (ready at once).
func unixNano(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.After(maxNano):
		return math.MaxInt64
	case t.Before(minNano):
		return math.MinInt64
	}
	return t.UnixNano()
}

// maxNano and minNano are the times UnixNano is defined between.
var (
	maxNano = time.Unix(0, math.MaxInt64)
	minNano = time.Unix(0, math.MinInt64)
)

func fromNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// decode reads a record of either version, and its lease's epoch.
func decode(b []byte) (r workqueue.Record, leaseEpoch uint64, err error) {
	if len(b) < 9 || b[0] != recVersion1 && b[0] != recVersion {
		return r, 0, errors.New("bad header")
	}
	version := b[0]
	r.ID = binary.BigEndian.Uint64(b[1:9])
	b = b[9:]
	var ints [5]int64
	for i := range ints {
		v, n := binary.Varint(b)
		if n <= 0 {
			return r, 0, errors.New("bad varint")
		}
		ints[i], b = v, b[n:]
	}
	r.Attempt, r.Priority = int(ints[0]), int(ints[1])
	r.NotBefore, r.Deadline, r.Added = fromNano(ints[2]), fromNano(ints[3]), fromNano(ints[4])
	if len(b) < 1 {
		return r, 0, errors.New("short record")
	}
	r.Dead, b = b[0] == 1, b[1:]
	if version == recVersion {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return r, 0, errors.New("bad epoch")
		}
		leaseEpoch, b = v, b[n:]
	}
	var strs [2]string
	for i := range strs {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return r, 0, errors.New("bad string")
		}
		strs[i], b = string(b[n:n+int(l)]), b[n+int(l):]
	}
	r.Key, r.Reason = strs[0], strs[1]
	r.Payload = append([]byte{}, b...)
	return r, leaseEpoch, nil
}
