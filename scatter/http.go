package scatter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Headers the HTTP root sets on every answer.
const (
	HeaderShards   = "X-Scatter-Shards"   // number of shards
	HeaderAnswered = "X-Scatter-Answered" // shards that answered
	HeaderCoverage = "X-Scatter-Coverage" // answered / shards, 3 decimals
	HeaderHedges   = "X-Scatter-Hedges"   // backup requests sent
	HeaderEnd      = "X-Scatter-End"      // why the fan-out ended: all, quorum, failfast, context, canary
	HeaderStatuses = "X-Scatter-Statuses" // per shard status, comma separated, in shard order
)

// HeaderBadRequest marks a leaf's 400 answer as the request's fault: LeafHandler sets it to "1"
// when Func's error matches ErrBadRequest, and HTTPLeaf maps only such an answer to an error
// matching ErrBadRequest. Any other 4xx (a 404 from a replica without the index, a proxy's 400)
// is the replica's failure, which a replica set fails over.
const HeaderBadRequest = "X-Scatter-Bad-Request"

// DefaultMaxBody is the default request and answer size limit of the HTTP leaf, handler and root.
const DefaultMaxBody = 1 << 20

// ErrBodyTooLarge is returned when an HTTP body exceeds its size limit.
var ErrBodyTooLarge = errors.New("scatter: body too large")

// httpError is the JSON body of every non-200 answer.
type httpError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(httpError{Error: "encode answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// readLimited reads all of r, failing with ErrBodyTooLarge past limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrBodyTooLarge
	}
	return b, nil
}

// decodeBody reads a JSON request body into v and answers 4xx itself when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, httpError{Error: "use POST with a JSON body"})
		return false
	}
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	b, err := readLimited(r.Body, limit)
	if errors.Is(err, ErrBodyTooLarge) {
		writeJSON(w, http.StatusRequestEntityTooLarge, httpError{Error: fmt.Sprintf("body larger than %d bytes", limit)})
		return false
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, httpError{Error: "read body: " + err.Error()})
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeJSON(w, http.StatusBadRequest, httpError{Error: "decode request: " + err.Error()})
		return false
	}
	return true
}

// LeafHandler serves a leaf function over HTTP: POST a JSON Req, get 200 and a JSON Resp, or a
// JSON {"error": "..."} with 400 (undecodable request, or Func's error matches ErrBadRequest: then
// with HeaderBadRequest set to "1"), 405 (not POST), 413 (too large) or 500 (Func failed or
// panicked). The zero value is not usable: set Func.
type LeafHandler[Req, Resp any] struct {
	// Func answers one request; ctx is the HTTP request's context.
	Func func(ctx context.Context, req Req) (Resp, error)
	// MaxBody limits the request body (0: DefaultMaxBody).
	MaxBody int64
	// Log gets a warning per failed or panicking call (nil: none).
	Log *zap.Logger
}

func (h *LeafHandler[Req, Resp]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req Req
	if !decodeBody(w, r, h.MaxBody, &req) {
		return
	}
	resp, err := h.call(r.Context(), req)
	if err != nil {
		if h.Log != nil {
			h.Log.Warn("leaf call failed", zap.Error(err))
		}
		code := http.StatusInternalServerError
		if errors.Is(err, ErrBadRequest) {
			code = http.StatusBadRequest
			w.Header().Set(HeaderBadRequest, "1")
		}
		writeJSON(w, code, httpError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *LeafHandler[Req, Resp]) call(ctx context.Context, req Req) (resp Resp, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h.Func(ctx, req)
}

// HTTPStatusError is a leaf's non-200 HTTP answer. Only a 400 answer carrying HeaderBadRequest
// (a LeafHandler whose Func refused the request with BadRequest) blames the request: it matches
// ErrBadRequest, and a replica set does not retry it on another replica. Any other non-200
// answer, 4xx included, is the replica's failure.
type HTTPStatusError struct {
	Code       int
	Message    string // the answer's "error" field, or its first 200 bytes (cut on a rune boundary, spaces trimmed)
	BadRequest bool   // a 400 answer with HeaderBadRequest: the leaf refused the request itself
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("scatter: leaf answered %d: %s", e.Code, e.Message)
}

// Is reports whether target is ErrBadRequest and the leaf marked the request as bad.
func (e *HTTPStatusError) Is(target error) bool {
	return target == ErrBadRequest && e.BadRequest
}

// HTTPLeaf is a Leaf that POSTs the request as JSON to a URL (served by a LeafHandler) and decodes
// the JSON answer. Undecodable answers, non-200 answers, closed connections and answers larger
// than MaxBody are that leaf's error; a non-200 answer is an *HTTPStatusError whatever its body
// (one larger than MaxBody is cut).
type HTTPLeaf[Req, Resp any] struct {
	URL     string
	Client  *http.Client // nil: one client shared by such leaves, made by NewHTTPClient
	MaxBody int64        // answer size limit (0: DefaultMaxBody)
}

// NewHTTPLeaf returns a leaf for url using client (nil: a shared default for this leaf).
func NewHTTPLeaf[Req, Resp any](url string, client *http.Client) *HTTPLeaf[Req, Resp] {
	if client == nil {
		client = NewHTTPClient()
	}
	return &HTTPLeaf[Req, Resp]{URL: url, Client: client}
}

// NewHTTPClient returns a client for HTTP leaves: no overall timeout (the fan-out's contexts bound
// calls), a dial timeout of 5s, and 64 idle connections per host so a busy root reuses them.
func NewHTTPClient() *http.Client {
	t := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0,
	}
	return &http.Client{Transport: t}
}

// sharedClient is the client of HTTPLeafs with a nil Client, made at its first use.
var sharedClient = sync.OnceValue(NewHTTPClient)

// Call POSTs req and decodes the answer.
func (l *HTTPLeaf[Req, Resp]) Call(ctx context.Context, req Req) (Resp, error) {
	var zero Resp
	body, err := json.Marshal(req)
	if err != nil {
		return zero, fmt.Errorf("encode request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, l.URL, bytes.NewReader(body))
	if err != nil {
		return zero, fmt.Errorf("build request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	c := l.Client
	if c == nil {
		c = sharedClient()
	}
	res, err := c.Do(hr)
	if err != nil {
		return zero, err
	}
	defer res.Body.Close()
	limit := l.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	if res.StatusCode != http.StatusOK {
		// The status is the answer; the body only explains it, so one cut at the limit (or
		// broken off) still gives its first bytes.
		b, _ := io.ReadAll(io.LimitReader(res.Body, limit))
		var he httpError
		n := min(len(b), 200)
		for n > 0 && n < len(b) && !utf8.RuneStart(b[n]) {
			n-- // cut on a rune boundary
		}
		msg := strings.TrimSpace(string(b[:n]))
		if json.Unmarshal(b, &he) == nil && he.Error != "" {
			msg = he.Error
		}
		bad := res.StatusCode == http.StatusBadRequest && res.Header.Get(HeaderBadRequest) != ""
		return zero, &HTTPStatusError{Code: res.StatusCode, Message: msg, BadRequest: bad}
	}
	b, err := readLimited(res.Body, limit)
	if err != nil {
		return zero, fmt.Errorf("read answer: %w", err)
	}
	var resp Resp
	if err := json.Unmarshal(b, &resp); err != nil {
		return zero, fmt.Errorf("decode answer: %w", err)
	}
	return resp, nil
}

// ParseShards parses a shard list: shards separated by commas, the replicas of a shard by '|',
// for example "http://a:1|http://b:1,http://c:1" (two shards, the first with two replicas).
// Spaces around items are ignored. An empty shard or replica, or a replica that is not an http://
// or https:// URL with a host, is an error naming it.
func ParseShards(spec string) ([][]string, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("parse shards: %w", ErrNoLeaves)
	}
	var out [][]string
	for i, sh := range strings.Split(spec, ",") {
		var reps []string
		for _, r := range strings.Split(sh, "|") {
			r = strings.TrimSpace(r)
			if r == "" {
				return nil, fmt.Errorf("parse shards: shard %d has an empty replica", i)
			}
			if err := checkLeafURL(r); err != nil {
				return nil, fmt.Errorf("parse shards: shard %d: %w", i, err)
			}
			reps = append(reps, r)
		}
		out = append(out, reps)
	}
	return out, nil
}

// checkLeafURL accepts an absolute http or https URL with a host: what HTTPLeaf can POST to.
func checkLeafURL(s string) error {
	if isLeafURL(s) {
		return nil
	}
	msg := fmt.Sprintf("leaf URL %q: want http:// or https:// and a host", s)
	if u, err := url.Parse(s); (err != nil || u.Scheme != "http" && u.Scheme != "https") && !strings.Contains(s, "://") && isLeafURL("http://"+s) {
		msg += fmt.Sprintf(" (as in %q)", "http://"+s) // a bare host:port, most likely
	}
	return errors.New(msg)
}

func isLeafURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// HTTPShards builds one leaf per shard of spec (see ParseShards): an HTTPLeaf for a single URL,
// a ReplicaSet of HTTPLeaves for several. client nil means one NewHTTPClient shared by all. A URL
// that is not http:// or https:// with a host is an error naming it, as in ParseShards.
func HTTPShards[Req, Resp any](spec [][]string, client *http.Client) ([]Leaf[Req, Resp], error) {
	if len(spec) == 0 {
		return nil, ErrNoLeaves
	}
	if client == nil {
		client = NewHTTPClient()
	}
	leaves := make([]Leaf[Req, Resp], len(spec))
	for i, urls := range spec {
		reps := make([]Leaf[Req, Resp], len(urls))
		for j, u := range urls {
			if err := checkLeafURL(u); err != nil {
				return nil, fmt.Errorf("shard %d: %w", i, err)
			}
			reps[j] = NewHTTPLeaf[Req, Resp](u, client)
		}
		if len(reps) == 1 {
			leaves[i] = reps[0]
			continue
		}
		rs, err := NewReplicaSet(reps...)
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
		leaves[i] = rs
	}
	return leaves, nil
}

// RootHandler serves a fan-out over HTTP: it decodes a request (by default a POSTed JSON Req),
// runs Fanout.Do with the HTTP request's context, and answers 200 with the JSON Out, or 503 with
// {"error": "..."} when the fan-out failed (400 when no shard answered and a leaf refused the
// request: the error matches ErrBadRequest). Every answer carries X-Scatter-Shards; the answers of a
// fan-out (200, 503, and such a 400) carry the other X-Scatter-* coverage headers too, while a request refused
// before any fan-out (400, 405, 413) carries no other.
type RootHandler[Req, Resp, Out any] struct {
	Fanout *Fanout[Req, Resp, Out]
	// Decode reads the request (nil: a JSON body of at most MaxBody bytes, POST only). An error
	// answers 400 with its text.
	Decode func(r *http.Request) (Req, error)
	// Encode returns the value answered as JSON on success (nil: res.Out).
	Encode func(req Req, res *Result[Resp, Out]) any
	// MaxBody limits the default decoder's body (0: DefaultMaxBody).
	MaxBody int64
}

func (h *RootHandler[Req, Resp, Out]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderShards, strconv.Itoa(len(h.Fanout.leaves)))
	var req Req
	if h.Decode != nil {
		var err error
		if req, err = h.Decode(r); err != nil {
			writeJSON(w, http.StatusBadRequest, httpError{Error: err.Error()})
			return
		}
	} else if !decodeBody(w, r, h.MaxBody, &req) {
		return
	}
	res, err := h.Fanout.Do(r.Context(), req)
	hd := w.Header()
	hd.Set(HeaderAnswered, strconv.Itoa(res.Answered))
	hd.Set(HeaderCoverage, strconv.FormatFloat(res.Coverage(), 'f', 3, 64))
	hd.Set(HeaderHedges, strconv.Itoa(res.Hedges))
	hd.Set(HeaderEnd, res.Why.String())
	var sb strings.Builder
	for i, s := range res.Slots {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(s.Status.String())
	}
	hd.Set(HeaderStatuses, sb.String())
	if err != nil {
		code := http.StatusServiceUnavailable
		if res.Answered == 0 && errors.Is(err, ErrBadRequest) {
			code = http.StatusBadRequest // the leaves refused the request: retrying will not help
		}
		writeJSON(w, code, httpError{Error: err.Error()})
		return
	}
	if h.Encode != nil {
		writeJSON(w, http.StatusOK, h.Encode(req, res))
		return
	}
	writeJSON(w, http.StatusOK, res.Out)
}

// ParseCoverage reads the coverage headers of a root's answer.
func ParseCoverage(h http.Header) (answered, shards int, err error) {
	if answered, err = strconv.Atoi(h.Get(HeaderAnswered)); err != nil {
		return 0, 0, fmt.Errorf("parse %s: %w", HeaderAnswered, err)
	}
	if shards, err = strconv.Atoi(h.Get(HeaderShards)); err != nil {
		return 0, 0, fmt.Errorf("parse %s: %w", HeaderShards, err)
	}
	if answered < 0 || shards < 0 || answered > shards {
		return 0, 0, fmt.Errorf("parse coverage: %d of %d is not a coverage", answered, shards)
	}
	return answered, shards, nil
}
