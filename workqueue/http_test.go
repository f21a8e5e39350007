package workqueue_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

func newServed(t *testing.T, c workqueuetest.Config) (*workqueue.Memory, *httptest.Server) {
	q := newMemory(t, c).(*workqueue.Memory)
	api, err := workqueue.NewAPI(q)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return q, srv
}

func TestClientConformance(t *testing.T) {
	workqueuetest.TestQueue(t, func(t *testing.T, c workqueuetest.Config) workqueue.Queue {
		_, srv := newServed(t, c)
		cl, err := workqueue.NewClient(srv.URL, srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	})
}

func TestAPIBadInput(t *testing.T) {
	_, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	tests := []struct {
		name, method, path, body string
		want                     int
		reason                   string
	}{
		{"bad delay", "POST", "items?delay=soon", "x", 400, "delay"},
		{"negative delay", "POST", "items?delay=-1s", "x", 400, "delay"},
		{"bad priority", "POST", "items?priority=high", "x", 400, "priority"},
		{"bad wait", "POST", "lease?wait=forever", "", 400, "wait"},
		{"negative wait", "POST", "lease?wait=-1s", "", 400, "wait"},
		{"ack not JSON", "POST", "ack", "lease=1.1", 400, "JSON"},
		{"ack unknown field", "POST", "ack", `{"lease":"1.1","x":1}`, 400, "unknown field"},
		{"ack no lease", "POST", "ack", `{}`, 400, "lease"},
		{"ack unknown lease", "POST", "ack", `{"lease":"41.1"}`, 409, "lease not held"},
		{"nack bad delay", "POST", "nack", `{"lease":"1.1","delay":"x"}`, 400, "delay"},
		{"dead bad max", "GET", "dead?max=-3", "", 400, "max"},
		{"stats wrong method", "POST", "stats", "", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+workqueue.APIPrefix+tc.path, strings.NewReader(tc.body))
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want || !strings.Contains(string(b), tc.reason) {
				t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, resp.StatusCode, b, tc.want, tc.reason)
			}
		})
	}
}

func TestAPIPayloadLimit(t *testing.T) {
	q := newMemory(t, workqueuetest.Config{LeaseDuration: 10e9})
	api, _ := workqueue.NewAPI(q, workqueue.WithMaxPayload(10))
	srv := httptest.NewServer(api)
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+workqueue.APIPrefix+"items", "application/octet-stream", strings.NewReader(strings.Repeat("x", 11)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized add: %d, want 413", resp.StatusCode)
	}
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Add(context.Background(), make([]byte, 11), workqueue.AddOptions{}); !errors.Is(err, workqueue.ErrTooLarge) {
		t.Errorf("Client.Add of an oversized payload: %v, want ErrTooLarge", err)
	}
}

// TestAPILeaseWait: wait=0 does not wait (an item ready now, else 204 at once), an absent wait
// long-polls for the default capped by the max wait, and a longer wait is capped too.
func TestAPILeaseWait(t *testing.T) {
	const maxWait = 300 * time.Millisecond
	q := newMemory(t, workqueuetest.Config{LeaseDuration: 10 * time.Second})
	short, _ := workqueue.NewAPI(q, workqueue.WithMaxWait(maxWait))
	long, _ := workqueue.NewAPI(q, workqueue.WithMaxWait(5*time.Second)) // the old wait=0
	tests := []struct {
		name     string
		api      *workqueue.API
		query    string
		add      string // added before the lease
		want     int
		body     string // in the answer
		min, max time.Duration
	}{
		{"no wait, empty", long, "?wait=0s", "", 204, "", 0, 2 * time.Second},
		{"no wait without unit, empty", long, "?wait=0", "", 204, "", 0, 2 * time.Second},
		{"no wait, item ready", long, "?wait=0s", "x", 200, `"payload":"eA=="`, 0, 2 * time.Second},
		{"default wait", short, "", "", 204, "", maxWait, 5 * time.Second},
		{"wait over the max", short, "?wait=1h", "", 204, "", maxWait, 5 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.api)
			defer srv.Close()
			hc := srv.Client()
			hc.Timeout = 10 * time.Second
			if tc.add != "" {
				if _, err := q.Add(context.Background(), []byte(tc.add), workqueue.AddOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			resp, err := hc.Post(srv.URL+workqueue.APIPrefix+"lease"+tc.query, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			took := time.Since(start)
			if resp.StatusCode != tc.want || !strings.Contains(string(b), tc.body) || took < tc.min || took > tc.max {
				t.Errorf("POST lease%s: %d %q after %v; want %d with %q after %v to %v", tc.query, resp.StatusCode, b, took, tc.want, tc.body, tc.min, tc.max)
			}
		})
	}
}
