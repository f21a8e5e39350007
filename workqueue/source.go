package workqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

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

// ItemData is one item of a source.
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
}

type sourceOptionFunc func(*sourceConfig)

func (f sourceOptionFunc) applySource(c *sourceConfig) { f(c) }

// WithPollInterval sets how often a Source lists its items. Default 5s.
func WithPollInterval(d time.Duration) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.interval = d })
}

// WithSourceHTTPClient sets the HTTP client. Default: one with a 10s timeout.
func WithSourceHTTPClient(hc *http.Client) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.hc = hc })
}

// WithSourceLogger sets the logger. Default zap.NewNop().
func WithSourceLogger(l *zap.Logger) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.logger = l })
}

// Source is a Component that adapts a book-style item source into a Queue: it polls the list, and
// adds every name it has not seen listed before with the item's data as payload and the name as key.
// A name that leaves the list is forgotten, so it is added again if it comes back. After a restart
// every listed item is added again (at least once).
type Source struct {
	base  string
	q     Queue
	cfg   sourceConfig
	seen  map[string]bool
	ready chan struct{}
}

// NewSource returns a Source that feeds q from the source at base (e.g. "http://127.0.0.1:8081").
func NewSource(base string, q Queue, opts ...SourceOption) (*Source, error) {
	cfg := sourceConfig{interval: 5 * time.Second, hc: &http.Client{Timeout: 10 * time.Second}, logger: zap.NewNop()}
	for _, o := range opts {
		o.applySource(&cfg)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: source URL %q", ErrInvalid, base)
	}
	if q == nil || cfg.interval <= 0 || cfg.hc == nil {
		return nil, fmt.Errorf("%w: nil queue or client, or non-positive interval", ErrInvalid)
	}
	return &Source{base: strings.TrimRight(base, "/"), q: q, cfg: cfg, seen: map[string]bool{}, ready: make(chan struct{})}, nil
}

// Ready is closed after the first successful poll.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// Run polls until ctx ends; it returns nil then. Poll errors are logged and retried next interval.
func (s *Source) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.interval)
	defer t.Stop()
	readyClosed := false
	for {
		n, err := s.Poll(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.logger.Warn("poll source", zap.String("source", s.base), zap.Error(err))
		case err == nil:
			if n > 0 {
				s.cfg.logger.Info("items added", zap.Int("count", n))
			}
			if !readyClosed {
				close(s.ready)
				readyClosed = true
			}
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

// Poll lists the source once and adds the new items; it returns how many it added. Run calls it;
// it is exported for one-shot use. Not safe for concurrent use with Run.
func (s *Source) Poll(ctx context.Context) (int, error) {
	var list ItemList
	if err := s.get(ctx, "/api/v1/items", &list); err != nil {
		return 0, err
	}
	if list.Kind != "" && list.Kind != "ItemList" {
		return 0, fmt.Errorf("%w: list kind %q", ErrSource, list.Kind)
	}
	listed := make(map[string]bool, len(list.Items))
	added := 0
	for _, name := range list.Items {
		if name == "" || listed[name] {
			continue
		}
		listed[name] = true
		if s.seen[name] {
			continue
		}
		var it ItemData
		if err := s.get(ctx, "/api/v1/items/"+url.PathEscape(name), &it); err != nil {
			return added, fmt.Errorf("item %q: %w", name, err)
		}
		if _, err := s.q.Add(ctx, []byte(it.Data), AddOptions{Key: name}); err != nil {
			return added, fmt.Errorf("add %q: %w", name, err)
		}
		s.seen[name] = true
		added++
	}
	for name := range s.seen {
		if !listed[name] {
			delete(s.seen, name)
		}
	}
	return added, nil
}

func (s *Source) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := s.cfg.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GET %s: status %d", ErrSource, path, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w: GET %s: %v", ErrSource, path, err)
	}
	return nil
}
