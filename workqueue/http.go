package workqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// APIPrefix is where API serves the queue.
const APIPrefix = "/api/v1/queue/"

// APIMaxKeyLen bounds the key of an add the API takes, in bytes (any bytes: the key is
// percent-encoded in the query); a longer one is 400. workqueue/jetstream's MaxKeyLen is defined as
// APIMaxKeyLen, the one backend limit (Memory and workqueue/bolt have none of their own), so that a
// key the API takes is taken whichever queue serves it; and percent-encoded, 3 bytes a byte at most,
// such a key keeps the request line under 8 KiB, the limit of common proxies (nginx's
// large_client_header_buffers, Apache's LimitRequestLine), so it passes one in front of the API.
const APIMaxKeyLen = 2048

// APIOption configures an API.
type APIOption interface{ applyAPI(*apiConfig) }

type apiConfig struct {
	maxPayload int64
	maxWait    time.Duration
	logger     *zap.Logger
}

type apiOptionFunc func(*apiConfig)

func (f apiOptionFunc) applyAPI(c *apiConfig) { f(c) }

// WithMaxPayload limits an added payload's size; larger adds get 413, as do adds the queue refuses
// with ErrTooLarge (the jetstream backend takes a little less than the NATS server's max_payload,
// 1 MiB by default: room is kept for the item's dead letter). Default 16 MiB; NewAPI refuses
// n <= 0.
func WithMaxPayload(n int64) APIOption { return apiOptionFunc(func(c *apiConfig) { c.maxPayload = n }) }

// WithMaxWait caps how long a lease request may long-poll. Default 60s (keep it below the HTTP
// server's write timeout); NewAPI refuses d <= 0 (a lease request's wait=0 asks for no long poll).
func WithMaxWait(d time.Duration) APIOption {
	return apiOptionFunc(func(c *apiConfig) { c.maxWait = d })
}

// API serves a Queue over HTTP so that workers in any language can lease and ack:
//
//	POST /api/v1/queue/items?key=K&delay=DUR&priority=N   body: payload     -> 201 {"id":"..."}
//	POST /api/v1/queue/lease?wait=DUR&poll=ID                               -> 200 item JSON, or 204 if none came
//	POST /api/v1/queue/cancel?poll=ID                                       -> 204
//	POST /api/v1/queue/ack     {"lease":"..."}                              -> 204
//	POST /api/v1/queue/nack    {"lease":"...","delay":"DUR"}                -> 204
//	POST /api/v1/queue/release {"lease":"..."}                              -> 204
//	POST /api/v1/queue/extend  {"lease":"..."}                              -> 200 {"deadline":"RFC 3339","ttl":"DUR"}
//	POST /api/v1/queue/bury    {"lease":"...","reason":"..."}               -> 204
//	GET  /api/v1/queue/stats                                                -> 200 {"ready":N,"delayed":N,"leased":N,"dead":N}
//	GET  /api/v1/queue/dead?max=N&from=N                                    -> 200 [dead item JSON]
//
// Query parameters are those shown, each at most once: a query that does not parse (bad
// percent-encoding, a ';'), names another parameter (a misspelt one) or repeats one is 400, as an
// unknown field of a JSON body is; the endpoints shown without any take none.
//
// An add's key is at most APIMaxKeyLen (2048) bytes, any bytes, percent-encoded in the query, and its
// payload at most WithMaxPayload (16 MiB by default); a longer key is 400, a larger payload 413.
//
// A lease request long-polls for up to wait: 30s when absent, at most the max wait (WithMaxWait).
// wait=0 does not wait for an item to come: the answer is an item that is ready now, or 204 at once
// (the queue gets up to 50ms to hand a ready item out). A negative or malformed wait is 400. poll
// (optional, 1 to 64 bytes) names it, so that a client whose caller gave up can end the wait early
// with cancel and still read the answer: an item leased before the wait ended is answered as usual,
// not dropped. No two lease requests wait under one poll ID at a time: one whose ID names a request
// still waiting is 400 at once (the waiting one goes on, and a cancel of the ID ends it), and an ID
// may be used again once its request was answered; a random ID of 8 bytes or more (Client's are)
// does not meet another client's. A cancel of an ID that no request waits under ends the first
// that comes with it within a minute (the cancel overtook its poll). A client that goes away instead gets nothing, and an item leased
// for it is given back at once (released without counting the attempt where the queue has a
// Release method, else nacked).
//
// release gives back a leased item that was not worked on, or whose work was abandoned (a worker
// stopping: Pool's drain): the item is ready again at once and, where the queue has a Release
// method (Memory, workqueue/bolt), the attempt is not counted, so it neither brings the item nearer
// to max attempts nor changes its lease token; elsewhere (workqueue/jetstream) it is a nack without
// delay. A worker that tried the item and failed uses nack.
//
// An item is {"id","key","payload" (base64),"priority","attempt","lease","deadline","ttl"}. deadline
// is when the lease ends by the server's clock; ttl is how much of the lease was left when the
// answer was written (a duration such as "29.998s"), so that a client whose clock differs from the
// server's can compute the deadline by its own (Client does). lease is an opaque token; over a
// Memory without a Journal it ends with "~" and the Memory's random run number, so that a token
// from before a restart of the server (whose new Memory numbers its items from 1 again) gets 409
// rather than naming another item's lease. A dead item is {"id","key","payload" (base64),"attempts",
// "reason","time"}. Every answer has each field shown, "" or 0 as it may be: a keyless item's
// "key" is "", an empty payload's "payload" is "" (never null), a priority of 0 is "priority":0.
//
// dead lists the dead letters oldest first, from the one at index from (default 0) on, max of them
// (default 100, at most 10000). So that one answer stays readable, it stops early after the dead
// letter that brought its payloads, keys and reasons to 8 MiB (the first is always in it, however
// large). An answer that left dead letters out, by max or by bytes, has a header
// Link: </api/v1/queue/dead?from=N&max=M>; rel="next" naming the next page, which Client.Dead
// follows. Dead letters are only added, after the others, so from counts the same ones page after
// page; a workqueue/jetstream dead stream whose limits drop its oldest shifts them. A page's cost
// grows with from: a Queue has no way to start at an index (Queue.Dead lists from the oldest), so
// the API asks its queue for the first from+max+1 dead letters and answers max of them; a from at
// or past the end reads every dead letter the queue holds, and paging through N dead letters, max
// at a time, reads about N*N/(2*max). Page with the largest max (10000) through many.
//
// The body of a lease request (ack, nack, release, extend, bury) is one JSON object of the fields
// shown: an unknown field, or anything but white space after the object, is 400. Its "lease" is the
// token as the item had it. Over a Memory, one that is not shaped like a token ("<id>.<attempt>" in
// decimal digits, then nothing or a suffix beginning with ".", "@" or "~"; an item's ID, say) is
// 400, while a token of that shape that is not held (unknown, expired, of an earlier attempt or of
// another run, already acked) is 409; over other queues, whose tokens the API does not know, a
// token the queue does not hold is 409, whatever its shape.
//
// Errors are {"error":"reason"} with 400 (bad input), 404 (no such endpoint), 405 (wrong method;
// the Allow header names the right one), 409 (lease not held), 413 (a payload over WithMaxPayload
// or that the queue refuses as too large, or a lease request's body over 64 KiB; the reason names
// the limit in bytes) or 503 with Retry-After (queue closed, or lease requests stopped by StopPolls:
// the server is stopping; or the queue unavailable for now, an error wrapping ErrUnavailable: a
// workqueue/jetstream queue whose NATS server cannot be reached); Client takes 503 for
// ErrUnavailable, and a Pool over a Client retries until the server, or its queue, is back. Any other
// error of the queue is 500.
type API struct {
	q     Queue
	cfg   apiConfig
	mux   *http.ServeMux
	polls polls

	stopped   context.Context // done once StopPolls was called
	stopPolls context.CancelFunc

	// run, for a Memory queue, ends the lease tokens this API hands out ("~" and the Memory's
	// random run number): a Memory of a restarted server numbers its items from 1 again, so a token
	// from before the restart (a worker's Ack made again while the server was away) would name
	// another item's lease. A token without it gets ErrLeaseLost. Empty for other queues, whose
	// tokens name their run themselves (workqueue/bolt), outlive it (a Memory with a Journal, which
	// numbers on from its records) or are the server's (JetStream).
	run string
}

// NewAPI returns the HTTP API over q.
func NewAPI(q Queue, opts ...APIOption) (*API, error) {
	cfg := apiConfig{maxPayload: 16 << 20, maxWait: 60 * time.Second, logger: zap.NewNop()}
	for _, o := range opts {
		o.applyAPI(&cfg)
	}
	switch {
	case q == nil:
		return nil, fmt.Errorf("%w: nil queue", ErrInvalid)
	case cfg.maxPayload <= 0:
		return nil, badOption("WithMaxPayload", cfg.maxPayload, "want a positive number of bytes")
	case cfg.maxWait <= 0:
		return nil, badOption("WithMaxWait", cfg.maxWait, "want a positive duration")
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	a := &API{q: q, cfg: cfg, mux: http.NewServeMux()}
	if m, ok := q.(*Memory); ok && m.cfg.journal == nil {
		a.run = "~" + strconv.FormatUint(m.run, 36)
	}
	a.stopped, a.stopPolls = context.WithCancel(context.Background())
	// The patterns name no method: ServeMux would answer a wrong method, and any path it does not
	// know, in plain text. allow and notFound answer them in JSON with a reason.
	for _, e := range []struct {
		path, method string
		params       []string
		h            handler
	}{
		{"items", http.MethodPost, []string{"key", "delay", "priority"}, a.add},
		{"lease", http.MethodPost, []string{"wait", "poll"}, a.lease},
		{"cancel", http.MethodPost, []string{"poll"}, a.cancelPoll},
		{"ack", http.MethodPost, nil, a.ack},
		{"nack", http.MethodPost, nil, a.nack},
		{"release", http.MethodPost, nil, a.release},
		{"extend", http.MethodPost, nil, a.extend},
		{"bury", http.MethodPost, nil, a.bury},
		{"stats", http.MethodGet, nil, a.stats},
		{"dead", http.MethodGet, []string{"max", "from"}, a.dead},
	} {
		a.mux.Handle(APIPrefix+e.path, a.allow(e.method, e.params, e.h))
	}
	a.mux.HandleFunc("/", notFound)
	return a, nil
}

// handler serves an endpoint's request, whose query parameters are in q (each at most once).
type handler func(w http.ResponseWriter, r *http.Request, q url.Values)

// allow serves h for requests of method (GET also for HEAD, as ServeMux does), and answers other
// methods 405 with an Allow header and a JSON reason. The request's query must parse and name only
// params, each at most once: anything else is 400 naming the problem, as an unknown field of a JSON
// body is, rather than dropped (a misspelt key would add an item without its key).
func (a *API) allow(method string, params []string, h handler) http.HandlerFunc {
	allowed := method
	if method == http.MethodGet {
		allowed = "GET, HEAD"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
			w.Header().Set("Allow", allowed)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed for %s: use %s", r.Method, r.URL.Path, method))
			return
		}
		q, err := parseQuery(r.URL.RawQuery, params)
		if err != nil {
			a.fail(w, err)
			return
		}
		h(w, r, q)
	}
}

// parseQuery parses raw, a request's query, which may name only params, each at most once; its
// error wraps ErrInvalid.
func parseQuery(raw string, params []string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("query %.200q: %v", raw, err)
	}
	for k, v := range q {
		switch {
		case !slices.Contains(params, k) && len(params) == 0:
			return nil, badRequest("unknown query parameter %.80q: this endpoint takes none", k)
		case !slices.Contains(params, k):
			return nil, badRequest("unknown query parameter %.80q: this endpoint takes %s", k, strings.Join(params, ", "))
		case len(v) > 1:
			return nil, badRequest("query parameter %q given %d times: give it once", k, len(v))
		}
	}
	return q, nil
}

// notFound answers a path the API does not serve: 404 with a JSON reason.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s: the API serves %s{items,lease,cancel,ack,nack,release,extend,bury,stats,dead}", r.URL.Path, APIPrefix))
}

// StopPolls ends the lease requests that are waiting for an item (each answers 204, as when its
// wait runs out, or the item leased for it) and makes later lease requests answer 503 at once;
// every other request is served as before. A server that stops calls it before http.Server's
// Shutdown, which then need not wait out the long polls while in-flight acks, nacks and the like
// complete, and closes the queue after Shutdown returned. The API does not wait for anything.
// Idempotent.
func (a *API) StopPolls() { a.stopPolls() }

// errStopping is the answer to a lease request after StopPolls.
var errStopping = errors.New("workqueue: server stopping")

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// itemJSON is an item on the wire. Its fields, and those of the other answers, are all written
// every time, "" or 0 as they may be (Payload is never nil, see wirePayload), so that a client in
// any language reads each without checking whether it is there.
type itemJSON struct {
	ID       string    `json:"id"`
	Key      string    `json:"key"`
	Payload  []byte    `json:"payload"`
	Priority int       `json:"priority"`
	Attempt  int       `json:"attempt"`
	Lease    string    `json:"lease"`
	Deadline time.Time `json:"deadline"`
	TTL      string    `json:"ttl"` // the lease left when the answer was written
}

// extendJSON is extend's answer.
type extendJSON struct {
	Deadline time.Time `json:"deadline"`
	TTL      string    `json:"ttl"`
}

// wirePayload is p as an answer carries it: an empty payload is "", not null, however it was added.
func wirePayload(p []byte) []byte {
	if p == nil {
		return []byte{}
	}
	return p
}

// ttl is the lease left until d, as the API writes it.
func ttl(d time.Time) string { return max(time.Until(d), 0).String() }

type deadJSON struct {
	ID       string    `json:"id"`
	Key      string    `json:"key"`
	Payload  []byte    `json:"payload"`
	Attempts int       `json:"attempts"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
}

type leaseReq struct {
	Lease  string `json:"lease"`
	Delay  string `json:"delay,omitempty"`
	Reason string `json:"reason,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // reasons such as "<id>.<attempt>" stay readable
	_ = enc.Encode(v)
}

// retryAfter is the Retry-After, in seconds, of a 503: the queue is closed, stopping or unavailable
// for now, and a client may try again then.
const retryAfter = "1"

func (a *API) fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, ErrLeaseLost):
		code = http.StatusConflict
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrClosed), errors.Is(err, errStopping), errors.Is(err, ErrUnavailable):
		code = http.StatusServiceUnavailable
	case errors.As(err, &mbe), errors.Is(err, ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	if code == http.StatusInternalServerError || errors.Is(err, ErrUnavailable) {
		a.cfg.logger.Warn("queue error", zap.Error(err))
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeError(w, code, err.Error())
}

// writeError answers code with {"error":reason}.
func writeError(w http.ResponseWriter, code int, reason string) {
	writeJSON(w, code, map[string]string{"error": reason})
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func parseDur(name, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, badRequest("%s %q is not a non-negative duration such as 1.5s", name, s)
	}
	return d, nil
}

func (a *API) add(w http.ResponseWriter, r *http.Request, qv url.Values) {
	var o AddOptions
	var err error
	o.Key = qv.Get("key")
	if len(o.Key) > APIMaxKeyLen {
		a.fail(w, badRequest("key of %d bytes is longer than the API's limit of %d bytes", len(o.Key), APIMaxKeyLen))
		return
	}
	if o.Delay, err = parseDur("delay", qv.Get("delay")); err != nil {
		a.fail(w, err)
		return
	}
	if p := qv.Get("priority"); p != "" {
		if o.Priority, err = strconv.Atoi(p); err != nil {
			a.fail(w, badRequest("priority %q is not an integer", p))
			return
		}
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.maxPayload))
	if err != nil {
		if e := overLimit("payload", err); e != nil {
			err = e
		} else {
			// The client's body is broken (a bad chunk, or the client went away mid-upload): 400,
			// not a queue error.
			err = badRequest("read payload: %v", err)
		}
		a.fail(w, err)
		return
	}
	id, err := a.q.Add(r.Context(), payload, o)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"id": id})
}

// overLimit is err, from reading a body that went over its limit, with what and the limit named
// (the API answers it 413); nil for any other error.
func overLimit(what string, err error) error {
	var mbe *http.MaxBytesError
	if !errors.As(err, &mbe) {
		return nil
	}
	return fmt.Errorf("%s larger than %d bytes, the server's limit: %w", what, mbe.Limit, err)
}

// defaultWait is how long a lease request without wait long-polls (at most the API's max wait), and
// noWait how long the queue gets to hand out an item that is ready when a request says wait=0 (a
// round trip to a remote backend such as JetStream).
const (
	defaultWait = 30 * time.Second
	noWait      = 50 * time.Millisecond
)

func (a *API) lease(w http.ResponseWriter, r *http.Request, q url.Values) {
	wait := min(defaultWait, a.cfg.maxWait)
	if s := q.Get("wait"); s != "" {
		d, err := parseDur("wait", s)
		if err != nil {
			a.fail(w, err)
			return
		}
		if d == 0 {
			d = noWait
		}
		wait = min(d, a.cfg.maxWait)
	}
	if a.stopped.Err() != nil {
		a.fail(w, errStopping)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	defer context.AfterFunc(a.stopped, cancel)()
	if id := q.Get("poll"); id != "" {
		if err := a.polls.start(id, cancel); err != nil {
			a.fail(w, err)
			return
		}
		defer a.polls.end(id)
	}
	it, err := a.q.Lease(ctx)
	if err != nil {
		if ctx.Err() != nil && r.Context().Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
			w.WriteHeader(http.StatusNoContent) // the wait ran out, or the client ended the poll
			return
		}
		a.fail(w, err)
		return
	}
	a.deliver(w, r, it)
}

// deliver answers a lease request with the item leased for it. An item whose answer cannot reach
// the client (it went away, or the write failed) is given back at once, so that it neither waits for
// its lease to expire nor, where the queue can release, counts an attempt nobody made.
func (a *API) deliver(w http.ResponseWriter, r *http.Request, it *Item) {
	err := r.Context().Err()
	if err == nil {
		b, _ := json.Marshal(itemJSON{it.ID, it.Key, wirePayload(it.Payload), it.Priority, it.Attempt, it.Lease + a.run, it.Deadline, ttl(it.Deadline)})
		b = append(b, '\n')
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		if _, err = w.Write(b); err == nil {
			// Flush now, to learn whether the answer left (a writer that cannot flush sends it later).
			if err = http.NewResponseController(w).Flush(); errors.Is(err, http.ErrNotSupported) {
				err = nil
			}
		}
	}
	if err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), giveBackTimeout)
	defer cancel()
	if err := releaseLease(ctx, a.q, it.Lease); err != nil {
		a.cfg.logger.Warn("give back undelivered item", zap.String("id", it.ID), zap.Error(err))
	}
}

// giveBackTimeout bounds the Release or Nack of an item whose answer could not be delivered.
const giveBackTimeout = 10 * time.Second

// cancelPoll ends the lease poll named by ?poll=ID early; its own request then answers as usual
// (the item leased before the poll ended, or 204).
func (a *API) cancelPoll(w http.ResponseWriter, _ *http.Request, q url.Values) {
	if err := a.polls.cancel(q.Get("poll")); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// pollTTL is how long a cancel that came before its poll is remembered, and maxEarly how many such
// cancels are remembered at most (a poll whose cancel was not remembered waits out its wait).
const (
	pollTTL  = time.Minute
	maxEarly = 1 << 16
)

// polls are the lease requests that name themselves (poll=ID) while they wait, so that a client
// whose ctx ended can end its poll early and still read the answer, with an item leased meanwhile.
type polls struct {
	mu    sync.Mutex
	live  map[string]context.CancelFunc
	early map[string]time.Time // cancelled before they came, at this time
	swept time.Time
}

func checkPollID(id string) error {
	if id == "" || len(id) > 64 {
		return badRequest("poll id %q: want 1 to 64 bytes", id)
	}
	return nil
}

// start registers poll id with the cancel func of its wait; a poll cancelled before it came, less
// than pollTTL ago, is cancelled at once (an older cancel is not remembered: it may still be in
// early, as cancel sweeps only now and then).
func (p *polls) start(id string, cancel context.CancelFunc) error {
	if err := checkPollID(id); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.live[id]; ok {
		return badRequest("poll id %q is in use by a lease request still waiting: give each request an ID of its own", id)
	}
	if at, ok := p.early[id]; ok {
		delete(p.early, id)
		if time.Since(at) <= pollTTL {
			cancel()
		}
	}
	if p.live == nil {
		p.live = map[string]context.CancelFunc{}
	}
	p.live[id] = cancel
	return nil
}

func (p *polls) end(id string) {
	p.mu.Lock()
	delete(p.live, id)
	p.mu.Unlock()
}

// cancel ends poll id's wait, or remembers the cancel for a while if the poll has not come (yet).
func (p *polls) cancel(id string) error {
	if err := checkPollID(id); err != nil {
		return err
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if cancel, ok := p.live[id]; ok {
		cancel()
		return nil
	}
	if now.Sub(p.swept) > pollTTL {
		p.swept = now
		for k, t := range p.early {
			if now.Sub(t) > pollTTL {
				delete(p.early, k)
			}
		}
	}
	if len(p.early) < maxEarly {
		if p.early == nil {
			p.early = map[string]time.Time{}
		}
		p.early[id] = now
	}
	return nil
}

// maxLeaseBody limits the body of a lease request (ack, nack, release, extend, bury); a larger one
// gets 413.
const maxLeaseBody = 64 << 10

// readLease reads a lease request: 413 for a body over maxLeaseBody, 400 for bad input (a body
// that is not one JSON object of known fields, over a Memory a token that is not shaped like one,
// see checkToken, and, withDelay, a bad delay), then 409 for a token this API did not hand out (see
// run). The request it returns holds the queue's token.
func (a *API) readLease(w http.ResponseWriter, r *http.Request, withDelay bool) (lr leaseReq, delay time.Duration, ok bool) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLeaseBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&lr)
	if err == nil {
		err = atEnd(dec)
	}
	if err != nil {
		if e := overLimit("body", err); e != nil {
			err = e // 413, not 400
		} else {
			err = badRequest("body must be JSON like {\"lease\":\"...\"}: %v", err)
		}
		a.fail(w, err)
		return lr, 0, false
	}
	if lr.Lease == "" {
		a.fail(w, badRequest("missing \"lease\""))
		return lr, 0, false
	}
	if _, ours := a.q.(*Memory); ours { // other queues' tokens are theirs to judge (409)
		err = checkToken(lr.Lease)
	}
	if err != nil {
		err = badRequest("%v", err)
	} else if withDelay {
		delay, err = parseDur("delay", lr.Delay)
	}
	if err == nil && a.run != "" {
		var own bool
		if lr.Lease, own = strings.CutSuffix(lr.Lease, a.run); !own {
			err = ErrLeaseLost // handed out by another run of the server, or never
		}
	}
	if err != nil {
		a.fail(w, err)
		return lr, 0, false
	}
	return lr, delay, true
}

// atEnd reports whether dec, having decoded a body's JSON value, is at the end of the body (white
// space aside): trailing data is an error, rather than ignored, as an unknown field is.
func atEnd(dec *json.Decoder) error {
	_, err := dec.Token()
	var mbe *http.MaxBytesError
	switch {
	case err == io.EOF:
		return nil
	case errors.As(err, &mbe):
		return err
	}
	return errors.New("data after the JSON object")
}

// checkToken reports whether lease is shaped like a token an API over a Memory hands out, so that a
// client's mistake (garbage, or an item's ID sent for its lease) is told apart from a lease that is
// not held: decimal digits, ".", decimal digits (Memory's "<id>.<attempt>", see FormatLease), then
// nothing or a suffix that begins with "." (workqueue/jetstream's counter), "@" (workqueue/bolt's
// epoch) or "~" (the API's run, see API.run). Its error names the shape; the API answers it with
// 400, and Client takes that 400 for ErrLeaseLost (and ErrInvalid). The API checks only a Memory's
// tokens: Item.Lease is opaque, and another Queue, a user's own among them, may shape its tokens as
// it likes.
func checkToken(lease string) error {
	i := digits(lease, 0)
	j := i + 1
	ok := i > 0 && i < len(lease) && lease[i] == '.'
	if ok {
		j = digits(lease, j)
		ok = j > i+1 && (j == len(lease) || j+1 < len(lease) && strings.IndexByte(".@~", lease[j]) >= 0)
	}
	if !ok {
		return fmt.Errorf("lease %.80q is not a lease token: want the lease field of a leased item (not its id): <id>.<attempt> in decimal digits and the server's suffix, such as 12.1~k3x9", lease)
	}
	return nil
}

// digits is the index of the first byte at or after i of s that is not a decimal digit.
func digits(s string, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// noContent answers 204, or err.
func (a *API) noContent(w http.ResponseWriter, err error) {
	if err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) ack(w http.ResponseWriter, r *http.Request, _ url.Values) {
	if lr, _, ok := a.readLease(w, r, false); ok {
		a.noContent(w, a.q.Ack(r.Context(), lr.Lease))
	}
}

func (a *API) nack(w http.ResponseWriter, r *http.Request, _ url.Values) {
	if lr, d, ok := a.readLease(w, r, true); ok {
		a.noContent(w, a.q.Nack(r.Context(), lr.Lease, d))
	}
}

func (a *API) release(w http.ResponseWriter, r *http.Request, _ url.Values) {
	if lr, _, ok := a.readLease(w, r, false); ok {
		a.noContent(w, releaseLease(r.Context(), a.q, lr.Lease))
	}
}

func (a *API) extend(w http.ResponseWriter, r *http.Request, _ url.Values) {
	lr, _, ok := a.readLease(w, r, false)
	if !ok {
		return
	}
	d, err := a.q.Extend(r.Context(), lr.Lease)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, extendJSON{d, ttl(d)})
}

func (a *API) bury(w http.ResponseWriter, r *http.Request, _ url.Values) {
	if lr, _, ok := a.readLease(w, r, false); ok {
		a.noContent(w, a.q.Bury(r.Context(), lr.Lease, lr.Reason))
	}
}

func (a *API) stats(w http.ResponseWriter, r *http.Request, _ url.Values) {
	s, err := a.q.Stats(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

// deadBudget is how many bytes of payload, key and reason a dead answer carries at most (its JSON,
// base64 payloads and all, is about 4/3 of it): one more dead letter is not added once the answer
// holds this many, and the answer links to the next page. The first dead letter of a page is
// always added, so that every page makes progress; a page is then as large as one payload the API
// takes (WithMaxPayload) at most, beyond the budget.
const deadBudget = 8 << 20

// maxDeadPage bounds a dead request's max, and maxDeadFrom its from (so that from+max+1, what it
// asks the queue for, does not overflow an int of 32 bits either). The queue is asked for
// from+max+1 dead letters, all the ones before the page too: see the cost on API.
const (
	maxDeadPage = 10000
	maxDeadFrom = math.MaxInt32 - maxDeadPage - 1
)

func (a *API) dead(w http.ResponseWriter, r *http.Request, q url.Values) {
	max, from := 100, 0
	if m := q.Get("max"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 0 || n > maxDeadPage {
			a.fail(w, badRequest("max %q is not an integer in 0..%d", m, maxDeadPage))
			return
		}
		max = n
	}
	if f := q.Get("from"); f != "" {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > maxDeadFrom {
			a.fail(w, badRequest("from %q is not an integer in 0..%d", f, maxDeadFrom))
			return
		}
		from = n
	}
	// One more than the page, to learn whether a next page exists.
	d, err := a.q.Dead(r.Context(), from+max+1)
	if err != nil {
		a.fail(w, err)
		return
	}
	d = d[min(from, len(d)):]
	out := make([]deadJSON, 0, min(len(d), max))
	size := 0
	for _, x := range d {
		if len(out) == max || (len(out) > 0 && size >= deadBudget) {
			break
		}
		size += len(x.Payload) + len(x.Key) + len(x.Reason)
		x.Payload = wirePayload(x.Payload)
		out = append(out, deadJSON(x))
	}
	if len(out) < len(d) && max > 0 {
		w.Header().Set("Link", fmt.Sprintf("<%sdead?from=%d&max=%d>; rel=\"next\"", APIPrefix, from+len(out), max))
	}
	writeJSON(w, http.StatusOK, out)
}
