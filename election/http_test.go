package election_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/electiontest"
	"github.com/podblocks/podblocks/lifecycletest"
)

// runElector runs an Elector for id on b until the test ends.
func runElector(t *testing.T, b election.Backend, id string) *election.Elector {
	t.Helper()
	var l blockingLeader
	e, err := election.New(b, id, l.run)
	if err != nil {
		t.Fatal(err)
	}
	lifecycletest.StartReady(t, e, 10*time.Second)
	return e
}

func TestHandlerBadInput(t *testing.T) {
	f := &electiontest.Fake{Manual: true}
	e := runElector(t, f, "me")
	h := election.NewHandler(e)
	tests := []struct {
		method, target string
		code           int
	}{
		{http.MethodPost, "/leader", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/leader", http.StatusMethodNotAllowed},
		{http.MethodGet, "/resign", http.StatusMethodNotAllowed},
		{http.MethodGet, "/leader?watch=2", http.StatusBadRequest},
		{http.MethodGet, "/leader?watch=1&watch=1", http.StatusBadRequest},
		{http.MethodGet, "/leader?foo=1", http.StatusBadRequest},
		{http.MethodGet, "/leader?%zz", http.StatusBadRequest},
		{http.MethodPost, "/resign?now=1", http.StatusBadRequest},
		{http.MethodPost, "/resign", http.StatusConflict}, // not the leader
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/leader", http.StatusOK},
		{http.MethodGet, "/leader?watch=0", http.StatusOK},
		{http.MethodHead, "/leader", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tt.method, tt.target, nil))
			if w.Code != tt.code {
				t.Fatalf("code %d, want %d (body %q)", w.Code, tt.code, w.Body.String())
			}
			if w.Code >= 400 && strings.TrimSpace(w.Body.String()) == "" {
				t.Fatalf("%d without a reason", w.Code)
			}
		})
	}
}

func getLeader(t *testing.T, url string) election.Leader {
	t.Helper()
	resp, err := http.Get(url + "/leader")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l election.Leader
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l
}

// openWatch starts GET /leader?watch=1 on the API at url and returns the stream's lines; the stream
// ends when ctx does.
func openWatch(t *testing.T, ctx context.Context, url string) *bufio.Scanner {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/leader?watch=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return bufio.NewScanner(resp.Body)
}

func TestHandlerLeaderWatchResign(t *testing.T) {
	f := &electiontest.Fake{Manual: true}
	e := runElector(t, f, "me")
	srv := httptest.NewServer(election.NewHandler(e))
	defer srv.Close()

	// The JSON shape is a contract (DESIGN.md).
	resp, err := http.Get(srv.URL + "/leader")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if diff := cmp.Diff(`{"leader":"","token":0,"self":false}`+"\n", string(body)); diff != "" {
		t.Fatalf("GET /leader with no leader (-want +got):\n%s", diff)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines := openWatch(t, ctx, srv.URL)
	next := func() election.Leader {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("watch stream ended: %v", lines.Err())
		}
		var l election.Leader
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			t.Fatalf("watch line %q: %v", lines.Text(), err)
		}
		return l
	}
	if diff := cmp.Diff(election.Leader{}, next()); diff != "" {
		t.Fatalf("first watch line (-want +got):\n%s", diff)
	}
	f.Grant("me")
	// The store may report "me" a moment before this Elector starts its term (Self false).
	l := next()
	if l == (election.Leader{ID: "me", Token: 1}) {
		l = next()
	}
	if diff := cmp.Diff(election.Leader{ID: "me", Token: 1, Self: true}, l); diff != "" {
		t.Fatalf("watch after grant (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(election.Leader{ID: "me", Token: 1, Self: true}, getLeader(t, srv.URL)); diff != "" {
		t.Fatalf("GET /leader after grant (-want +got):\n%s", diff)
	}
	rresp, err := http.Post(srv.URL+"/resign", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	rresp.Body.Close()
	if rresp.StatusCode != http.StatusOK {
		t.Fatalf("POST /resign: %d", rresp.StatusCode)
	}
	// Resign released the term; the manual fake grants nothing more, so there is no leader.
	for l := next(); l != (election.Leader{}); l = next() {
		if l.Self {
			t.Fatalf("still self after resign: %+v", l)
		}
	}
	cancel()
}

// TestHandlerWatchBeforeRun: a watch that arrives while the Elector has not started yet (the HTTP
// server starts first, so probes answer while the elector connects) stays open and streams the
// leader once the Elector runs, instead of ending after the first line.
func TestHandlerWatchBeforeRun(t *testing.T) {
	var l blockingLeader
	e, err := election.New(election.NewMemory(), "me", l.run)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(election.NewHandler(e))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines := openWatch(t, ctx, srv.URL)
	var got []string
	for lines.Scan() {
		if lines.Text() == `{"leader":"me","token":1,"self":false}` {
			continue // the backend may report the term a moment before this Elector starts it
		}
		got = append(got, lines.Text())
		if len(got) == 1 {
			lifecycletest.StartReady(t, e, 10*time.Second) // Run starts after the watch began
		}
		if strings.Contains(lines.Text(), `"self":true`) {
			break
		}
	}
	want := []string{`{"leader":"","token":0,"self":false}`, `{"leader":"me","token":1,"self":true}`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("watch stream (-want +got):\n%s\n(stream error %v)", diff, lines.Err())
	}
}

func FuzzHandlerQuery(f *testing.F) {
	for _, q := range []string{"", "watch=0", "watch=false", "watch=2", "foo=1", "%zz", "watch=1&watch=0", "watch"} {
		f.Add(q)
	}
	e, err := election.New(election.NewMemory(), "me", func(context.Context, election.Term) error { return nil })
	if err != nil {
		f.Fatal(err)
	}
	h := election.NewHandler(e)
	f.Fuzz(func(t *testing.T, q string) {
		if strings.Contains(q, "watch=1") || strings.Contains(q, "watch=true") {
			return // a live stream; covered by TestHandlerLeaderWatchResign
		}
		r := httptest.NewRequest(http.MethodGet, "/leader", nil)
		r.URL.RawQuery = q
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			var l election.Leader
			if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
				t.Fatalf("query %q: 200 with body %q: %v", q, w.Body.String(), err)
			}
		case http.StatusBadRequest:
			if strings.TrimSpace(w.Body.String()) == "" {
				t.Fatalf("query %q: 400 without a reason", q)
			}
		default:
			t.Fatalf("query %q: code %d", q, w.Code)
		}
	})
}
