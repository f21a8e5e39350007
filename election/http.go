package election

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Candidate is what the HTTP leader API needs from an elector; *Elector implements it.
type Candidate interface {
	Leader() Leader
	Observe(ctx context.Context) <-chan Leader
	Resign(ctx context.Context) error
}

var _ Candidate = (*Elector)(nil)

// streamWriteTimeout bounds each write of a watch stream, so a stuck client is dropped.
const streamWriteTimeout = 10 * time.Second

// NewHandler returns the language-neutral HTTP leader API for c (the paper's election container):
//
//	GET  /leader          {"leader":"<id>","token":<uint64>,"self":<bool>} ("" and 0 when no leader)
//	GET  /leader?watch=1  the same object now and on every change, one JSON object per line
//	POST /resign          {"resigned":true}; 409 if this candidate is not the leader
//
// A wrong method gets 405, an unknown path 404, and an unknown or malformed parameter 400, each with
// a one-line reason. Mount it at the root of a listener with timeouts; watch streams set their own
// write deadline per line and end when the request's context ends.
func NewHandler(c Candidate) http.Handler {
	return &handler{c: c}
}

type handler struct{ c Candidate }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/leader":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpError(w, http.StatusMethodNotAllowed, fmt.Sprintf("election: %s /leader: use GET", r.Method))
			return
		}
		watch, err := parseLeaderQuery(r.URL.RawQuery)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		if watch {
			h.watch(w, r)
			return
		}
		writeJSON(w, http.StatusOK, h.c.Leader())
	case "/resign":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			httpError(w, http.StatusMethodNotAllowed, fmt.Sprintf("election: %s /resign: use POST", r.Method))
			return
		}
		if r.URL.RawQuery != "" {
			httpError(w, http.StatusBadRequest, "election: /resign takes no parameters")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		switch err := h.c.Resign(ctx); {
		case err == nil:
			writeJSON(w, http.StatusOK, map[string]bool{"resigned": true})
		case errors.Is(err, ErrNotLeader):
			httpError(w, http.StatusConflict, err.Error())
		default:
			httpError(w, http.StatusServiceUnavailable, "election: resign: "+err.Error())
		}
	default:
		httpError(w, http.StatusNotFound, "election: no such path "+fmt.Sprintf("%q", r.URL.Path)+" (try /leader, /leader?watch=1, /resign)")
	}
}

// parseLeaderQuery accepts an empty query or watch=1|true|0|false, once.
func parseLeaderQuery(raw string) (watch bool, err error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return false, fmt.Errorf("election: bad query: %w", err)
	}
	for k, vs := range q {
		if k != "watch" {
			return false, fmt.Errorf("election: unknown parameter %q (only watch)", k)
		}
		if len(vs) != 1 {
			return false, errors.New("election: parameter watch given more than once")
		}
		switch vs[0] {
		case "1", "true":
			watch = true
		case "0", "false":
		default:
			return false, fmt.Errorf("election: watch=%q: want 1, true, 0 or false", vs[0])
		}
	}
	return watch, nil
}

func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for l := range h.c.Observe(r.Context()) {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if err := enc.Encode(l); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "election: encode: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func httpError(w http.ResponseWriter, code int, reason string) {
	http.Error(w, reason, code)
}
