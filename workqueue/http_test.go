package workqueue_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
}
