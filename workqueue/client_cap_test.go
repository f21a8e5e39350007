package workqueue_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

// TestClientCapsAnswer: a broken server whose stats answer is 200 MiB of spaces (valid JSON
// around them) gets an error that says the answer is over the Client's limit, rather than a
// Client that reads it all.
func TestClientCapsAnswer(t *testing.T) {
	spaces := bytes.Repeat([]byte(" "), 1<<20)
	_, cl := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{"))
		for range 200 {
			if _, err := w.Write(spaces); err != nil {
				return
			}
		}
		w.Write([]byte("}"))
	}))
	_, err := cl.Stats(bg(t))
	if err == nil || !strings.Contains(err.Error(), "over") || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("Stats of a 200 MiB answer: %v, want an error saying it is over the limit", err)
	}
}

// TestClientCapsLeaseAnswer: a lease answer over WithMaxAnswer is an error saying so; under it,
// it is taken.
func TestClientCapsLeaseAnswer(t *testing.T) {
	q := newMemory(t, workqueuetest.Config{LeaseDuration: 60e9}).(*workqueue.Memory)
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := serveHandler(t, api)
	small, err := workqueue.NewClient(srv.URL, srv.Client(), workqueue.WithMaxAnswer(1000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { small.Close() })
	if _, err := q.Add(bg(t), bytes.Repeat([]byte("x"), 2000), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := small.Lease(bg(t)); err == nil || !strings.Contains(err.Error(), "over 1000 bytes") {
		t.Errorf("Lease of a 2000-byte payload with WithMaxAnswer(1000): %v, want an error saying the answer is over 1000 bytes", err)
	}
	if _, err := workqueue.NewClient(srv.URL, nil, workqueue.WithMaxAnswer(0)); err == nil {
		t.Error("WithMaxAnswer(0) taken, want ErrInvalid")
	}
}
