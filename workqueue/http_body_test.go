package workqueue_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

// TestAPILeaseBodyTooLarge: a lease request (ack, nack, release, extend, bury) whose body is over
// the limit gets 413, as an oversized add does, not 400; a Client takes it for ErrTooLarge.
func TestAPILeaseBodyTooLarge(t *testing.T) {
	_, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	body := `{"lease":"1.1","reason":"` + strings.Repeat("x", 64<<10) + `"}`
	for _, path := range []string{"ack", "nack", "release", "extend", "bury"} {
		if code, b := apiCall(t, srv, "POST", path, body); code != http.StatusRequestEntityTooLarge || !strings.Contains(b, "larger than 65536 bytes") {
			t.Errorf("%s with a %d-byte body: %d %q, want 413 saying it is too large", path, len(body), code, b)
		}
	}
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Bury(bg(t), "1.1", strings.Repeat("x", 64<<10)); !errors.Is(err, workqueue.ErrTooLarge) {
		t.Errorf("Client.Bury with an oversized reason: %v, want ErrTooLarge", err)
	}
}

// TestAPILeaseBodyTrailingData: a lease request body holds one JSON object: anything but white
// space after it is 400 on every lease endpoint, as an unknown field is, rather than ignored.
func TestAPILeaseBodyTrailingData(t *testing.T) {
	_, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	for _, path := range []string{"ack", "nack", "release", "extend", "bury"} {
		for _, tc := range []struct {
			body   string
			code   int
			reason string
		}{
			{`{"lease":"41.1"} trailing`, 400, "after the JSON object"},
			{`{"lease":"41.1"}{"lease":"42.1"}`, 400, "after the JSON object"},
			{`{"lease":"41.1"} {}`, 400, "after the JSON object"},
			{`{"lease":"41.1"}]`, 400, "after the JSON object"},
			{"{\"lease\":\"41.1\"} \r\n\t", 409, "lease not held"}, // white space is not data
		} {
			if code, b := apiCall(t, srv, "POST", path, tc.body); code != tc.code || !strings.Contains(b, tc.reason) {
				t.Errorf("%s %q: %d %q, want %d with %q", path, tc.body, code, b, tc.code, tc.reason)
			}
		}
	}
	// White space after the object counts towards the body's limit.
	body := `{"lease":"41.1"}` + strings.Repeat(" ", 64<<10)
	if code, b := apiCall(t, srv, "POST", "ack", body); code != http.StatusRequestEntityTooLarge {
		t.Errorf("ack with %d bytes of white space after the object: %d %q, want 413", len(body)-16, code, b)
	}
}
