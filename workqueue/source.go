package workqueue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// ItemList and ItemData are the book's work-queue source interface ("Designing Distributed
// Systems", ch. 10): GET {base}/api/v1/items lists item names, GET {base}/api/v1/items/{name}
// returns one item whose "data" is the payload.
type ItemList struct {
	Kind       string   `json:"kind"`       // "ItemList"
	APIVersion string   `json:"apiVersion"` // "v1"
	Items      []string `json:"items"`
}

// ItemData is one item of a source. Its payload is the raw JSON text of Data, as the source wrote
// it: an object or array is added as its JSON, a string with its quotes and escapes
// ("data":"resize cat.png" is the 16 bytes "resize cat.png" in quotes), a number as its digits. The
// text is not unquoted, so that the payload is what the source sent, whatever it is, and a worker
// decodes it as JSON. An item without "data", or whose data is null, is refused (ErrSource): the
// item is not added, and later Polls try it again.
type ItemData struct {
	Kind       string          `json:"kind"` // "Item"
	APIVersion string          `json:"apiVersion"`
	Data       json.RawMessage `json:"data"`
}

// SourceOption configures a Source.
type SourceOption interface{ applySource(*sourceConfig) }

type sourceConfig struct {
	interval time.Duration
	hc       *http.Client
	logger   *zap.Logger
	reg      prometheus.Registerer
	name     string
}

type sourceOptionFunc func(*sourceConfig)

func (f sourceOptionFunc) applySource(c *sourceConfig) { f(c) }

// WithPollInterval sets how often a Source lists its items. Default 5s; NewSource refuses d <= 0.
func WithPollInterval(d time.Duration) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.interval = d })
}

// WithSourceHTTPClient sets the HTTP client. Default: one with a 10s timeout; NewSource refuses
// nil.
func WithSourceHTTPClient(hc *http.Client) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.hc = hc })
}

// WithSourceName names the Source: its metrics carry the label source="name", so that several
// Sources can register with one registerer (unnamed, the second one's metrics collide with the
// first's, and NewSource returns the registerer's error). Default "".
func WithSourceName(name string) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.name = name })
}

// Source is a Component that adapts a book-style item source into a Queue: it polls the list, and
// adds every name it has not seen listed before with the item's data as payload and the name as key.
// A name that leaves the list is forgotten, so it is added again if it comes back. After a restart
// every listed item is added again (at least once). A name whose item fails is tried again by later
// Polls, in the order Poll says.
type Source struct {
	base string
	q    Queue
	cfg  sourceConfig
	m    *sourceMetrics
	seen map[string]bool // added
	// waiting holds the names not added yet that a Poll failed on or stopped before, unless they
	// have been off the list for more than waitKept Polls in a row.
	waiting   map[string]waitMark
	tries     int // item tries of all Polls
	ready     chan struct{}
	readyOnce sync.Once // closes ready, at the first Run's first listed Poll: a Run after it does not
}

// waitMark is a waiting name's place: try is the number of its last try (of all Polls' tries), or
// for a name never tried, of the last try before the Poll that first stopped before it; absent
// counts the Polls in a row that did not list it.
type waitMark struct{ try, absent int }

// waitKept is how many Polls in a row a waiting name may be off the list and keep its place; one
// that comes back after more counts as new.
const waitKept = 10

// NewSource returns a Source that feeds q from the source at base (e.g. "http://127.0.0.1:8081"),
// which CheckSourceURL must take. With WithRegisterer it registers the Source's metrics (see the
// package doc), and returns the registerer's error if that fails, leaving none of them registered.
func NewSource(base string, q Queue, opts ...SourceOption) (*Source, error) {
	cfg := sourceConfig{interval: 5 * time.Second, hc: &http.Client{Timeout: 10 * time.Second}, logger: zap.NewNop()}
	for _, o := range opts {
		o.applySource(&cfg)
	}
	if err := CheckSourceURL(base); err != nil {
		return nil, err
	}
	switch {
	case q == nil:
		return nil, fmt.Errorf("%w: nil queue", ErrInvalid)
	case cfg.interval <= 0:
		return nil, badOption("WithPollInterval", cfg.interval, "want a positive duration")
	case cfg.hc == nil:
		return nil, badOption("WithSourceHTTPClient", "nil", "want a client")
	}
	if cfg.logger == nil {
		cfg.logger = zap.NewNop()
	}
	m, err := newSourceMetrics(cfg.reg, cfg.name)
	if err != nil {
		return nil, err
	}
	return &Source{base: strings.TrimRight(base, "/"), q: q, cfg: cfg, m: m, seen: map[string]bool{}, waiting: map[string]waitMark{}, ready: make(chan struct{})}, nil
}

// CheckSourceURL returns nil if base is a URL NewSource takes (http or https, with a host), and
// otherwise an error wrapping ErrInvalid that names it: a command can check a URL it was given
// before it opens the queue the Source is to feed.
func CheckSourceURL(base string) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: source URL %q (want http://host:port or https://host:port)", ErrInvalid, base)
	}
	return nil
}

// Ready is closed after the first poll that read the list, even if some of its items failed (see
// Poll): an item the source cannot serve must not keep the component unready.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Unregister takes the Source's metrics off the registerer that NewSource registered them with
// (see WithRegisterer), so that a Source made next with the registerer and the Source's name can
// register its own; call it once done with the Source, when no Run is under way. It changes nothing
// else: a Run under way goes on, its counts no longer scraped. Idempotent; without a registerer
// it does nothing.
func (s *Source) Unregister() { s.m.reg.Unregister() }

// Run polls until ctx ends; it returns nil then. Poll errors are logged and retried next interval.
// A Source may run again; its metrics count across its Runs, and stay registered after Run returns
// until Unregister.
func (s *Source) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.interval)
	defer t.Stop()
	for {
		n, err := s.Poll(ctx)
		var ie *itemErrors
		listed := err == nil || errors.As(err, &ie)
		switch {
		case ctx.Err() != nil:
		case !listed:
			s.cfg.logger.Warn("poll source", zap.String("source", s.base), zap.Error(err))
		case ie != nil:
			s.cfg.logger.Warn("items not added", zap.String("source", s.base), zap.Int("added", n), zap.Int("failed", ie.failed), zap.Error(err))
		case n > 0:
			s.cfg.logger.Info("items added", zap.Int("count", n))
		}
		if listed {
			s.readyOnce.Do(func() { close(s.ready) })
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ErrSource is returned by Poll when the source answers something that is not the interface.
var ErrSource = errors.New("workqueue: bad item source answer")

// Poll lists the source once and adds the new items; it returns how many it added. An item that
// fails (its GET or its Add) does not hold up the items listed after it, and is not marked seen, so
// a later Poll tries it again; the error then names the items that failed (after the whole list).
// A Poll tries the items it has not added least recently tried first, each group in list order: an
// item a Poll stopped before counts as tried just before that Poll's tries, unless it was tried
// earlier, and a new item counts as tried just before this one's, ahead of the item tried last. An
// item that leaves the list keeps its place for up to 10 Polls in a row, and counts as new if it
// comes back later. So failing items cannot keep the others out, whatever their place in the list,
// how many new ones come, or how often a name comes and goes (if not for longer than that). An
// item that counts as new again loses only its place: it was not added, so it is added once, in its
// turn; but listed for single Polls more than 10 apart, it takes its turn behind the failing items
// each time, and unanswered ones among them can end every Poll before it.
// When ctx ends, the queue closes or the source cannot be reached (two items in a row without an
// answer within the HTTP client's timeout, or with a refused connection), the items not yet tried are
// left for the next Poll: the others would wait alike. One such item alone (its GET aborted or too
// slow) does not stop the Poll. Run calls it; it is exported for one-shot use. Not safe for concurrent
// use with Run.
func (s *Source) Poll(ctx context.Context) (int, error) {
	var list ItemList
	if err := s.get(ctx, fetchList, "/api/v1/items", &list, &list.Kind); err != nil {
		return 0, err
	}
	start := s.tries
	listed := make(map[string]bool, len(list.Items))
	added := 0
	var failed itemErrors
	stop := false
	down := 0 // items in a row whose GET got no answer
	var todo []string
	for _, name := range list.Items {
		if name == "" || listed[name] {
			continue
		}
		listed[name] = true
		if !s.seen[name] {
			todo = append(todo, name)
		}
	}
	// Least recently tried first; a new name counts as tried just before this Poll, and goes before
	// the name tried last (which may have ended the last Poll).
	last := func(name string) (int, int) {
		if w, ok := s.waiting[name]; ok {
			return w.try, 1
		}
		return start, 0
	}
	slices.SortStableFunc(todo, func(a, b string) int {
		na, oa := last(a)
		nb, ob := last(b)
		return cmp.Or(cmp.Compare(na, nb), cmp.Compare(oa, ob))
	})
	for _, name := range todo {
		if stop {
			if _, ok := s.waiting[name]; !ok {
				s.waiting[name] = waitMark{try: start} // before this Poll's tries
			}
			continue
		}
		s.tries++
		if err := s.add(ctx, name); err != nil {
			failed.add(err)
			s.waiting[name] = waitMark{try: s.tries}
			var u *unreachable
			if errors.As(err, &u) {
				down++
			} else {
				down = 0
			}
			// The other items would fail alike.
			stop = ctx.Err() != nil || errors.Is(err, ErrClosed) || down >= 2
			continue
		}
		down = 0
		delete(s.waiting, name)
		s.seen[name] = true
		added++
	}
	for name := range s.seen {
		if !listed[name] {
			delete(s.seen, name)
		}
	}
	for name, w := range s.waiting {
		switch {
		case listed[name]:
			w.absent = 0
		case w.absent >= waitKept:
			delete(s.waiting, name)
			continue
		default:
			w.absent++
		}
		s.waiting[name] = w
	}
	if failed.failed > 0 {
		return added, &failed
	}
	return added, nil
}

// add fetches item name and adds it to the queue with the name as key.
func (s *Source) add(ctx context.Context, name string) error {
	var it ItemData
	if err := s.get(ctx, fetchItem, "/api/v1/items/"+url.PathEscape(name), &it, &it.Kind); err != nil {
		return fmt.Errorf("item %q: %w", name, err)
	}
	_, err := s.q.Add(ctx, []byte(it.Data), AddOptions{Key: name})
	s.m.added(ctx, err)
	if err != nil {
		return fmt.Errorf("add %q: %w", name, err)
	}
	return nil
}

// unreachable is an error of the transport to the source (as opposed to an answer it gave).
type unreachable struct{ err error }

func (e *unreachable) Error() string { return e.err.Error() }
func (e *unreachable) Unwrap() error { return e.err }

// maxItemErrs is how many item errors a Poll's error keeps (and names); it counts the others.
const maxItemErrs = 10

// itemErrors is the error of a Poll that read the list but could not add some of its items.
type itemErrors struct {
	errs   []error // the first maxItemErrs
	failed int     // items that failed, in errs or not
}

func (e *itemErrors) add(err error) {
	if len(e.errs) < maxItemErrs {
		e.errs = append(e.errs, err)
	}
	e.failed++
}

func (e *itemErrors) Error() string {
	var b strings.Builder
	for i, err := range e.errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	if more := e.failed - len(e.errs); more > 0 {
		fmt.Fprintf(&b, "; and %d more items", more)
	}
	return b.String()
}

// Unwrap returns the errors kept, so errors.Is and errors.As see them.
func (e *itemErrors) Unwrap() []error { return e.errs }

// fetchKinds are the kinds the answers of the requests must have (or none), by request.
var fetchKinds = [numFetches]string{fetchList: "ItemList", fetchItem: "Item"}

// get GETs path, a request of kind fetch (fetchList or fetchItem), into out, whose kind, decoded
// into *kind, must be fetchKinds[fetch] or empty (and an ItemData's Data neither absent nor null);
// and counts it, once it is done, in the Source's
// metrics.
func (s *Source) get(ctx context.Context, fetch int, path string, out any, kind *string) error {
	start := time.Now()
	err := s.getJSON(ctx, path, out)
	if want := fetchKinds[fetch]; err == nil && *kind != "" && *kind != want {
		err = fmt.Errorf("%w: GET %s: kind %q, want %q", ErrSource, path, *kind, want)
	}
	if it, ok := out.(*ItemData); ok && err == nil && (len(it.Data) == 0 || string(it.Data) == "null") {
		err = fmt.Errorf("%w: GET %s: no \"data\" (absent or null)", ErrSource, path)
	}
	s.m.observe(ctx, fetch, time.Since(start), err)
	return err
}

func (s *Source) getJSON(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := s.cfg.hc.Do(req)
	if err != nil {
		return &unreachable{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorAnswer))
		return fmt.Errorf("%w: GET %s: status %d: %s", ErrSource, path, resp.StatusCode, reason(b))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &unreachable{err}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: GET %s: %v", ErrSource, path, err)
	}
	return nil
}
