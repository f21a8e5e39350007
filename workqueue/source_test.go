package workqueue_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/workqueue"
)

// bookSource serves the book's item-source interface from a map.
type bookSource struct {
	mu    sync.Mutex
	items map[string]string
}

func (b *bookSource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.URL.Path == "/api/v1/items" {
		l := workqueue.ItemList{Kind: "ItemList", APIVersion: "v1", Items: []string{}}
		for k := range b.items {
			l.Items = append(l.Items, k)
		}
		sort.Strings(l.Items)
		json.NewEncoder(w).Encode(l)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/api/v1/items/")
	v, ok := b.items[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	json.NewEncoder(w).Encode(workqueue.ItemData{Kind: "Item", APIVersion: "v1", Data: json.RawMessage(v)})
}

func TestSourcePoll(t *testing.T) {
	src := &bookSource{items: map[string]string{"a": `{"n":1}`, "b": `{"n":2}`}}
	srv := httptest.NewServer(src)
	defer srv.Close()
	q := mustMemory(t)
	s, err := workqueue.NewSource(srv.URL, q)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		change func()
		want   int
	}{
		{func() {}, 2}, // both new
		{func() {}, 0}, // nothing new
		{func() { src.items["c"] = `{"n":3}` }, 1}, // one more
		{func() { delete(src.items, "a") }, 0},     // a leaves
		{func() { src.items["a"] = `{"n":4}` }, 1}, // a is back: new again
		{func() { src.items["bad"] = "" }, 0},      // invalid data JSON
	}
	for i, st := range steps {
		src.mu.Lock()
		st.change()
		src.mu.Unlock()
		n, err := s.Poll(ctx)
		if i == len(steps)-1 {
			if err == nil {
				t.Errorf("step %d: Poll with a broken item returned no error", i)
			}
			continue
		}
		if err != nil || n != st.want {
			t.Errorf("step %d: Poll = %d, %v; want %d, nil", i, n, err, st.want)
		}
	}
	var got []string
	for {
		lctx, cancel := context.WithTimeout(ctx, 100e6)
		it, err := q.Lease(lctx)
		cancel()
		if err != nil {
			break
		}
		got = append(got, it.Key+"="+string(it.Payload))
		q.Ack(ctx, it.Lease)
	}
	sort.Strings(got)
	// "a" was added twice, but the second add was absorbed by the first (not yet leased) item.
	if diff := cmp.Diff([]string{`a={"n":1}`, `b={"n":2}`, `c={"n":3}`}, got); diff != "" {
		t.Errorf("queued items (-want +got):\n%s", diff)
	}
}
