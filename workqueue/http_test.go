package workqueue_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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

// apiCall makes a request of the API that srv serves (path is what follows APIPrefix) and returns
// the answer's status and body. A request that fails is a test error, with status 0; it may be
// called from any goroutine.
func apiCall(t *testing.T, srv *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+workqueue.APIPrefix+path, strings.NewReader(body))
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return 0, ""
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("%s %s: read answer: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
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
			if code, b := apiCall(t, srv, tc.method, tc.path, tc.body); code != tc.want || !strings.Contains(b, tc.reason) {
				t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, code, b, tc.want, tc.reason)
			}
		})
	}
}

func TestAPIPayloadLimit(t *testing.T) {
	q := newMemory(t, workqueuetest.Config{LeaseDuration: 10e9})
	api, _ := workqueue.NewAPI(q, workqueue.WithMaxPayload(10))
	srv := httptest.NewServer(api)
	defer srv.Close()
	if code, b := apiCall(t, srv, "POST", "items", strings.Repeat("x", 11)); code != http.StatusRequestEntityTooLarge || !strings.Contains(b, "payload larger than 10 bytes") {
		t.Errorf("oversized add: %d %q, want 413 naming the limit, 10 bytes", code, b)
	}
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Add(context.Background(), make([]byte, 11), workqueue.AddOptions{}); !errors.Is(err, workqueue.ErrTooLarge) || !strings.Contains(err.Error(), "10 bytes") {
		t.Errorf("Client.Add of an oversized payload: %v, want ErrTooLarge naming the limit", err)
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

// TestAPIJSONShapes: every answer carries each field its shape documents, zero or empty as it may
// be, so that a client in any language can read a field without checking whether it is there: a
// keyless item at priority 0 still has "key":"" and "priority":0.
func TestAPIJSONShapes(t *testing.T) {
	q, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10 * time.Second})
	// call makes a request and decodes its answer, if any, into out.
	call := func(method, path, body string, out any) {
		t.Helper()
		if code, b := apiCall(t, srv, method, path, body); code < 200 || code >= 300 || out != nil && json.Unmarshal([]byte(b), out) != nil {
			t.Fatalf("%s %s: %d %q, want 2xx and JSON", method, path, code, b)
		}
	}
	fields := func(m map[string]any) []string {
		return slices.Sorted(maps.Keys(m))
	}
	if _, err := q.Add(bg(t), []byte("x"), workqueue.AddOptions{}); err != nil {
		t.Fatal(err)
	}
	var item, ext, stats map[string]any
	call("POST", "lease?wait=5s", "", &item)
	if diff := cmp.Diff([]string{"attempt", "deadline", "id", "key", "lease", "payload", "priority", "ttl"}, fields(item)); diff != "" {
		t.Errorf("item fields (-want +got):\n%s", diff)
	}
	if item["key"] != "" || item["priority"] != 0.0 {
		t.Errorf("keyless item at priority 0: key %#v, priority %#v", item["key"], item["priority"])
	}
	lease := `{"lease":"` + item["lease"].(string) + `"}`
	call("POST", "extend", lease, &ext)
	if diff := cmp.Diff([]string{"deadline", "ttl"}, fields(ext)); diff != "" {
		t.Errorf("extend fields (-want +got):\n%s", diff)
	}
	call("POST", "bury", lease, nil)
	var dead []map[string]any
	call("GET", "dead", "", &dead)
	if len(dead) != 1 {
		t.Fatalf("%d dead items, want 1", len(dead))
	}
	if diff := cmp.Diff([]string{"attempts", "id", "key", "payload", "reason", "time"}, fields(dead[0])); diff != "" {
		t.Errorf("dead item fields (-want +got):\n%s", diff)
	}
	// An empty payload is "", not null, whether it was added as nil or empty.
	for _, payload := range [][]byte{nil, {}} {
		if _, err := q.Add(bg(t), payload, workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		var empty map[string]any
		call("POST", "lease?wait=5s", "", &empty)
		if empty["payload"] != "" {
			t.Errorf("item added with payload %#v: payload %#v, want \"\"", payload, empty["payload"])
		}
		call("POST", "bury", `{"lease":"`+empty["lease"].(string)+`"}`, nil)
	}
	call("GET", "dead", "", &dead)
	for _, d := range dead[1:] {
		if d["payload"] != "" {
			t.Errorf("dead item with an empty payload: payload %#v, want \"\"", d["payload"])
		}
	}
	call("GET", "stats", "", &stats)
	if diff := cmp.Diff([]string{"dead", "delayed", "leased", "ready"}, fields(stats)); diff != "" {
		t.Errorf("stats fields (-want +got):\n%s", diff)
	}
}

// TestAPIKeyLimit: the API takes a key of up to APIMaxKeyLen (2048) bytes, any bytes (each goes
// percent-encoded in the query), and gives it back byte for byte; a longer one is 400 naming the
// limit, and a Client takes that for ErrInvalid.
func TestAPIKeyLimit(t *testing.T) {
	q, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10 * time.Second})
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	longest := strings.Repeat("\xff&=%", workqueue.APIMaxKeyLen/4)
	if workqueue.APIMaxKeyLen != 2048 || len(longest) != workqueue.APIMaxKeyLen {
		t.Fatalf("APIMaxKeyLen %d, key of %d bytes; want 2048, as workqueue/jetstream's MaxKeyLen", workqueue.APIMaxKeyLen, len(longest))
	}
	if _, err := cl.Add(bg(t), []byte("x"), workqueue.AddOptions{Key: longest}); err != nil {
		t.Fatalf("Client.Add with a key of %d bytes: %v", len(longest), err)
	}
	it, err := q.Lease(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	if it.Key != longest {
		t.Errorf("key of the item added over HTTP: %d bytes %.20q..., want the %d added", len(it.Key), it.Key, len(longest))
	}
	if code, b := apiCall(t, srv, "POST", "items?key="+strings.Repeat("k", workqueue.APIMaxKeyLen+1), "x"); code != http.StatusBadRequest || !strings.Contains(b, "key of 2049 bytes is longer than the API's limit of 2048 bytes") {
		t.Errorf("add with a key of 2049 bytes: %d %q, want 400 naming the limit", code, b)
	}
	if _, err := cl.Add(bg(t), []byte("x"), workqueue.AddOptions{Key: longest + "k"}); !errors.Is(err, workqueue.ErrInvalid) {
		t.Errorf("Client.Add with a key of %d bytes: %v, want ErrInvalid", len(longest)+1, err)
	}
}
