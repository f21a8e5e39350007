package workqueue_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

// TestSourceItemData: an item's payload is the raw JSON text of its "data" (a string with its
// quotes, so that any payload, binary included, round-trips as the source wrote it); an item
// without "data", or whose data is null, is refused with ErrSource naming it, not added empty or as
// "null".
func TestSourceItemData(t *testing.T) {
	items := map[string]string{
		"obj":    `{"kind":"Item","apiVersion":"v1","data":{"n":1}}`,
		"str":    `{"kind":"Item","apiVersion":"v1","data":"resize cat.png"}`,
		"nodata": `{"kind":"Item","apiVersion":"v1"}`,
		"null":   `{"kind":"Item","apiVersion":"v1","data":null}`,
	}
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/items" {
			w.Write([]byte(`{"kind":"ItemList","apiVersion":"v1","items":["obj","str","nodata","null"]}`))
			return
		}
		w.Write([]byte(items[strings.TrimPrefix(r.URL.Path, "/api/v1/items/")]))
	}))
	defer src.Close()
	q := mustMemory(t)
	s, err := workqueue.NewSource(src.URL, q)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Poll(context.Background())
	if n != 2 || !errors.Is(err, workqueue.ErrSource) || !strings.Contains(err.Error(), `"nodata"`) || !strings.Contains(err.Error(), `"null"`) {
		t.Errorf("Poll: added %d, %v; want 2 added and ErrSource naming nodata and null", n, err)
	}
	got := map[string]string{}
	for range n {
		it, err := q.Lease(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got[it.Key] = string(it.Payload)
	}
	want := map[string]string{"obj": `{"n":1}`, "str": `"resize cat.png"`}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("payloads by key (-want +got):\n%s", d)
	}
}

// TestSourceErrorAnswerReason: a source's error answer is in Poll's error, with its reason (cut
// to 200 bytes, as Client cuts a reason).
func TestSourceErrorAnswerReason(t *testing.T) {
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/items" {
			w.Write([]byte(`{"kind":"ItemList","apiVersion":"v1","items":["a"]}`))
			return
		}
		http.Error(w, "item store: disk full"+strings.Repeat("!", 1000), http.StatusInternalServerError)
	}))
	defer src.Close()
	s, err := workqueue.NewSource(src.URL, mustMemory(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Poll(context.Background())
	if !errors.Is(err, workqueue.ErrSource) || !strings.Contains(err.Error(), "status 500: item store: disk full!") || strings.Contains(err.Error(), strings.Repeat("!", 300)) {
		t.Errorf("Poll: %v; want ErrSource with the status and the answer's reason, cut", err)
	}
}
