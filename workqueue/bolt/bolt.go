package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/workqueue"
)

var (
	bucketItems = []byte("items")
	bucketDead  = []byte("dead")
	bucketMeta  = []byte("meta")
	keyLastID   = []byte("last-id")
)

// ErrCorrupt is returned by Open when a stored record cannot be decoded.
var ErrCorrupt = errors.New("workqueue/bolt: corrupt record")

// Option configures a Queue.
type Option interface{ apply(*config) }

type config struct {
	mem      []workqueue.Option
	timeout  time.Duration
	noSync   bool
	asyncAck bool
	logger   *zap.Logger
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLeaseDuration sets how long a lease lasts without Extend. Default 30s.
func WithLeaseDuration(d time.Duration) Option {
	return optionFunc(func(c *config) { c.mem = append(c.mem, workqueue.WithLeaseDuration(d)) })
}

// WithMaxAttempts buries an item instead of leasing it for attempt n+1. Default 0: unlimited.
func WithMaxAttempts(n int) Option {
	return optionFunc(func(c *config) { c.mem = append(c.mem, workqueue.WithMaxAttempts(n)) })
}

// WithLogger sets the logger. Default zap.NewNop().
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l; c.mem = append(c.mem, workqueue.WithLogger(l)) })
}

// WithOpenTimeout bounds how long Open waits for another process's lock on the file. Default 5s.
func WithOpenTimeout(d time.Duration) Option { return optionFunc(func(c *config) { c.timeout = d }) }

// WithNoSync skips fsync (faster, but a machine crash can lose acknowledged adds; a process crash
// cannot). Default false: every commit is fsynced.
func WithNoSync() Option { return optionFunc(func(c *config) { c.noSync = true }) }

// WithAsyncAck lets Ack and AckBatch return before their commit: the acks go into the next commit,
// which happens within a few milliseconds. A crash in that window hands the items out again (at
// least once, as always). Adds stay synchronous. Default false.
func WithAsyncAck() Option { return optionFunc(func(c *config) { c.asyncAck = true }) }

// flushDelay is how long an async ack may wait for a commit to carry it.
const flushDelay = 5 * time.Millisecond

// Queue is a durable work queue in one bbolt file. It is a workqueue.Memory whose every state change
// is committed to the file before it takes effect (see workqueue.Journal), so a process crash loses
// no added item: on Open, waiting items are ready again, and items that were leased stay leased until
// their lease deadline and then come back.
//
// Commits are group-committed: while one goroutine commits (one fsync), the changes of every other
// goroutine queue up and go into the next transaction together, so throughput grows with concurrency
// without any added delay. An Add and an Ack (and Nack, Bury) return after their commit; a Lease
// does not wait for one: its attempt count goes into the next commit (see workqueue.LazyJournal).
type Queue struct {
	*workqueue.Memory
	db *bbolt.DB

	mu         sync.Mutex
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
)

type commitReq struct {
	changes []workqueue.Change
	done    chan error
}

// Open opens (creating if needed) the queue stored at path and recovers its items.
func Open(path string, opts ...Option) (*Queue, error) {
	cfg := config{timeout: 5 * time.Second, logger: zap.NewNop()}
	for _, o := range opts {
		o.apply(&cfg)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: cfg.timeout, NoSync: cfg.noSync, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var recs []workqueue.Record
	var lastID uint64
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketItems, bucketDead, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keyLastID); len(v) == 8 {
			lastID = binary.BigEndian.Uint64(v)
		}
		for _, name := range [][]byte{bucketItems, bucketDead} {
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				r, err := decode(v)
				if err != nil {
					return fmt.Errorf("%w: key %x: %v", ErrCorrupt, k, err)
				}
				recs = append(recs, r)
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
	q := &Queue{db: db, asyncAck: cfg.asyncAck}
	mem, err := workqueue.NewMemory(append(cfg.mem, workqueue.WithJournal(q, recs, lastID))...)
	if err != nil {
		db.Close()
		return nil, err
	}
	q.Memory = mem
	cfg.logger.Info("queue opened", zap.String("path", path), zap.Int("records", len(recs)))
	return q, nil
}

// Commit implements workqueue.Journal with group commit.
func (q *Queue) Commit(changes []workqueue.Change) error {
	if q.asyncAck && onlyAcks(changes) {
		q.mu.Lock()
		q.pending = append(q.pending, &commitReq{changes: changes})
		if !q.flushing && !q.closed {
			q.flushing = true
			q.flushWG.Add(1)
			q.flushTimer = time.AfterFunc(flushDelay, q.flush)
		}
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
		err := q.db.Update(func(tx *bbolt.Tx) error { return apply(tx, batch) })
		for _, b := range batch {
			if b.done != nil {
				b.done <- err
			}
		}
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.committing = false
			q.mu.Unlock()
			return <-r.done
		}
	}
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

func apply(tx *bbolt.Tx, batch []*commitReq) error {
	items, dead, meta := tx.Bucket(bucketItems), tx.Bucket(bucketDead), tx.Bucket(bucketMeta)
	var maxID uint64
	var k [8]byte
	for _, r := range batch {
		for _, c := range r.changes {
			binary.BigEndian.PutUint64(k[:], c.Record.ID)
			var err error
			switch c.Op {
			case workqueue.OpPut:
				err = items.Put(k[:], encode(c.Record))
				maxID = max(maxID, c.Record.ID)
			case workqueue.OpDelete:
				err = items.Delete(k[:])
			case workqueue.OpBury:
				if err = items.Delete(k[:]); err == nil {
					err = dead.Put(k[:], encode(c.Record))
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

// flush commits what async acks left pending (unless another commit took it meanwhile).
func (q *Queue) flush() {
	defer q.flushWG.Done()
	q.mu.Lock()
	q.flushing = false
	empty := len(q.pending) == 0
	q.mu.Unlock()
	if !empty {
		_ = q.Commit(nil) // an error here resurfaces on the next synchronous commit's retry of the same state
	}
}

// CommitLater implements workqueue.LazyJournal: the changes go into the next commit.
func (q *Queue) CommitLater(changes []workqueue.Change) {
	q.mu.Lock()
	q.pending = append(q.pending, &commitReq{changes: changes})
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

const recVersion = 1

func encode(r workqueue.Record) []byte {
	b := make([]byte, 0, 64+len(r.Key)+len(r.Reason)+len(r.Payload))
	b = append(b, recVersion)
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
	b = binary.AppendUvarint(b, uint64(len(r.Key)))
	b = append(b, r.Key...)
	b = binary.AppendUvarint(b, uint64(len(r.Reason)))
	b = append(b, r.Reason...)
	return append(b, r.Payload...)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func decode(b []byte) (workqueue.Record, error) {
	var r workqueue.Record
	if len(b) < 9 || b[0] != recVersion {
		return r, errors.New("bad header")
	}
	r.ID = binary.BigEndian.Uint64(b[1:9])
	b = b[9:]
	var ints [5]int64
	for i := range ints {
		v, n := binary.Varint(b)
		if n <= 0 {
			return r, errors.New("bad varint")
		}
		ints[i], b = v, b[n:]
	}
	r.Attempt, r.Priority = int(ints[0]), int(ints[1])
	r.NotBefore, r.Deadline, r.Added = fromNano(ints[2]), fromNano(ints[3]), fromNano(ints[4])
	if len(b) < 1 {
		return r, errors.New("short record")
	}
	r.Dead, b = b[0] == 1, b[1:]
	var strs [2]string
	for i := range strs {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return r, errors.New("bad string")
		}
		strs[i], b = string(b[n:n+int(l)]), b[n+int(l):]
	}
	r.Key, r.Reason = strs[0], strs[1]
	r.Payload = append([]byte{}, b...)
	return r, nil
}
