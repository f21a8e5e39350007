package scrape

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ErrNothingPushed is JSONPush's probe error before the first document arrives.
var ErrNothingPushed = errors.New("scrape: no document pushed yet")

// ErrStale is JSONPush's probe error when the last document is older than its MaxAge.
var ErrStale = errors.New("scrape: last pushed document is too old")

// JSONPush is the push side of the JSON adapter: an application POSTs (or PUTs) its JSON
// document to it (it is an http.Handler), and as a Probe it extracts samples from the last
// document pushed (the target is ignored). Serve it with an Exporter and WithTarget("pushed").
type JSONPush struct {
	Config *JSONConfig
	// MaxBytes bounds a pushed document (0 means 10 MiB).
	MaxBytes int64
	// MaxAge, when positive, fails the probe (ErrStale, so probe_success 0) once the last
	// document is older than that, as when the application pushing it stopped; 0 serves the
	// last document forever.
	MaxAge time.Duration

	mu  sync.Mutex
	doc any
	ok  bool
	at  time.Time // when doc was pushed
}

// ServeHTTP accepts a JSON document: 204 when stored, 400 with a reason when it is not JSON, 413
// when too large, 405 for methods other than POST and PUT.
func (p *JSONPush) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		w.Header().Set("Allow", "POST, PUT")
		http.Error(w, "scrape: push with POST or PUT", http.StatusMethodNotAllowed)
		return
	}
	limit := p.MaxBytes
	if limit <= 0 {
		limit = 10 << 20
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("scrape: document larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "scrape: read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	doc, err := DecodeJSON(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.doc, p.ok, p.at = doc, true, time.Now()
	p.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Probe implements Probe: the samples of the last pushed document.
func (p *JSONPush) Probe(ctx context.Context, _ string) ([]Sample, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.Config == nil {
		return nil, errors.New("scrape: JSONPush without config")
	}
	p.mu.Lock()
	doc, ok, at := p.doc, p.ok, p.at
	p.mu.Unlock()
	if !ok {
		return nil, ErrNothingPushed
	}
	if age := time.Since(at); p.MaxAge > 0 && age > p.MaxAge {
		return nil, fmt.Errorf("%w: pushed %v ago (max age %v)", ErrStale, age.Round(time.Millisecond), p.MaxAge)
	}
	return p.Config.Extract(doc), nil
}
