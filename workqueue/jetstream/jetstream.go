package jetstream

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/workqueue"
)

// Headers this backend sets on messages.
const (
	HeaderKey       = "Pb-Key"        // the item's dedup key, unless HeaderKeyB64 carries it
	HeaderNotBefore = "Pb-Not-Before" // unix nanoseconds before which the item is not delivered
	HeaderPriority  = "Pb-Priority"   // recorded, not used for ordering
	HeaderID        = "Pb-Id"         // on dead letters: the item's ID
	HeaderAttempts  = "Pb-Attempts"   // on dead letters: deliveries used
	HeaderReason    = "Pb-Reason"     // on dead letters: why it was buried
	HeaderTime      = "Pb-Time"       // on dead letters: when it was buried (RFC 3339)

	// HeaderKeyB64 carries, in place of HeaderKey, the base64 (RawURLEncoding, as in the item's
	// subject) of a key that a NATS header would not carry unchanged: one with a byte below 0x20
	// other than tab, or 0x7f (nats.go turns CR and LF into spaces, and Go's net/textproto, which
	// other clients read headers with, refuses the others), or with a space or tab first or last
	// (nats.go trims them).
	HeaderKeyB64 = "Pb-Key-B64"
)

// MaxKeyLen bounds a key, in bytes: Add refuses a longer one with an error wrapping
// workqueue.ErrInvalid. It is workqueue.APIMaxKeyLen (2048): one limit for the API and every
// backend (Memory and workqueue/bolt have none of their own), so that a key the API takes is taken
// whichever queue serves it. Here it keeps the publish's control line within the server's
// max_control_line (4096 bytes by default; a longer line gets the connection closed by the
// server): the item's subject holds the key's base64, a subject of at most 2801 bytes with the
// longest queue name, and with the reply subject and the sizes the line stays under 2900 bytes.
// This backend alone would take keys of nearly 3000 bytes (with the longest queue name, 2980 pass
// and 3000 do not); the API's limit is the lower, and serves both.
const MaxKeyLen = workqueue.APIMaxKeyLen

// keyAsIs reports whether a NATS header carries key unchanged: every byte is a tab, 0x20-0x7e or
// 0x80 and above, and neither the first nor the last is a space or a tab.
func keyAsIs(key string) bool {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	if n := len(key); n > 0 && (key[0] == ' ' || key[0] == '\t' || key[n-1] == ' ' || key[n-1] == '\t') {
		return false
	}
	return true
}

// setKey records a non-empty key in h, in HeaderKey or, if a header does not carry it unchanged,
// in HeaderKeyB64; getKey reads it back.
func setKey(h nats.Header, key string) {
	if keyAsIs(key) {
		h.Set(HeaderKey, key)
	} else {
		h.Set(HeaderKeyB64, base64.RawURLEncoding.EncodeToString([]byte(key)))
	}
}

// keySize is the size of the header setKey records key in, as nats.Msg counts it: its name, ": ",
// its value and CRLF. 0 for no key.
func keySize(key string) int {
	switch {
	case key == "":
		return 0
	case keyAsIs(key):
		return len(HeaderKey) + 4 + len(key)
	default:
		return len(HeaderKeyB64) + 4 + base64.RawURLEncoding.EncodedLen(len(key))
	}
}

// getKey returns the key setKey recorded in h ("" for none). A message written before
// HeaderKeyB64 has only HeaderKey, read as it is; a HeaderKeyB64 that is not base64 (not written
// by setKey) is returned as it is, so nothing of it is lost.
func getKey(h nats.Header) string {
	if k := h.Get(HeaderKey); k != "" {
		return k
	}
	b64 := h.Get(HeaderKeyB64)
	if b64 == "" {
		return ""
	}
	k, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return b64
	}
	return string(k)
}

// MaxReasonLen bounds a dead letter's reason, in bytes. Bury, and an item running out of
// attempts, record a longer reason cut at a rune boundary and marked with a trailing "..." to fit
// in MaxReasonLen bytes (or fewer, should an item have less room under the server's max_payload
// than Add reserves for its dead letter: one added by an older version, or a server whose
// max_payload has shrunk since).
const MaxReasonLen = 1024

// deadHeaderRoom is the most a dead letter's headers take besides its key's: the header block's
// "NATS/1.0" line and final CRLF, and per header its name, ": ", its value at its longest and CRLF
// (1159 bytes). A key takes keySize more, on the item as on its dead letter.
const deadHeaderRoom = len("NATS/1.0\r\n\r\n") +
	len(HeaderID) + 4 + 20 + // a stream sequence, a uint64
	len(HeaderAttempts) + 4 + 20 + // an int
	len(HeaderReason) + 4 + MaxReasonLen +
	len(HeaderTime) + 4 + len(time.RFC3339Nano) // longer than any time it formats in UTC

// reasonCut marks a reason cut to fit (cutReason).
const reasonCut = "..."

// cutReason returns reason if it has at most n bytes, else its longest prefix that ends at a rune
// boundary and, with reasonCut after it, has at most n bytes ("" for an n too small for reasonCut).
func cutReason(reason string, n int) string {
	if len(reason) <= n {
		return reason
	}
	if n < len(reasonCut) {
		return ""
	}
	i := n - len(reasonCut)
	for i > 0 && !utf8.RuneStart(reason[i]) {
		i--
	}
	return reason[:i] + reasonCut
}

// Option configures a Queue.
type Option interface{ apply(*config) }

type config struct {
	ackWait     time.Duration
	maxAttempts int
	replicas    int
	batch       int
	asyncAck    bool
	logger      *zap.Logger
	reg         prometheus.Registerer
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLeaseDuration sets the consumer's AckWait, the lease length. Default 30s.
func WithLeaseDuration(d time.Duration) Option { return optionFunc(func(c *config) { c.ackWait = d }) }

// WithMaxAttempts buries an item (publishes it to the dead-letter stream and acks it) instead of
// leasing it for attempt n+1. Default 0: unlimited.
func WithMaxAttempts(n int) Option { return optionFunc(func(c *config) { c.maxAttempts = n }) }

// WithReplicas sets the streams' replica count (3 on a 3-node cluster). Default 1.
func WithReplicas(n int) Option { return optionFunc(func(c *config) { c.replicas = n }) }

// WithFetchBatch lets Lease pull up to n messages at once and hand them out one by one as they
// arrive (a pulled message counts as leased from the moment the pull was requested, and is refreshed
// with InProgress when handed out if it waited more than a quarter of the lease). Default 10; 1 takes
// exactly one per Lease.
func WithFetchBatch(n int) Option { return optionFunc(func(c *config) { c.batch = n }) }

// WithAsyncAck makes Ack and Nack fire-and-forget (a lost ack means a redelivery, a lost nak a
// redelivery after the lease). Default: they wait for the server's confirmation, so an item is gone
// (or back) when Ack (or Nack) returns.
func WithAsyncAck() Option { return optionFunc(func(c *config) { c.asyncAck = true }) }

// WithLogger sets the logger. Default zap.NewNop().
func WithLogger(l *zap.Logger) Option { return optionFunc(func(c *config) { c.logger = l }) }

// WithRegisterer registers the queue's metrics with r: podblocks_workqueue_queue_items{state} and
// podblocks_workqueue_queue_stats_errors_total with the label queue="<name>" (see
// workqueue.NewStatsCollector), read with Stats (three JetStream API requests, up to 2s) when r's
// gatherer is scraped. Ready, leased and dead are as Stats reports them; delayed is always 0. A
// failed Stats is logged and counted, and leaves the gauges out of that scrape. Open returns the
// registerer's error if r has a queue of this name already, or an unnamed one (see
// workqueue.WithQueueName); Close unregisters them. Default nil: not registered.
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(c *config) { c.reg = r })
}

// ConsumerName is the durable pull consumer every Queue of one name shares.
const ConsumerName = "workers"

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckName returns nil if name is a queue name Open takes (1 to 64 of A-Z a-z 0-9 _ -), and
// otherwise an error wrapping workqueue.ErrInvalid that names it: a command can check a name it
// was given before it connects to NATS.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("%w: queue name %q (want 1-64 of A-Z a-z 0-9 _ -)", workqueue.ErrInvalid, name)
	}
	return nil
}

// Queue is a workqueue.Queue on a NATS JetStream WorkQueue-retention stream WQ_<name> (subjects
// wq.<name>.>) with one durable pull consumer: the lease is the consumer's AckWait, Extend is
// InProgress, Nack is NakWithDelay, and Bury (or running out of attempts) publishes the item to the
// stream WQ_<name>_DEAD (subject wqdead.<name>) and acks it.
//
// Differences from Memory, documented: priorities are recorded but delivery is in stream order; a
// key deduplicates while its item is in the stream, leased or not (the stream keeps one message per
// key subject), so an add while the key is leased is absorbed rather than queued behind it.
//
// A delayed add is published with a not-before header; its first delivery is nacked with the
// remaining delay (that delivery is not counted as an attempt).
type Queue struct {
	cfg      config
	nc       *nats.Conn
	js       jetstream.JetStream
	cons     jetstream.Consumer
	str      jetstream.Stream
	name     string
	stream   string
	dead     string
	prefix   string
	deadSubj string
	nextSubj string // the consumer's pull request subject, for waitPull

	closeCtx context.Context
	closeFn  context.CancelFunc

	// metricsReg is the registerer the metrics are registered with until Close (under mu).
	metricsReg prometheus.Registerer
	metrics    prometheus.Collector

	tokSeq  atomic.Uint64
	fetchMu sync.Mutex             // one no-wait pull at a time
	cur     atomic.Pointer[pulled] // the pull Leases take messages from
	closed  atomic.Bool            // set under mu
	spare   chan buffered          // unbuffered: messages of pulls whose Lease gave up, for the next Lease
	pulls   sync.WaitGroup         // blocking pulls: Leases in await, orphans (Add under mu, before closed)
	mu      sync.Mutex
	leases  map[uint64]*held // by the counter that ends the token
	// sweeper runs sweep every sweepEvery while leases has any (sweeping, under mu), so that a
	// lease is forgotten after its deadline whether or not the queue is used again.
	sweeper   *time.Timer
	sweeping  bool
	repullLog atomic.Int64            // unix nanoseconds of the last logRepull line
	goneCheck atomic.Int64            // unix nanoseconds of the last question of consumerGone
	gone      atomic.Pointer[verdict] // its last answer if the consumer was not found, else nil

	// subscribed, if set (by tests), runs in startPull between the subscription and its closed
	// handler.
	subscribed func(*nats.Subscription)
}

var _ workqueue.Queue = (*Queue)(nil)

// held is a lease handed out, with the Item Lease returned for it (one allocation for both).
type held struct {
	msg      delivery
	deadline time.Time
	attempt  int
	id       string
	key      string
	tok      string
	item     workqueue.Item

	// busy is set (under mu) while an Ack, Nack, Extend or Bury of the lease has its turn (claim):
	// others wait for it to settle, so that each learns what the one before did. settled, made
	// (under mu) by the first of them to wait, is closed when it settles.
	busy    bool
	settled chan struct{}
	// deadSent is set once Bury has published the item's dead letter, so that a Bury retried
	// after its ack failed does not publish it again. Only the use holding busy uses it.
	deadSent bool
	// nakUnanswered is set once a Nack's nak went out and its answer did not come (noAnswer):
	// the server may have taken it, and then hands the item out again once its delay ends, so
	// nothing is sent on the lease again (see Nack). Only the use holding busy uses it.
	nakUnanswered bool
}

type buffered struct {
	msg delivery
	// recv starts the lease's deadline: when its pull was sent, for a fetch batch (no later than
	// the server delivered it), or when it reached the Lease, for a blocking pull (later than the
	// server delivered it, by its transit: see Expired leases across processes in doc.go).
	recv time.Time
}

// pulled is a no-wait pull whose messages are being handed out: Leases take them from its channel
// as they arrive, and the one that takes its end (its status, or the last message of a whole batch)
// ends it for all (endPull).
type pulled struct {
	p    *waitPull
	at   time.Time     // when it was requested: its messages' AckWait started later
	n    atomic.Int32  // messages taken from it
	fin  chan struct{} // closed when it has ended
	err  error         // the status it ended with, if an error; set before fin is closed
	once sync.Once
	lost atomic.Pointer[time.Timer] // runs lostCheck every pullLost until the pull ends
}

// pullLost bounds how long a no-wait pull may take to bring its answer: the server sends it at
// once, and nats.go's own Fetch gives up after a second without a message. A message the server
// sends to a pull after that (its answer later than pullLost) is dropped with the pull's
// subscription and comes back after AckWait.
const pullLost = 2 * time.Second

// lostCheck ends a no-wait pull whose answer is lost (a reconnect): nothing of it is waiting in
// its channel pullLost after the pull, or after the last check. Messages waiting there (or its
// status behind them) mean the answer came and waits for Leases to take it, however long that
// takes (take refreshes or drops a message that waited long): it checks again pullLost later.
func (q *Queue) lostCheck(cur *pulled) {
	select {
	case <-cur.fin:
		return
	default:
	}
	if len(cur.p.ch) > 0 {
		cur.lost.Load().Reset(pullLost)
		return
	}
	q.endPull(cur, nil)
}

// pull starts a no-wait pull of up to a batch, unless another Lease has just started one.
func (q *Queue) pull() (*pulled, error) {
	q.fetchMu.Lock()
	defer q.fetchMu.Unlock()
	if cur := q.cur.Load(); cur != nil {
		return cur, nil
	}
	at := time.Now()
	p, err := q.startPull(q.cfg.batch, 0)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	cur := &pulled{p: p, at: at, fin: make(chan struct{})}
	// Armed once stored, so that lostCheck and endPull always find it.
	lost := time.AfterFunc(math.MaxInt64, func() { q.lostCheck(cur) })
	cur.lost.Store(lost)
	lost.Reset(pullLost)
	q.mu.Lock()
	closed := q.closed.Load()
	if !closed {
		q.cur.Store(cur)
	}
	q.mu.Unlock()
	if closed {
		q.release(cur)
		return nil, workqueue.ErrClosed
	}
	return cur, nil
}

// endPull ends a no-wait pull, once: its subscription goes, Leases waiting on it wake and learn err,
// and the messages left in its channel (only when it ended before Leases took its whole answer:
// one that came just as lostCheck ended it, a closed connection, Close) are given back.
func (q *Queue) endPull(cur *pulled, err error) {
	cur.once.Do(func() {
		cur.lost.Load().Stop()
		cur.err = err
		cur.p.done()
		q.cur.CompareAndSwap(cur, nil)
		close(cur.fin)
		giveBackAll(cur.p.rest())
	})
}

// release gives back (giveBack) the messages of a pull that no Lease will take, including those the
// server is still sending (the pull is stopped as a blocking pull is, within drainWait).
func (q *Queue) release(cur *pulled) {
	giveBackAll(cur.p.stop())
	q.endPull(cur, nil)
}

// Open creates (or updates) the streams and the consumer for queue name on nc and returns the queue.
// nc stays the caller's: Close does not close it.
func Open(ctx context.Context, nc *nats.Conn, name string, opts ...Option) (*Queue, error) {
	cfg := config{ackWait: 30 * time.Second, replicas: 1, batch: 10, logger: zap.NewNop()}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := CheckName(name); err != nil {
		return nil, err
	}
	switch {
	case cfg.ackWait <= 0:
		return nil, fmt.Errorf("%w: lease duration %v", workqueue.ErrInvalid, cfg.ackWait)
	case cfg.maxAttempts < 0:
		return nil, fmt.Errorf("%w: max attempts %d", workqueue.ErrInvalid, cfg.maxAttempts)
	case cfg.replicas < 1 || cfg.batch < 1:
		return nil, fmt.Errorf("%w: replicas %d, fetch batch %d", workqueue.ErrInvalid, cfg.replicas, cfg.batch)
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		cfg: cfg, nc: nc, js: js, name: name,
		stream: "WQ_" + name, dead: "WQ_" + name + "_DEAD",
		prefix: "wq." + name, deadSubj: "wqdead." + name,
		leases: make(map[uint64]*held),
		spare:  make(chan buffered),
	}
	q.nextSubj = "$JS.API.CONSUMER.MSG.NEXT." + q.stream + "." + ConsumerName
	q.str, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:                 q.stream,
		Subjects:             []string{q.prefix + ".>"},
		Retention:            jetstream.WorkQueuePolicy,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    1,
		Storage:              jetstream.FileStorage,
		Replicas:             cfg.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", q.stream, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     q.dead,
		Subjects: []string{q.deadSubj},
		Storage:  jetstream.FileStorage,
		Replicas: cfg.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", q.dead, err)
	}
	q.cons, err = js.CreateOrUpdateConsumer(ctx, q.stream, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: -1,
		// No filter: the stream holds only the queue's subjects, and an unfiltered consumer saves
		// the server a filtered-pending count on every message it loads.
		Replicas: cfg.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	if cfg.reg != nil {
		c := workqueue.NewStatsCollector(name, q.Stats, cfg.logger)
		if err := cfg.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register queue metrics of %s: a queue of this name, or an unnamed one, is registered already (close it first): %w", name, err)
		}
		q.metricsReg, q.metrics = cfg.reg, c
	}
	q.closeCtx, q.closeFn = context.WithCancel(context.Background())
	return q, nil
}

func (q *Queue) isClosed() bool { return q.closed.Load() }

// Add implements workqueue.Queue. It returns once the stream has stored (and, with replicas,
// replicated) the message.
//
// A key comes back byte for byte in Item.Key and DeadItem.Key, whatever bytes it holds. The
// item's subject ends in its base64 (RawURLEncoding), which deduplicates it; the header HeaderKey
// holds the key as is, or, for a key a NATS header would not carry unchanged (see HeaderKeyB64),
// the header HeaderKeyB64 holds its base64 instead. A key longer than MaxKeyLen bytes is refused
// with an error wrapping workqueue.ErrInvalid.
//
// A payload is refused with an error wrapping workqueue.ErrTooLarge unless it fits in the NATS
// server's max_payload (1 MiB by default) together with the headers of its dead letter at their
// longest, so that it can always be buried: its ID, attempt count, time and a reason of up to
// MaxReasonLen bytes take 1159 bytes, and a key in HeaderKey 10 bytes more than its length, in
// HeaderKeyB64 14 bytes more than its base64's (ceil(4*len(key)/3)) (these are more than the
// item's own headers, the key, delay and priority). So the largest payload is max_payload-1159
// bytes, or max_payload-1169-len(key) with a key in HeaderKey, max_payload-1173-len(base64) with
// one in HeaderKeyB64.
func (q *Queue) Add(ctx context.Context, payload []byte, opts workqueue.AddOptions) (string, error) {
	if q.isClosed() {
		return "", workqueue.ErrClosed
	}
	if opts.Delay < 0 {
		return "", fmt.Errorf("%w: negative delay %v", workqueue.ErrInvalid, opts.Delay)
	}
	if len(opts.Key) > MaxKeyLen {
		return "", fmt.Errorf("%w: key of %d bytes, more than MaxKeyLen (%d): the subject holding its base64 would pass the NATS server's control line limit",
			workqueue.ErrInvalid, len(opts.Key), MaxKeyLen)
	}
	m := nats.NewMsg("")
	m.Data = payload
	if opts.Key != "" {
		m.Subject = q.prefix + ".k." + base64.RawURLEncoding.EncodeToString([]byte(opts.Key))
		setKey(m.Header, opts.Key)
	} else {
		m.Subject = q.prefix + ".u." + nuid.Next()
	}
	if opts.Delay > 0 {
		m.Header.Set(HeaderNotBefore, strconv.FormatInt(time.Now().Add(opts.Delay).UnixNano(), 10))
	}
	if opts.Priority != 0 {
		m.Header.Set(HeaderPriority, strconv.Itoa(opts.Priority))
	}
	// The server takes no message whose payload and headers are larger than its max_payload: not
	// the item, nor its dead letter, whose headers are longer (bury).
	dead := len(payload) + deadHeaderRoom + keySize(opts.Key)
	if limit, size := q.nc.MaxPayload(), int64(max(m.Size()-len(m.Subject), dead)); limit > 0 && size > limit {
		return "", fmt.Errorf("%w: %d bytes with the %d bytes of headers of its dead letter at their longest, more than the NATS server's max_payload of %d",
			workqueue.ErrTooLarge, len(payload), size-int64(len(payload)), limit)
	}
	for try := 0; ; try++ {
		ack, err := q.js.PublishMsg(ctx, m)
		if err == nil {
			return strconv.FormatUint(ack.Sequence, 10), nil
		}
		if errors.Is(err, nats.ErrMaxPayload) { // a server with a smaller max_payload since the check
			return "", fmt.Errorf("publish: %w (%w)", workqueue.ErrTooLarge, err)
		}
		if opts.Key == "" || !strings.Contains(err.Error(), "maximum messages per subject") || try >= 3 {
			return "", fmt.Errorf("publish: %w", classify(ctx, err))
		}
		// The key's item is still in the stream: return its ID (unless it was acked meanwhile).
		raw, gerr := q.str.GetLastMsgForSubject(ctx, m.Subject)
		if gerr == nil {
			return strconv.FormatUint(raw.Sequence, 10), nil
		}
		if !errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return "", fmt.Errorf("look up key %q: %w", opts.Key, classify(ctx, gerr))
		}
	}
}

// Lease implements workqueue.Queue. A pull that ends with a transient status (see
// statusError.transient) is made again after a backoff; other errors end the Lease.
func (q *Queue) Lease(ctx context.Context) (*workqueue.Item, error) {
	backoff := repullMin
	for {
		if q.isClosed() {
			return nil, workqueue.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := q.next(ctx)
		if err != nil {
			if q.isClosed() {
				return nil, workqueue.ErrClosed
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			var se *statusError
			if !errors.As(err, &se) || !se.transient() {
				return nil, classify(ctx, err)
			}
			if se.code == "503" {
				if err := q.consumerGone(ctx); err != nil {
					return nil, err
				}
			}
			q.logRepull(se, backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case b := <-q.spare: // an earlier Lease's pull brought a message: take it now, or
				// handOff naks it and its next delivery counts one attempt more
				t.Stop()
				if it := q.take(ctx, b); it != nil {
					return it, nil
				}
				continue
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-q.closeCtx.Done():
				t.Stop()
				return nil, workqueue.ErrClosed
			}
			backoff = min(2*backoff, repullMax)
			continue
		}
		backoff = repullMin
		if b.msg == nil {
			continue
		}
		if it := q.take(ctx, b); it != nil {
			return it, nil
		}
	}
}

// verdict is the server's answer, at unix nanoseconds at, that the consumer is not found.
type verdict struct {
	at  int64
	err error
}

// consumerGone tells a consumer that no longer exists from a JetStream that does not answer for a
// moment, both of which end pulls with 503 (no responders): it asks the server for the consumer's
// info, and returns an error wrapping ErrConsumerGone if the server says that the consumer, or its
// stream, is not found. No answer (a failover) is not a verdict. One Lease asks at a time, at most
// once per goneCheckEvery; the others go by the last answer if it is that recent (one asked a
// moment ago, or is asking now).
func (q *Queue) consumerGone(ctx context.Context) error {
	now := time.Now().UnixNano()
	if claimEvery(&q.goneCheck, now, goneCheckEvery) {
		cctx, cancel := context.WithTimeout(ctx, goneCheckWait)
		_, err := q.cons.Info(cctx)
		cancel()
		switch {
		case err == nil:
			q.gone.Store(nil)
		case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
			q.gone.Store(&verdict{now, err})
		}
	}
	if v := q.gone.Load(); v != nil && now-v.at < int64(goneCheckEvery+goneCheckWait) {
		return fmt.Errorf("pull: status 503: %w: %s of stream %s: %w", ErrConsumerGone, ConsumerName, q.stream, v.err)
	}
	return nil
}

// logRepull logs a pull that ended with a transient status, at most once per repullLogEvery
// across the queue's Leases.
func (q *Queue) logRepull(se *statusError, backoff time.Duration) {
	if !claimEvery(&q.repullLog, time.Now().UnixNano(), repullLogEvery) {
		return
	}
	q.cfg.logger.Info("pull ended by the server, pulling again", zap.String("status", se.code),
		zap.String("description", se.desc), zap.Duration("backoff", backoff))
}

// claimEvery reports whether the caller, at unix nanoseconds now, is the one of the queue's Leases
// to act: at most once per every, by when it last did, stored in last.
func claimEvery(last *atomic.Int64, now int64, every time.Duration) bool {
	l := last.Load()
	return now-l >= int64(every) && last.CompareAndSwap(l, now)
}

// next returns one message from the current pull or a new one, or a nil message when a pull expired.
// With a fetch batch, messages are handed out as they arrive, while the rest of the pull is still
// on its way (a raw Fetch loop works the same way).
func (q *Queue) next(ctx context.Context) (buffered, error) {
	select {
	case b := <-q.spare: // a message for a Lease that gave up comes first
		return b, nil
	default:
	}
	for q.cfg.batch > 1 {
		cur := q.cur.Load()
		if cur == nil {
			var err error
			if cur, err = q.pull(); err != nil {
				return buffered{}, err
			}
		}
		var m *nats.Msg
		select {
		case m = <-cur.p.ch: // most Leases find a message waiting
		default:
			select {
			case m = <-cur.p.ch:
			case <-cur.fin:
			case <-cur.p.gone: // removed under the pull (a closed connection), unless it ended
				q.endPull(cur, fmt.Errorf("fetch: %w", q.subGone()))
			case b := <-q.spare:
				return b, nil
			case <-ctx.Done():
				return buffered{}, ctx.Err()
			}
		}
		if m != nil {
			st := pullStatus(m)
			if st == "" {
				if cur.n.Add(1) == int32(q.cfg.batch) {
					q.endPull(cur, nil) // the server sends nothing after a whole batch
				}
				return buffered{coreMsg{m}, cur.at}, nil
			}
			end, err := statusEnd(st, m)
			if !end {
				continue
			}
			q.endPull(cur, err)
		}
		// The pull has ended: with its status's error, if any (a transient one makes Lease pull
		// again after a backoff), else empty-handed (wait below) or after messages (pull again).
		if cur.err != nil {
			return buffered{}, cur.err
		}
		if cur.n.Load() == 0 {
			break
		}
	}
	return q.await(ctx)
}

// await waits for one message from a blocking pull of its own or from a pull whose Lease gave up.
//
// The pull does not end with ctx: cut short, it could lose a message the server is delivering to it
// right then (stop gets that back, but it then counts as a delivery, an attempt). Instead, a Lease
// that gives up leaves its pull to a goroutine (orphan), which hands its message, if one comes, to
// the next Lease. The pull keeps ctx's deadline, capped at 5s, and Close stops it.
func (q *Queue) await(ctx context.Context) (buffered, error) {
	dl := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	wait := time.Until(dl)
	if wait < 5*time.Millisecond {
		// Too close to the deadline for a pull request.
		select {
		case b := <-q.spare:
			return b, nil
		case <-ctx.Done():
			return buffered{}, ctx.Err()
		}
	}
	// Close waits for the pull to end and give back what it brought.
	q.mu.Lock()
	if q.closed.Load() {
		q.mu.Unlock()
		return buffered{}, workqueue.ErrClosed
	}
	q.pulls.Add(1)
	q.mu.Unlock()
	defer q.pulls.Done()
	// The server ends the request a little before dl (as Fetch does with a context deadline), so
	// that its end arrives before ctx's.
	p, err := q.startPull(1, wait-min(wait/10, time.Second))
	if err != nil {
		if ctx.Err() != nil {
			return buffered{}, ctx.Err()
		}
		return buffered{}, fmt.Errorf("pull: %w", err)
	}
	b, running, err := q.follow(ctx, p, q.spare)
	if running {
		q.orphan(p)
	}
	return b, err
}

// follow waits for what a pull brings: its message (b.msg set), its end (b.msg nil), or Close,
// which stops it and gives back what it brought (ErrClosed). A Lease passes q.spare and its ctx as
// well: a message from spare, or ctx's end (its error), returns with running set, the pull still
// going; an orphan passes a nil spare and a ctx that never ends.
func (q *Queue) follow(ctx context.Context, p *waitPull, spare chan buffered) (b buffered, running bool, err error) {
	// Should the server's end of the pull be lost (a reconnect), it ends a second after it was due.
	t := time.NewTimer(time.Until(p.expires) + time.Second)
	defer t.Stop()
	for {
		select {
		case m := <-p.ch:
			st := pullStatus(m)
			if st == "" {
				p.done()
				return buffered{coreMsg{m}, time.Now()}, false, nil
			}
			if end, err := statusEnd(st, m); end {
				p.done()
				return buffered{}, false, err
			}
		case <-p.gone:
			// The subscription went while the pull was on: the connection was closed or drained.
			return buffered{}, false, fmt.Errorf("pull: %w", q.subGone())
		case b := <-spare:
			return b, true, nil
		case <-ctx.Done():
			return buffered{}, true, ctx.Err()
		case <-q.closeCtx.Done():
			giveBackAll(p.stop())
			return buffered{}, false, workqueue.ErrClosed
		case <-t.C:
			giveBackAll(p.stop())
			return buffered{}, false, nil
		}
	}
}

// subGone is the error of a pull whose subscription went away under it: nats.ErrConnectionClosed
// when the connection was closed, else errSubClosed.
func (q *Queue) subGone() error {
	if q.nc.IsClosed() {
		return nats.ErrConnectionClosed
	}
	return errSubClosed
}

// errSubClosed is a pull's subscription removed by something other than the pull itself, such as
// a drain of the connection.
var errSubClosed = errors.New("subscription closed")

// orphan leaves a blocking pull whose Lease has gone to a goroutine that hands its message to the
// next Lease.
func (q *Queue) orphan(p *waitPull) {
	q.mu.Lock()
	closed := q.closed.Load()
	if !closed {
		q.pulls.Add(1)
	}
	q.mu.Unlock()
	if closed {
		giveBackAll(p.stop())
		return
	}
	go func() {
		defer q.pulls.Done()
		if b, _, _ := q.follow(context.Background(), p, nil); b.msg != nil {
			q.handOff(b)
		}
	}()
}

// giveBackAll gives back the messages a stopped pull brought.
func giveBackAll(ms []*nats.Msg) {
	for _, m := range ms {
		giveBack(coreMsg{m})
	}
}

// handOff gives a message to the next Lease. If none comes within a second (or a quarter of the
// lease, if shorter), or the queue closes, the message is nacked so that the server redelivers it at
// once instead of after AckWait; its delivery has been counted all the same (NATS counts every
// delivery, and a Nak cannot take one back), so that item's next lease shows one attempt more.
func (q *Queue) handOff(b buffered) {
	t := time.NewTimer(min(q.cfg.ackWait/4, time.Second))
	defer t.Stop()
	select {
	case q.spare <- b:
	case <-t.C:
		giveBack(b.msg)
	case <-q.closeCtx.Done():
		giveBack(b.msg)
	}
}

// giveBack naks a message no Lease took; a delayed item's first delivery keeps the rest of its delay.
func giveBack(m delivery) {
	if nb := m.Headers().Get(HeaderNotBefore); nb != "" {
		if delivered, _, ok := ackSeqs(m.Reply()); ok && delivered == 1 {
			holdUntil(m, nb)
			return
		}
	}
	_ = m.Nak()
}

// holdUntil naks a delayed item's first delivery with the rest of its delay (nb is its not-before
// header).
func holdUntil(m delivery, nb string) {
	n, _ := strconv.ParseInt(nb, 10, 64)
	_ = m.NakWithDelay(max(time.Until(time.Unix(0, n)), 0))
}

// take turns a delivered message into a lease, or handles it (delay, max attempts) and returns nil.
func (q *Queue) take(ctx context.Context, b buffered) *workqueue.Item {
	delivered, seq, ok := ackSeqs(b.msg.Reply())
	if !ok {
		q.cfg.logger.Warn("message without JetStream metadata", zap.String("reply", b.msg.Reply()))
		return nil
	}
	h := b.msg.Headers()
	attempt := int(delivered)
	if nb := h.Get(HeaderNotBefore); nb != "" {
		if delivered == 1 {
			holdUntil(b.msg, nb)
			return nil
		}
		attempt--
	}
	if q.cfg.maxAttempts > 0 && attempt > q.cfg.maxAttempts {
		id := strconv.FormatUint(seq, 10)
		var sent bool
		if err := q.bury(ctx, b.msg, id, getKey(h), attempt-1, fmt.Sprintf("max attempts (%d) used", q.cfg.maxAttempts), &sent); err != nil {
			q.cfg.logger.Warn("bury failed", zap.String("id", id), zap.Error(err))
		}
		return nil
	}
	now := time.Now()
	deadline := b.recv.Add(q.cfg.ackWait)
	if b.recv.Before(now.Add(-q.cfg.ackWait / 4)) {
		if deadline.Before(now) {
			return nil // the server has redelivered it meanwhile
		}
		if err := b.msg.InProgress(); err == nil {
			deadline = now.Add(q.cfg.ackWait)
		}
	}
	var prio int
	if p := h.Get(HeaderPriority); p != "" {
		prio, _ = strconv.Atoi(p)
	}
	// The token is <stream sequence>.<delivery count>.<the queue's own counter>: the first two name
	// one delivery, the counter makes it unique to this Queue value as well. The ID is the token's
	// first part, so the two take one allocation, and the lease and its Item another.
	var tb [64]byte
	t := strconv.AppendUint(tb[:0], seq, 10)
	idLen := len(t)
	t = append(t, '.')
	t = strconv.AppendUint(t, delivered, 10)
	t = append(t, '.')
	n := q.tokSeq.Add(1)
	t = strconv.AppendUint(t, n, 36)
	tok := string(t)
	key := getKey(h)
	l := &held{msg: b.msg, deadline: deadline, attempt: attempt, id: tok[:idLen], key: key, tok: tok}
	l.item = workqueue.Item{ID: l.id, Key: key, Payload: b.msg.Data(), Priority: prio, Attempt: attempt, Lease: tok, Deadline: deadline}
	q.mu.Lock()
	if delivered > 1 && !q.endEarlierLeasesLocked(l) {
		q.mu.Unlock()
		return nil // a later delivery of the item is out already: this one is over
	}
	q.leases[n] = l
	if !q.sweeping {
		q.armSweep()
	}
	q.mu.Unlock()
	return &l.item
}

// endEarlierLeasesLocked forgets the leases of earlier deliveries of l's item that this Queue
// handed out: the server delivered the item again, so their AckWait is over, even if their
// deadline has not passed yet (it runs from when the message arrived here, a little later than the
// server sent it), and an ack, nak or extension sent on one of them would act on l's delivery
// (the server tells a delivery's acks by the item alone). Their Ack, Nack, Extend and Bury get
// workqueue.ErrLeaseLost; one already sent is beyond recall. When a lease of a later (or the same)
// delivery is held already, l's delivery arrived after it (two pulls in flight) and is the one
// that is over: it reports false and forgets nothing. Called with mu held, for a redelivery (which
// are rare): it looks at every lease held.
func (q *Queue) endEarlierLeasesLocked(l *held) bool {
	for _, h := range q.leases {
		if h.id == l.id && h.attempt >= l.attempt {
			return false
		}
	}
	for n, h := range q.leases {
		if h.id == l.id {
			delete(q.leases, n)
		}
	}
	return true
}

// ackSeqs reads the delivery count and the stream sequence from a JetStream message's reply
// subject, without the allocation of Msg.Metadata:
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
//	$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>[.<token>...]
func ackSeqs(reply string) (delivered, seq uint64, ok bool) {
	const prefix = "$JS.ACK."
	if !strings.HasPrefix(reply, prefix) {
		return 0, 0, false
	}
	// One pass for the dots after the prefix (strings.Cut per token cost more than the rest of a
	// Lease): dots[k] ends token k.
	var dots [6]int
	n := 0
	for i := len(prefix); i < len(reply); i++ {
		if reply[i] == '.' {
			if n < len(dots) {
				dots[n] = i
			}
			n++
		}
	}
	var at int // the index of the <delivered> token
	switch tokens := n + 1; {
	case tokens == 7:
		at = 2
	case tokens >= 9:
		at = 4
	default:
		return 0, 0, false
	}
	delivered, ok1 := parseNum(reply[dots[at-1]+1 : dots[at]])
	seq, ok2 := parseNum(reply[dots[at]+1 : dots[at+1]])
	return delivered, seq, ok1 && ok2
}

// parseNum reads a decimal number of 1 to 19 digits.
func parseNum(s string) (n uint64, ok bool) {
	if len(s) == 0 || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		n = n*10 + uint64(c)
	}
	return n, true
}

// sweepEvery is how often expired leases are forgotten while any are held.
const sweepEvery = time.Second

// armSweep has sweep run sweepEvery from now. Called with mu held, when leases has gained one and
// no sweep is due.
func (q *Queue) armSweep() {
	q.sweeping = true
	if q.sweeper == nil {
		q.sweeper = time.AfterFunc(sweepEvery, q.sweep)
		return
	}
	q.sweeper.Reset(sweepEvery)
}

// sweep forgets expired leases (one never ended, or whose end failed and was not retried: a
// connection gone for good), and runs again sweepEvery later while any are left. It outlives
// Close until then, since leases handed out may still be used after it.
func (q *Queue) sweep() {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, h := range q.leases {
		if !now.Before(h.deadline) {
			delete(q.leases, k)
		}
	}
	if len(q.leases) > 0 {
		q.sweeper.Reset(sweepEvery)
	} else {
		q.sweeping = false
	}
}

// claim looks a lease up, at its counter n, and takes its turn: the caller uses it alone until it
// settles it (settle) with the server's answer. While another Ack, Nack, Extend or Bury of the
// lease has the turn, claim waits for that one to settle: after an end the server confirmed the
// lease is gone, after one that failed it is still held, as a retry finds it. ctx ends the wait
// with its error, and the lease's deadline with ErrLeaseLost. A lease that is expired or unknown
// gets ErrLeaseLost.
func (q *Queue) claim(ctx context.Context, lease string) (h *held, n uint64, err error) {
	// The token ends with the queue's counter in base 36, the map's key.
	n, err = strconv.ParseUint(lease[strings.LastIndexByte(lease, '.')+1:], 36, 64)
	if err != nil {
		return nil, 0, workqueue.ErrLeaseLost
	}
	for {
		now := time.Now()
		q.mu.Lock()
		h = q.leases[n]
		if h == nil || h.tok != lease {
			q.mu.Unlock()
			return nil, 0, workqueue.ErrLeaseLost
		}
		if !now.Before(h.deadline) {
			delete(q.leases, n)
			q.mu.Unlock()
			return nil, 0, workqueue.ErrLeaseLost
		}
		if !h.busy {
			h.busy = true
			q.mu.Unlock()
			return h, n, nil
		}
		if h.settled == nil {
			h.settled = make(chan struct{})
		}
		settled, left := h.settled, h.deadline.Sub(now)
		q.mu.Unlock()
		if err := waitTurn(ctx, settled, left); err != nil {
			return nil, 0, err
		}
	}
}

// waitTurn waits for settled to be closed, at most left (then the caller finds the lease expired);
// ctx's end ends it with ctx's error.
func waitTurn(ctx context.Context, settled <-chan struct{}, left time.Duration) error {
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-settled:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// settle gives back the turn claim took, and wakes the uses of the lease waiting for it. With end,
// the lease is forgotten: the server has confirmed its end. A failed end leaves it held, so that
// it can be retried within its deadline (an Ack that failed while NATS was unreachable, say); a
// non-zero deadline is the lease's new one (an Extend's).
func (q *Queue) settle(h *held, n uint64, end bool, deadline time.Time) (stillHeld bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	h.busy = false
	if h.settled != nil {
		close(h.settled)
		h.settled = nil
	}
	stillHeld = q.leases[n] == h
	if !deadline.IsZero() && stillHeld {
		h.deadline = deadline
	}
	if end && stillHeld {
		delete(q.leases, n)
	}
	return stillHeld
}

// Ack implements workqueue.Queue. The lease is held until the server confirms the ack (or, with
// WithAsyncAck, the ack is sent), so an Ack that fails (NATS unreachable) can be retried within
// the lease. Uses of one lease take turns: an Ack, Nack, Extend or Bury that begins while another
// waits for the server waits for its answer, and gets ErrLeaseLost if that was a confirmed end,
// else goes ahead (within ctx and the lease's deadline). After a Nack that got no answer it
// returns ErrLeaseLost without sending anything (see Nack).
func (q *Queue) Ack(ctx context.Context, lease string) error {
	h, n, err := q.claim(ctx, lease)
	if err != nil {
		return err
	}
	if h.nakUnanswered {
		return q.afterNak(h, n, "ack")
	}
	if q.cfg.asyncAck {
		err = h.msg.Ack()
	} else {
		err = h.msg.DoubleAck(ctx)
	}
	q.settle(h, n, err == nil, time.Time{})
	if err != nil {
		return fmt.Errorf("ack %s: %w", h.id, classify(ctx, err))
	}
	return nil
}

// afterNak refuses a use of a lease whose nak got no answer (h.nakUnanswered), giving back the
// turn claim took: the nak may have been carried out, and the item handed out again to another
// holder, whose delivery anything sent on the lease would act on (the server tells a delivery's
// acks by the item alone).
func (q *Queue) afterNak(h *held, n uint64, what string) error {
	q.settle(h, n, false, time.Time{})
	return fmt.Errorf("%w: %s %s: an earlier nak got no answer, and the server may have handed the item out again",
		workqueue.ErrLeaseLost, what, h.id)
}

// Nack implements workqueue.Queue. Like Ack, it holds the lease until the server confirms the nak
// (or, with WithAsyncAck, the nak is sent), and takes its turn with the lease's other uses.
//
// While the connection is reconnecting, Nack sends nothing and returns an error wrapping
// workqueue.ErrUnavailable and nats.ErrConnectionReconnecting, to be retried, rather than leave
// the nak in nats.go's reconnect buffer: sent from there once the connection is back, perhaps
// after the lease ended and the item went to another holder, it would put the item out again
// while that holder holds it (the server tells a delivery's naks by the item alone). Two windows
// remain that no client can close: a connection that breaks in the moment after Nack looked at it
// still buffers the nak, and a nak that the network holds up (a link that stalls without
// breaking) still arrives late.
//
// A nak that went out and got no answer (the call's bound ended first, or the connection broke)
// may have been carried out: the server then hands the item out again once the delay ends (from
// when the nak arrived, which may be later than it was sent), perhaps to another holder, whose
// delivery a nak sent again would act on. So nothing is sent on the lease again: a Nack retried
// on it returns nil at once (unless the connection is closed), since the item comes back either
// way, after the first nak's delay if the server took it, else when the lease ends; and an Ack,
// Extend or Bury gets ErrLeaseLost. Once this Queue has handed out the item's next delivery, the
// lease is over and a Nack retried on it gets ErrLeaseLost too, though the nak did its work.
func (q *Queue) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if delay < 0 {
		return fmt.Errorf("%w: negative delay %v", workqueue.ErrInvalid, delay)
	}
	if err := ctx.Err(); err != nil {
		return err // before the nak goes out, so that it does not count as one without an answer
	}
	h, n, err := q.claim(ctx, lease)
	if err != nil {
		return err
	}
	switch st := q.connStatus(); {
	case st == nats.CLOSED:
		err = nats.ErrConnectionClosed // as every call on a closed connection says
	case h.nakUnanswered:
		q.settle(h, n, true, time.Time{})
		return nil
	case st == nats.RECONNECTING || st == nats.CONNECTING:
		err = nats.ErrConnectionReconnecting
	}
	if err != nil {
		q.settle(h, n, false, time.Time{})
		return fmt.Errorf("nak %s: %w", h.id, classify(ctx, err))
	}
	switch {
	case !q.cfg.asyncAck:
		err = h.msg.NakSync(ctx, delay)
	case delay > 0:
		err = h.msg.NakWithDelay(delay)
	default:
		err = h.msg.Nak()
	}
	h.nakUnanswered = err != nil && noAnswer(err)
	q.settle(h, n, err == nil, time.Time{})
	if err != nil {
		return fmt.Errorf("nak %s: %w", h.id, classify(ctx, err))
	}
	return nil
}

// connStatus is the connection's status: CONNECTED for a Queue made without one (by tests, with
// fake messages).
func (q *Queue) connStatus() nats.Status {
	if q.nc == nil {
		return nats.CONNECTED
	}
	return q.nc.Status()
}

// Extend implements workqueue.Queue. It returns once the server has confirmed the new lease, a
// lease duration from when Extend sent it, and takes its turn with the lease's other uses as Ack
// does. After a Nack that got no answer it returns ErrLeaseLost without sending anything (see
// Nack).
func (q *Queue) Extend(ctx context.Context, lease string) (time.Time, error) {
	h, n, err := q.claim(ctx, lease)
	if err != nil {
		return time.Time{}, err
	}
	if h.nakUnanswered {
		return time.Time{}, q.afterNak(h, n, "in progress")
	}
	q.mu.Lock()
	old := h.deadline
	q.mu.Unlock()
	now := time.Now()
	// The server's answer counts only within the lease: after its deadline the message may have
	// been delivered again, and the server still answers an in-progress for it. So the wait ends
	// there, and a later answer, or a lease forgotten meanwhile (a turn-waiting end gave up at the
	// deadline), is a lost lease, not an extension.
	until := old
	if _, ok := ctx.Deadline(); !ok && now.Add(5*time.Second).Before(until) {
		until = now.Add(5 * time.Second) // nats.go's own bound for a ctx without a deadline
	}
	ictx, cancel := context.WithDeadline(ctx, until)
	err = h.msg.InProgressSync(ictx)
	cancel()
	late := !time.Now().Before(old)
	if err != nil {
		q.settle(h, n, false, time.Time{})
		if late && ctx.Err() == nil {
			return time.Time{}, fmt.Errorf("%w: in progress %s: no answer within the lease", workqueue.ErrLeaseLost, h.id)
		}
		return time.Time{}, fmt.Errorf("in progress %s: %w", h.id, classify(ctx, err))
	}
	if late {
		q.settle(h, n, false, time.Time{})
		return time.Time{}, fmt.Errorf("%w: in progress %s: answered after the lease's deadline", workqueue.ErrLeaseLost, h.id)
	}
	d := now.Add(q.cfg.ackWait)
	if !q.settle(h, n, false, d) {
		return time.Time{}, fmt.Errorf("%w: %s: lease forgotten while its extension was on its way", workqueue.ErrLeaseLost, h.id)
	}
	return d, nil
}

// Bury implements workqueue.Queue. A reason longer than MaxReasonLen bytes is cut to it. Like
// Ack, it holds the lease until the server confirms the ack; a Bury retried after its dead letter
// was published does not publish it again. After a Nack that got no answer it returns
// ErrLeaseLost without sending anything (see Nack).
func (q *Queue) Bury(ctx context.Context, lease string, reason string) error {
	h, n, err := q.claim(ctx, lease)
	if err != nil {
		return err
	}
	if h.nakUnanswered {
		return q.afterNak(h, n, "bury")
	}
	err = q.bury(ctx, h.msg, h.id, h.key, h.attempt, reason, &h.deadSent)
	q.settle(h, n, err == nil, time.Time{})
	return err
}

// bury publishes an item's dead letter, unless *sent says it has been, and acks the item, for
// Bury and for an item out of attempts. The dead letter's headers are those Add leaves room for
// (deadHeaderRoom), the reason cut to MaxReasonLen bytes, or to what room max_payload leaves for
// it if less.
func (q *Queue) bury(ctx context.Context, msg delivery, id, key string, attempts int, reason string, sent *bool) error {
	m := nats.NewMsg(q.deadSubj)
	m.Data = msg.Data()
	m.Header.Set(HeaderID, id)
	if key != "" {
		setKey(m.Header, key)
	}
	m.Header.Set(HeaderAttempts, strconv.Itoa(attempts))
	m.Header.Set(HeaderTime, time.Now().UTC().Format(time.RFC3339Nano))
	// The message ID makes the dead stream drop a second dead letter of the item within its
	// duplicate window (2 min by default): a retry whose first publish was stored though its reply
	// never came, a burial repeated after a redelivery. Its room comes out of the reason's.
	m.Header.Set(jetstream.MsgIDHeader, q.stream+"."+id)
	room := int64(MaxReasonLen)
	if limit := q.nc.MaxPayload(); limit > 0 {
		room = min(room, limit-int64(m.Size()-len(m.Subject)+len(HeaderReason)+4))
	}
	reason = cutReason(reason, int(room))
	m.Header.Set(HeaderReason, reason)
	if !*sent {
		if _, err := q.js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("publish dead letter %s: %w", id, classify(ctx, err))
		}
		*sent = true
	}
	if err := msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ack buried %s: %w", id, classify(ctx, err))
	}
	q.cfg.logger.Info("item buried", zap.String("id", id), zap.Int("attempts", attempts), zap.String("reason", reason))
	return nil
}

// Dead implements workqueue.Queue: it reads the dead-letter stream from its first message.
func (q *Queue) Dead(ctx context.Context, max int) ([]workqueue.DeadItem, error) {
	s, err := q.js.Stream(ctx, q.dead)
	if err != nil {
		return nil, fmt.Errorf("dead stream: %w", classify(ctx, err))
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead stream info: %w", classify(ctx, err))
	}
	var out []workqueue.DeadItem
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0 && (max < 0 || len(out) < max); seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("dead letter %d: %w", seq, classify(ctx, err))
		}
		n, _ := strconv.Atoi(m.Header.Get(HeaderAttempts))
		t, _ := time.Parse(time.RFC3339Nano, m.Header.Get(HeaderTime))
		out = append(out, workqueue.DeadItem{ID: m.Header.Get(HeaderID), Key: getKey(m.Header), Payload: m.Data, Attempts: n, Reason: m.Header.Get(HeaderReason), Time: t})
	}
	return out, nil
}

// Stats implements workqueue.Queue with three JetStream API requests: Leased is the consumer's
// unacknowledged deliveries (its ack-pending count, including nacked and delayed items waiting for
// redelivery), Ready the stream's other messages (those never delivered), Dead the dead-letter
// stream's messages; Delayed is always 0. An Add, Lease or Ack that has returned is counted. (The
// consumer's own pending count is not used for Ready: the server raises it on another goroutine
// after it has answered the publish, so it could miss an Add that had returned.) Under concurrent
// Acks, Ready may be off by those that land between the requests. After Close it returns
// workqueue.ErrClosed without asking the server, as every backend's Stats does (a Pool's depth
// gauge over it is then left out): the stream's counts are for the Queues still open on it.
func (q *Queue) Stats(ctx context.Context) (workqueue.Stats, error) {
	if q.closed.Load() {
		return workqueue.Stats{}, workqueue.ErrClosed
	}
	ci, err := q.cons.Info(ctx)
	if err != nil {
		return workqueue.Stats{}, fmt.Errorf("consumer info: %w", classify(ctx, err))
	}
	si, err := q.str.Info(ctx)
	if err != nil {
		return workqueue.Stats{}, fmt.Errorf("stream info: %w", classify(ctx, err))
	}
	// Open made the dead-letter stream: without it (deleted, or no answer in time) the dead count
	// is unknown, and an error, not 0.
	s, err := q.js.Stream(ctx, q.dead)
	if err != nil {
		return workqueue.Stats{}, fmt.Errorf("dead stream info: %w", classify(ctx, err))
	}
	dead := int64(s.CachedInfo().State.Msgs) // Stream fetched it just now
	leased := int64(ci.NumAckPending)
	return workqueue.Stats{Ready: max(int64(si.State.Msgs)-leased, 0), Leased: leased, Dead: dead}, nil
}

// Statusz reports the queue's counts for a status page.
func (q *Queue) Statusz() (title string, header []string, rows [][]string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := q.Stats(ctx)
	rows = [][]string{{"stream", q.stream}}
	if err != nil {
		rows = append(rows, []string{"error", err.Error()})
	} else {
		f := func(n int64) string { return strconv.FormatInt(n, 10) }
		rows = append(rows, []string{"ready", f(s.Ready)}, []string{"leased", f(s.Leased)}, []string{"dead", f(s.Dead)})
	}
	return "workqueue (jetstream " + q.name + ")", []string{"key", "value"}, rows
}

// Close stops the queue: blocked Leases return ErrClosed, and the messages pulled but not handed
// out are given back at once (a Nak; a delayed item keeps the rest of its delay) so that another
// consumer gets them without waiting out AckWait: those buffered from a batch pull, those waiting
// for the next Lease after theirs gave up, and those the server has sent to a blocking pull as it
// is stopped (see waitPull for the window left). The connection stays open. Close returns once
// the blocking pulls have ended and the goroutines that held such messages have exited. Leases
// already handed out may still be acked. It unregisters the queue's metrics (see WithRegisterer).
// Idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed.Load() {
		q.mu.Unlock()
		return nil
	}
	q.closed.Store(true)
	cur := q.cur.Swap(nil)
	reg := q.metricsReg
	q.metricsReg = nil
	q.mu.Unlock()
	if reg != nil {
		reg.Unregister(q.metrics)
	}
	q.closeFn()
	if cur != nil {
		q.release(cur)
	}
	q.pulls.Wait()
	return nil
}
