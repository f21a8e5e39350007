package workqueue_test

import (
	"encoding/json"
	"errors"
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

// TestAPIMalformedLease: a lease request whose "lease" is not shaped like a lease token (garbage,
// or an item's ID sent by mistake) gets 400 naming the shape, on every lease endpoint; a token of
// the right shape that is not held (unknown, of another run of the server, already acked) gets
// 409, as before. A Client does not send a malformed token: it returns ErrLeaseLost at once, as
// every Queue does for a token it did not hand out, with the reason; for the server's 400 it
// returns ErrInvalid, and ErrLeaseLost only for its 409.
func TestAPIMalformedLease(t *testing.T) {
	q := newMemory(t, workqueuetest.Config{LeaseDuration: 10e9})
	srv, cl := serve(t, q)
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := cl.Lease(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Ack(bg(t), it.Lease); err != nil {
		t.Fatal(err)
	}
	post := func(path, lease string) (int, string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"lease": lease})
		return apiCall(t, srv, "POST", path, string(body))
	}
	for _, path := range []string{"ack", "nack", "release", "extend", "bury"} {
		for _, lease := range []string{"garbage", "1", it.ID, "1.", ".1", "1.x", "x.1", "1.1 ", "1.-1", "1.1~", "1.1#x"} {
			if code, body := post(path, lease); code != http.StatusBadRequest || !strings.Contains(body, "<id>.<attempt>") {
				t.Errorf("%s {\"lease\":%q}: %d %q, want 400 naming the token's shape", path, lease, code, body)
			}
		}
		for _, lease := range []string{"41.1", "41.1~zz", "41.1@3", "41.1.a", it.Lease} {
			if code, body := post(path, lease); code != http.StatusConflict || !strings.Contains(body, "lease not held") {
				t.Errorf("%s {\"lease\":%q}: %d %q, want 409 lease not held", path, lease, code, body)
			}
		}
	}
	// Client leaves a token to the server (tokens are opaque: TestAPIOpaqueTokens); the server's 400
	// is ErrLeaseLost, as every Queue answers a token it did not hand out, and ErrInvalid.
	if err := cl.Ack(bg(t), "garbage"); !errors.Is(err, workqueue.ErrLeaseLost) || !errors.Is(err, workqueue.ErrInvalid) || !strings.Contains(err.Error(), "<id>.<attempt>") {
		t.Errorf("Client.Ack of a malformed token: %v, want ErrLeaseLost and ErrInvalid naming the token's shape", err)
	}
	if err := cl.Ack(bg(t), it.Lease); !errors.Is(err, workqueue.ErrLeaseLost) || errors.Is(err, workqueue.ErrInvalid) {
		t.Errorf("Client.Ack of an acked token: %v, want ErrLeaseLost", err)
	}

	// A server that answers 400 (one that checks tokens of another shape) gives ErrInvalid, and
	// ErrLeaseLost: the lease is not one the server holds.
	_, cl400 := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"lease \"1.1\" is not a lease token"}`)
	}))
	if err := cl400.Ack(bg(t), "1.1"); !errors.Is(err, workqueue.ErrInvalid) || !errors.Is(err, workqueue.ErrLeaseLost) {
		t.Errorf("Client.Ack answered 400: %v, want ErrInvalid and ErrLeaseLost", err)
	}
}
