package workqueue_test

import (
	"errors"
	"io"
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
		resp, err := srv.Client().Post(srv.URL+workqueue.APIPrefix+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "larger than 65536 bytes") {
			t.Errorf("%s with a %d-byte body: %d %q, want 413 saying it is too large", path, len(body), resp.StatusCode, b)
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
