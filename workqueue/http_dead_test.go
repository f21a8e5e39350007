package workqueue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueuetest"
)

// bury adds n items of payload p to q and buries each.
func bury(t *testing.T, q *workqueue.Memory, n int, p []byte) {
	t.Helper()
	ctx := context.Background()
	for range n {
		if _, err := q.Add(ctx, p, workqueue.AddOptions{}); err != nil {
			t.Fatal(err)
		}
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Bury(ctx, it.Lease, "bad"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClientDeadLargePayloads: dead letters whose payloads together are more than one answer
// should carry (4 of 16 MiB, the default payload limit) are all listed by Client.Dead: the API
// cuts the answer by bytes and says where the next page starts, and Client follows it.
func TestClientDeadLargePayloads(t *testing.T) {
	q, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	p := bytes.Repeat([]byte("z"), 16<<20)
	bury(t, q, 4, p)
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, max := range []int{100, -1, 3} {
		d, err := cl.Dead(context.Background(), max)
		want := 4
		if max == 3 {
			want = 3
		}
		if err != nil || len(d) != want {
			t.Fatalf("Client.Dead(%d) of 4 dead letters of 16 MiB: %d items, %v; want %d", max, len(d), err, want)
		}
		for i, x := range d {
			if !bytes.Equal(x.Payload, p) || x.ID != strings.TrimSpace(x.ID) || (i > 0 && x.ID == d[i-1].ID) {
				t.Errorf("Client.Dead(%d)[%d]: id %q, %d payload bytes", max, i, x.ID, len(x.Payload))
			}
		}
	}
}

// TestClientDeadBeyondOnePage: Client.Dead(-1) lists every dead letter, as Memory.Dead(-1) does,
// also more than one answer's max (10000), and Client.Dead(n) for n over 10000 is not refused.
func TestClientDeadBeyondOnePage(t *testing.T) {
	q, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	const n = 10005
	bury(t, q, n, []byte("p"))
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want, _ := q.Dead(context.Background(), -1)
	for _, max := range []int{-1, 20000, 10003} {
		d, err := cl.Dead(context.Background(), max)
		w := want
		if max >= 0 && max < len(w) {
			w = w[:max]
		}
		if err != nil || len(d) != len(w) {
			t.Fatalf("Client.Dead(%d) of %d dead letters: %d, %v; want %d", max, n, len(d), err, len(w))
		}
		for i := range d {
			if d[i].ID != w[i].ID {
				t.Fatalf("Client.Dead(%d)[%d] is %q, want %q (oldest first, each once)", max, i, d[i].ID, w[i].ID)
			}
		}
	}
}

// TestAPIDeadPaging: an answer that leaves dead letters out (max, or the byte budget) has a Link
// header to the next page (from=N, the dead letters before it skipped); the last page has none.
func TestAPIDeadPaging(t *testing.T) {
	q, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	bury(t, q, 3, []byte("p"))
	resp, err := srv.Client().Get(srv.URL + workqueue.APIPrefix + "dead?max=2")
	if err != nil {
		t.Fatal(err)
	}
	var page []map[string]any
	json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if link := resp.Header.Get("Link"); len(page) != 2 || link != `<`+workqueue.APIPrefix+`dead?from=2&max=2>; rel="next"` {
		t.Fatalf("dead?max=2 of 3: %d items, Link %q; want 2 and a Link to from=2", len(page), link)
	}
	resp, err = srv.Client().Get(srv.URL + workqueue.APIPrefix + "dead?max=2&from=2")
	if err != nil {
		t.Fatal(err)
	}
	page = nil
	json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if link := resp.Header.Get("Link"); len(page) != 1 || page[0]["id"] != "3" || link != "" || resp.StatusCode != http.StatusOK {
		t.Errorf("dead?max=2&from=2 of 3: %d %v, Link %q; want item 3 alone and no Link", resp.StatusCode, page, link)
	}
	for _, p := range []string{"dead?from=-1", "dead?from=x"} {
		if code, b := apiCall(t, srv, "GET", p, ""); code != http.StatusBadRequest || !strings.Contains(b, "from") {
			t.Errorf("GET %s: %d %q, want 400 naming from", p, code, b)
		}
	}
}

// TestClientDeadZeroAsksTheServer: Dead(0) still makes its request, as every call of a Client
// does: a closed Client answers ErrClosed, not an empty list.
func TestClientDeadZeroAsksTheServer(t *testing.T) {
	_, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	cl, err := workqueue.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	if d, err := cl.Dead(context.Background(), 0); !errors.Is(err, workqueue.ErrClosed) {
		t.Errorf("Dead(0) of a closed Client: %v, %v; want ErrClosed", d, err)
	}
}

// TestAPIDeadFromOverflow: a from so large that from+max overflows is 400, rather than read as
// "all of them".
func TestAPIDeadFromOverflow(t *testing.T) {
	q, srv := newServed(t, workqueuetest.Config{LeaseDuration: 10e9})
	bury(t, q, 1, []byte("p"))
	for _, p := range []string{"dead?from=9223372036854775807", "dead?from=9223372036854775800&max=100"} {
		if code, b := apiCall(t, srv, "GET", p, ""); code != http.StatusBadRequest || !strings.Contains(b, "from") {
			t.Errorf("GET %s: %d %q, want 400 naming from", p, code, b)
		}
	}
}
