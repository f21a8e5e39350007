package workqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrUnavailable says that the queue's server could not be reached or did not answer, for now. It
// is temporary: the call may be tried again, as a Pool does with Lease and with an item's outcome.
// Backends that return it (errors wrapping it):
//   - Client, whose server could not be reached (connection refused or reset, for example while
//     it restarts) or answered 503 (its queue closed or unavailable, or it is stopping), or whose
//     proxy answered 502 or 504 for it;
//   - workqueue/jetstream, while its NATS server cannot be reached or does not answer (see its
//     package doc, "Unavailable").
//
// Memory and workqueue/bolt never return it. ErrClosed, from a Client, means that the Client
// itself was closed; from a jetstream queue, that its connection is closed for good.
var ErrUnavailable = errors.New("workqueue: server unavailable")

// Client is a Queue served by an API elsewhere (examples/workqueue serve). Lease long-polls.
//
// Every answer is read up to a bound, so that a broken server cannot make a Client hold more than
// an answer can be: a lease answer and a page of dead letters up to WithMaxAnswer (DefaultMaxAnswer
// by default: enough for a server's default WithMaxPayload), every other successful answer up to 1
// MiB, an error answer up to 64 KiB (for its reason). An answer over its bound is an error that
// says so.
type Client struct {
	base      string
	hc        *http.Client
	maxAnswer int64

	closeCtx context.Context
	closeFn  context.CancelFunc
	once     sync.Once
	own      *http.Transport // made by NewClient; its idle connections are closed by Close
}

var (
	_ Queue    = (*Client)(nil)
	_ releaser = (*Client)(nil)
)

// ClientOption configures a Client.
type ClientOption interface{ applyClient(*Client) }

type clientOptionFunc func(*Client)

func (f clientOptionFunc) applyClient(c *Client) { f(c) }

// DefaultMaxAnswer is a Client's WithMaxAnswer by default: enough for a lease answer and a page of
// dead letters from a server whose WithMaxPayload is its default, 16 MiB. A page of dead letters
// holds 8 MiB of payloads, keys and reasons, plus one more dead letter at most (up to a payload the
// server takes); payloads are base64 in JSON, 4/3 of their size. Hence 4/3 x (8 + 16) MiB, and 4
// MiB for the JSON around them.
const DefaultMaxAnswer = (8+16)<<20/3*4 + 4<<20

// WithMaxAnswer bounds the size of a lease answer and of a page of dead letters the Client reads;
// a larger one is an error. For a server whose WithMaxPayload is p bytes, take 4/3 x (p + 8 MiB) and
// a few MiB more.
func WithMaxAnswer(n int64) ClientOption {
	return clientOptionFunc(func(c *Client) { c.maxAnswer = n })
}

// maxSmallAnswer bounds every successful answer but a lease's and a page of dead letters': an
// item's id, stats, an extended deadline.
const maxSmallAnswer = 1 << 20

// NewClient returns a client for the API at base (for example "http://127.0.0.1:8080"). hc nil means
// a client of its own with no overall timeout (Lease long-polls; every call is bounded by its ctx),
// whose connections Close closes.
func NewClient(base string, hc *http.Client, opts ...ClientOption) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: server URL %q (want http://host:port)", ErrInvalid, base)
	}
	probe := Client{maxAnswer: DefaultMaxAnswer}
	for _, o := range opts {
		o.applyClient(&probe)
	}
	if probe.maxAnswer <= 0 {
		return nil, fmt.Errorf("%w: WithMaxAnswer(%d): want a positive number of bytes", ErrInvalid, probe.maxAnswer)
	}
	var own *http.Transport
	if hc == nil {
		own = http.DefaultTransport.(*http.Transport).Clone()
		hc = &http.Client{Transport: own}
	}
	c := &Client{base: strings.TrimRight(base, "/") + APIPrefix, hc: hc, own: own, maxAnswer: probe.maxAnswer}
	c.closeCtx, c.closeFn = context.WithCancel(context.Background())
	return c, nil
}

// apiError is an error answer from the server.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("server answered %d: %s", e.code, e.msg) }

// maxErrorAnswer bounds how much of an error answer Client reads.
const maxErrorAnswer = 64 << 10

// decodeError is a successful answer that could not be decoded; body is the answer.
type decodeError struct {
	body []byte
	err  error
}

func (e *decodeError) Error() string {
	return fmt.Sprintf("decode answer (%d bytes): %v", len(e.body), e.err)
}

func (e *decodeError) Unwrap() error { return e.err }

// maxReason bounds the reason taken from an error answer that is not the API's JSON.
const maxReason = 200

// reason is the reason in error answer b: its "error" field, or else (a proxy's answer, or an old
// server's plain-text 404 and 405) its text, cut to maxReason bytes.
func reason(b []byte) string {
	var e struct{ Error string }
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
	if len(s) > maxReason {
		s = strings.ToValidUTF8(s[:maxReason], "") + "..."
	}
	if s == "" {
		return "(no reason given)"
	}
	return s
}

// do is call for an answer of maxSmallAnswer at most.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, ctype string, out any) (int, error) {
	code, _, err := c.call(ctx, method, path, body, ctype, out, maxSmallAnswer)
	return code, err
}

// call makes a request of the API and decodes a successful answer, of limit bytes at most, into
// out; it returns the answer's status and header (0 and nil when none came).
func (c *Client) call(ctx context.Context, method, path string, body io.Reader, ctype string, out any, limit int64) (int, http.Header, error) {
	if c.closeCtx.Err() != nil {
		return 0, nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.closeCtx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		switch {
		case c.closeCtx.Err() != nil:
			return 0, nil, ErrClosed
		case ctx.Err() != nil:
			return 0, nil, err
		}
		return 0, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		limit = maxErrorAnswer
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if c.closeCtx.Err() == nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: read answer: %w", ErrUnavailable, err)
		}
		return resp.StatusCode, resp.Header, err
	}
	if int64(len(b)) > limit {
		if resp.StatusCode < 400 {
			hint := "more than it can be"
			if limit == c.maxAnswer {
				hint = "the Client's WithMaxAnswer"
			}
			return resp.StatusCode, resp.Header, fmt.Errorf("workqueue: %s %s: answer (%d) over %d bytes, %s", method, path, resp.StatusCode, limit, hint)
		}
		b = b[:limit]
	}
	if resp.StatusCode >= 400 {
		ae := &apiError{resp.StatusCode, reason(b)}
		switch resp.StatusCode {
		case http.StatusConflict:
			return resp.StatusCode, resp.Header, fmt.Errorf("%w (%v)", ErrLeaseLost, ae)
		case http.StatusBadRequest:
			return resp.StatusCode, resp.Header, fmt.Errorf("%w (%v)", ErrInvalid, ae)
		case http.StatusRequestEntityTooLarge:
			return resp.StatusCode, resp.Header, fmt.Errorf("%w (%v)", ErrTooLarge, ae)
		case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
			// The server's queue closed or unavailable for now (a jetstream queue whose NATS server
			// is down), or the server is stopping (a restart, most likely), or a proxy in front of it
			// cannot reach it.
			return resp.StatusCode, resp.Header, fmt.Errorf("%w (%v)", ErrUnavailable, ae)
		}
		return resp.StatusCode, resp.Header, ae
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, resp.Header, &decodeError{body: b, err: err}
		}
	}
	return resp.StatusCode, resp.Header, nil
}

// postLease posts lr to path. The token is the server's queue's and opaque here (a user's own Queue
// behind the API may shape its tokens as it likes), so the server judges it: a 400 for it (a token
// the server cannot read) is ErrLeaseLost as well as ErrInvalid, as every Queue answers a token it
// did not hand out with ErrLeaseLost.
func (c *Client) postLease(ctx context.Context, path string, lr leaseReq, out any) error {
	if lr.Lease == "" {
		return ErrLeaseLost
	}
	b, _ := json.Marshal(lr)
	_, err := c.do(ctx, http.MethodPost, path, bytes.NewReader(b), "application/json", out)
	if errors.Is(err, ErrInvalid) {
		err = fmt.Errorf("%w: %w", ErrLeaseLost, err)
	}
	return err
}

// Add implements Queue.
func (c *Client) Add(ctx context.Context, payload []byte, o AddOptions) (string, error) {
	if o.Delay < 0 {
		return "", fmt.Errorf("%w: negative delay %v", ErrInvalid, o.Delay)
	}
	v := url.Values{}
	if o.Key != "" {
		v.Set("key", o.Key)
	}
	if o.Delay > 0 {
		v.Set("delay", o.Delay.String())
	}
	if o.Priority != 0 {
		v.Set("priority", strconv.Itoa(o.Priority))
	}
	var out struct{ ID string }
	_, err := c.do(ctx, http.MethodPost, "items?"+v.Encode(), bytes.NewReader(payload), "application/octet-stream", &out)
	return out.ID, err
}

// Lease implements Queue. It long-polls the server. When ctx ends during a poll, Lease asks the
// server to end the poll early (POST cancel) and still reads the poll's answer, for up to
// cancelGrace: an item the server leased before the poll ended is returned (with a nil error, as a
// Lease whose item came at the moment its ctx ended), rather than dropped on the way, where it would
// stay leased to nobody until its lease expired and count an attempt.
func (c *Client) Lease(ctx context.Context) (*Item, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wait := 30 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			// Ask the server to give up a little before our deadline, so the answer still arrives.
			left := time.Until(dl)
			wait = min(wait, left-left/10) // not left*9/10: a deadline decades ahead would overflow
		}
		if wait < time.Millisecond {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		it, err := c.poll(ctx, wait)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, ErrClosed) {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if it != nil {
			return it, nil
		}
	}
}

// cancelGrace bounds how long a Lease whose ctx ended waits for the answer to its poll (the cancel
// and the answer are one round trip each); after it the poll is abandoned, and the server gives
// back an item it leases for it once it sees the client gone.
const cancelGrace = 5 * time.Second

// poll is one lease request of up to wait; a nil item means the server had none. The request does
// not end with ctx: when ctx ends, endPoll asks the server to end the poll, and the answer, an item
// or none, is read as usual.
func (c *Client) poll(ctx context.Context, wait time.Duration) (*Item, error) {
	id := strconv.FormatUint(rand.Uint64(), 36)
	pctx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	answered, ended := make(chan struct{}), make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(ended)
		c.endPoll(id, answered, abort)
	})
	var it itemJSON
	code, _, err := c.call(pctx, http.MethodPost, "lease?wait="+wait.String()+"&poll="+id, nil, "", &it, c.maxAnswer)
	got := time.Now()
	close(answered)
	if !stop() {
		<-ended
	}
	if de := (*decodeError)(nil); errors.As(err, &de) {
		return nil, c.giveBackUndecoded(ctx, de)
	}
	if err != nil || code == http.StatusNoContent {
		return nil, err
	}
	return &Item{ID: it.ID, Key: it.Key, Payload: it.Payload, Priority: it.Priority, Attempt: it.Attempt, Lease: it.Lease, Deadline: localDeadline(it.Deadline, it.TTL, got)}, nil
}

// giveBackUndecoded releases the item of a lease answer that could not be decoded (mangled on the
// way, say), if its token can be read from it, so that the item is not left leased to nobody until
// its lease expires; its error says what became of the item.
func (c *Client) giveBackUndecoded(ctx context.Context, de *decodeError) error {
	var tok struct {
		Lease string `json:"lease"`
	}
	if json.Unmarshal(de.body, &tok) != nil || tok.Lease == "" {
		return fmt.Errorf("decode lease answer (%d bytes): %w; its lease token cannot be read either: the item it leased, if any, stays leased until its lease expires", len(de.body), de.err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), giveBackTimeout)
	defer cancel()
	if err := c.Release(rctx, tok.Lease); err != nil {
		return fmt.Errorf("decode lease answer (%d bytes): %w; releasing its item (lease %.80q) failed too, so it stays leased until its lease expires: %v", len(de.body), de.err, tok.Lease, err)
	}
	return fmt.Errorf("decode lease answer (%d bytes): %w; its item (lease %.80q) was released", len(de.body), de.err, tok.Lease)
}

// localDeadline is the deadline of a lease by this process's clock: at when plus the lease's ttl as
// the server wrote it, or else, from a server that does not write ttl, its deadline by its own
// clock. when is at or after the server wrote ttl, so the deadline is late by at most the answer's
// way back. Made from time.Now, it has a monotonic reading: a Pool compares it on the monotonic
// clock, which no step of the system clock moves.
func localDeadline(deadline time.Time, ttl string, when time.Time) time.Time {
	if d, err := time.ParseDuration(ttl); err == nil && d >= 0 {
		return when.Add(d)
	}
	return deadline
}

// endPoll asks the server to end poll id, whose ctx ended, and aborts the poll if its answer has
// not come within cancelGrace.
func (c *Client) endPoll(id string, answered <-chan struct{}, abort context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	defer cancel()
	select {
	case <-answered:
		return
	default:
	}
	_, _ = c.do(ctx, http.MethodPost, "cancel?poll="+id, nil, "", nil)
	select {
	case <-answered:
	case <-ctx.Done():
		abort()
	}
}

// Ack implements Queue.
func (c *Client) Ack(ctx context.Context, lease string) error {
	return c.postLease(ctx, "ack", leaseReq{Lease: lease}, nil)
}

// Nack implements Queue.
func (c *Client) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if delay < 0 {
		return fmt.Errorf("%w: negative delay %v", ErrInvalid, delay)
	}
	return c.postLease(ctx, "nack", leaseReq{Lease: lease, Delay: delay.String()}, nil)
}

// Release gives back a lease whose item was not worked on, or whose work was abandoned (a Pool
// draining): the item is ready again at once, and the attempt is not counted where the server's
// queue can release (Memory, workqueue/bolt); elsewhere the server nacks it without delay. A server
// without the release endpoint (404 or 405: an older one) gets a Nack without delay instead.
func (c *Client) Release(ctx context.Context, lease string) error {
	err := c.postLease(ctx, "release", leaseReq{Lease: lease}, nil)
	var ae *apiError
	if errors.As(err, &ae) && (ae.code == http.StatusNotFound || ae.code == http.StatusMethodNotAllowed) {
		return c.Nack(ctx, lease, 0)
	}
	return err
}

// Extend implements Queue.
func (c *Client) Extend(ctx context.Context, lease string) (time.Time, error) {
	var out extendJSON
	sent := time.Now() // before the server wrote ttl: the local deadline errs early, by the round trip at most
	if err := c.postLease(ctx, "extend", leaseReq{Lease: lease}, &out); err != nil {
		return time.Time{}, err
	}
	return localDeadline(out.Deadline, out.TTL, sent), nil
}

// Bury implements Queue.
func (c *Client) Bury(ctx context.Context, lease string, reason string) error {
	return c.postLease(ctx, "bury", leaseReq{Lease: lease, Reason: reason}, nil)
}

// Dead implements Queue: up to max dead letters (all when max < 0), oldest first. It asks for them
// a page at a time and follows each answer's link to the next page (see API), so max is not bounded
// by one answer's max nor its bytes; a server without pages (an older one) answers one page, of
// 10000 at most. It follows maxDeadPages pages at most (each 8 MiB or 10000 dead letters, unless it
// is the last: 8 GiB or ten million dead letters in all); a server that links to more (a broken
// one, linking forever) gets an error saying so. Any page that fails makes Dead return that error
// and none of the dead letters of the pages before it.
func (c *Client) Dead(ctx context.Context, max int) ([]DeadItem, error) {
	d := []DeadItem{}
	from := 0
	for page := 1; ; page++ { // one request at least, Dead(0) included
		if page > maxDeadPages {
			return nil, fmt.Errorf("workqueue: dead letters: the server linked to more than %d pages (%d dead letters so far), the most a Client follows", maxDeadPages, len(d))
		}
		n := maxDeadPage
		if max >= 0 {
			n = min(n, max-len(d))
		}
		var out []deadJSON
		_, resp, err := c.call(ctx, http.MethodGet, "dead?from="+strconv.Itoa(from)+"&max="+strconv.Itoa(n), nil, "", &out, c.maxAnswer)
		if err != nil {
			return nil, err
		}
		for _, x := range out {
			d = append(d, DeadItem(x))
		}
		next, ok := nextDeadPage(resp)
		if !ok || len(out) == 0 || next <= from || (max >= 0 && len(d) >= max) {
			return d, nil
		}
		from = next
	}
}

// maxDeadPages bounds how many pages of dead letters Client.Dead follows.
const maxDeadPages = 1000

// nextDeadPage is the from of the next page that a dead answer's header h links to (rel="next").
func nextDeadPage(h http.Header) (int, bool) {
	for _, v := range h.Values("Link") {
		for l := range strings.SplitSeq(v, ",") {
			ref, params, ok := strings.Cut(strings.TrimSpace(l), ";")
			if !ok || !strings.Contains(params, `rel="next"`) || !strings.HasPrefix(ref, "<") || !strings.HasSuffix(ref, ">") {
				continue
			}
			u, err := url.Parse(ref[1 : len(ref)-1])
			if err != nil {
				continue
			}
			if n, err := strconv.Atoi(u.Query().Get("from")); err == nil && n > 0 {
				return n, true
			}
		}
	}
	return 0, false
}

// Stats implements Queue.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	_, err := c.do(ctx, http.MethodGet, "stats", nil, "", &s)
	return s, err
}

// Close makes the client refuse further calls and aborts calls in flight (with ErrClosed). The
// server's queue is not affected. Idempotent.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.closeFn()
		if c.own != nil {
			c.own.CloseIdleConnections()
		}
	})
	return nil
}
