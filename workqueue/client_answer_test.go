package workqueue_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

// TestClientLeasesLargePayload: a payload the API was configured to take (over 48 MiB, whose
// base64 answer is over 64 MiB) is leased whole through a Client whose WithMaxAnswer allows it.
func TestClientLeasesLargePayload(t *testing.T) {
	q := newMemory(t, workqueuetest.Config{LeaseDuration: 60e9}).(*workqueue.Memory)
	api, err := workqueue.NewAPI(q, workqueue.WithMaxPayload(100<<20))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := serveHandler(t, api)
	cl, err := workqueue.NewClient(srv.URL, srv.Client(), workqueue.WithMaxAnswer(100<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	p := bytes.Repeat([]byte("x"), 50<<20)
	if _, err := cl.Add(bg(t), p, workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	it, err := cl.Lease(bg(t))
	if err != nil {
		t.Fatalf("lease of a %d-byte payload the API took: %v", len(p), err)
	}
	if !bytes.Equal(it.Payload, p) {
		t.Errorf("leased %d bytes, want the %d added", len(it.Payload), len(p))
	}
}

// TestClientReleasesUndecodableLease: a lease answer that Client cannot decode (here a proxy
// mangled its payload) gets an error that says so, and the item, whose token could be read, is
// released rather than left leased to nobody until its lease expires.
func TestClientReleasesUndecodableLease(t *testing.T) {
	q := newMemory(t, workqueuetest.Config{LeaseDuration: 60e9}).(*workqueue.Memory)
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	mangle := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/lease") {
			api.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, r)
		b := bytes.Replace(rec.Body.Bytes(), []byte(`"payload":"eA=="`), []byte(`"payload":"!!"`), 1)
		w.WriteHeader(rec.Code)
		w.Write(b)
	})
	_, cl := serveHandler(t, mangle)
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg(t), 5*time.Second)
	defer cancel()
	_, err = cl.Lease(ctx)
	if err == nil || !strings.Contains(err.Error(), "decode lease answer") || !strings.Contains(err.Error(), "released") {
		t.Errorf("Lease of a mangled answer: %v, want an error saying the answer could not be decoded and the item was released", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lease waited out its ctx: %v", err)
	}
	if st, _ := q.Stats(bg(t)); st.Ready != 1 || st.Leased != 0 {
		t.Errorf("stats %+v after an undecodable lease answer, want the item ready again", st)
	}
	it, err := q.Lease(bg(t))
	if err != nil || it.Attempt != 1 {
		t.Errorf("next lease: %+v, %v; want attempt 1 (the release does not count one)", it, err)
	}
}
