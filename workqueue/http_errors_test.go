package workqueue_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

// TestAPINotFoundAndWrongMethodAreJSON: a path the API does not serve gets 404 and a wrong method
// 405 (with Allow), both as {"error":reason} like every other error, and a Client shows the reason.
func TestAPINotFoundAndWrongMethodAreJSON(t *testing.T) {
	_, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
		reason       string
	}{
		{"GET", workqueue.APIPrefix + "lease", 405, "POST", "method GET not allowed"},
		{"PUT", workqueue.APIPrefix + "ack", 405, "POST", "use POST"},
		{"POST", workqueue.APIPrefix + "stats", 405, "GET, HEAD", "use GET"},
		{"DELETE", workqueue.APIPrefix + "dead", 405, "GET, HEAD", "use GET"},
		{"GET", workqueue.APIPrefix + "nope", 404, "", "no endpoint " + workqueue.APIPrefix + "nope"},
		{"POST", workqueue.APIPrefix, 404, "", "no endpoint"},
		{"GET", "/", 404, "", "no endpoint /"},
		{"POST", workqueue.APIPrefix + "lease/x", 404, "", "no endpoint"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct{ Error string }
		jerr := json.Unmarshal(b, &e)
		if resp.StatusCode != tc.code || resp.Header.Get("Content-Type") != "application/json" || jerr != nil || !strings.Contains(e.Error, tc.reason) {
			t.Errorf("%s %s: %d %s %q, want %d application/json {\"error\":...%q...}", tc.method, tc.path,
				resp.StatusCode, resp.Header.Get("Content-Type"), b, tc.code, tc.reason)
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	// HEAD is served where GET is, as ServeMux serves it.
	resp, err := srv.Client().Head(srv.URL + workqueue.APIPrefix + "stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD stats: %d, want 200", resp.StatusCode)
	}

	// A Client of a server whose API is elsewhere shows the server's reason.
	cl, err := workqueue.NewClient(srv.URL+"/elsewhere", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	_, err = cl.Stats(bg(t))
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "no endpoint /elsewhere"+workqueue.APIPrefix+"stats") {
		t.Errorf("Client.Stats of a path the server does not serve: %v, want 404 with the server's reason", err)
	}
}

// TestClientShowsPlainTextReason: an error answer that is not the API's JSON (a proxy's, or an old
// server's) is shown by its text, cut short, or said to have none.
func TestClientShowsPlainTextReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want string
	}{
		{"text", "404 page not found\n", "server answered 404: 404 page not found"},
		{"long", strings.Repeat("x", 1000), "server answered 404: " + strings.Repeat("x", 200) + "..."},
		{"empty", "", "server answered 404: (no reason given)"},
		{"JSON without error", `{"detail":"gone"}`, `server answered 404: {"detail":"gone"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cl := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, tc.body)
			}))
			_, err := cl.Stats(bg(t))
			if err == nil || err.Error() != tc.want {
				t.Errorf("Client.Stats: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestClientReleaseFallsBackOnJSON405: a server that answers release with 405 (one that has no
// release endpoint) gets a Nack without delay instead, JSON answer or not.
func TestClientReleaseFallsBackOnJSON405(t *testing.T) {
	var nacked atomic.Bool
	_, cl := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/nack") {
			nacked.Store(true)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Allow", "GET")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMethodNotAllowed)
		io.WriteString(w, `{"error":"method POST not allowed"}`)
	}))
	if err := cl.Release(bg(t), "1.1"); err != nil || !nacked.Load() {
		t.Errorf("Release against a server without release: %v, nacked %v; want a nack", err, nacked.Load())
	}
}
