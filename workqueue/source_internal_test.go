package workqueue

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
)

// sourceOver returns a Source over a server of h that feeds a new Memory; both end with the test.
func sourceOver(t *testing.T, h http.Handler) (*Source, *Memory) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	q, err := NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	s, err := NewSource(srv.URL, q)
	if err != nil {
		t.Fatal(err)
	}
	return s, q
}

// A waiting name keeps its place while off the list for up to waitKept Polls in a row, and is
// forgotten at the next one, so names that leave for good are not kept for ever.
func TestSourceForgetsNameOffTheListTooLong(t *testing.T) {
	var polls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/items" {
			panic(http.ErrAbortHandler) // no item is answered: two in a row stop a Poll
		}
		items := []string{"u0", "u1", "u2"}
		if polls.Add(1) == 1 {
			items = append(items, "gone") // listed by the first Poll only
		}
		json.NewEncoder(w).Encode(ItemList{Kind: "ItemList", APIVersion: "v1", Items: items})
	})
	s, _ := sourceOver(t, h)
	for i := 1; i <= waitKept+2; i++ {
		s.Poll(context.Background())
		_, kept := s.waiting["gone"]
		if off, want := i-1, i <= waitKept+1; kept != want {
			t.Fatalf("after Poll %d (gone off the list for %d): waiting %v, want %v", i, off, kept, want)
		}
	}
	if got := slices.Sorted(maps.Keys(s.waiting)); !slices.Equal(got, []string{"u0", "u1", "u2"}) {
		t.Errorf("waiting %v, want the listed names u0 u1 u2", got)
	}
}

// A failing name that is off the list for longer than waitKept Polls loses only its place: it was
// never added, so when it comes back and its item is served it is added once, as a new name, and
// not again while it stays listed.
func TestSourceNameBackAfterLongAbsenceAddedOnce(t *testing.T) {
	var polls, serve atomic.Int32
	back := int32(waitKept + 3) // the first Poll that lists "a" again
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/items/a" {
			if serve.Load() == 0 {
				http.Error(w, "not yet", http.StatusServiceUnavailable)
				return
			}
			json.NewEncoder(w).Encode(ItemData{Kind: "Item", APIVersion: "v1", Data: json.RawMessage(`"a"`)})
			return
		}
		items := []string{}
		if n := polls.Add(1); n == 1 || n >= back {
			items = append(items, "a")
		}
		json.NewEncoder(w).Encode(ItemList{Kind: "ItemList", APIVersion: "v1", Items: items})
	})
	s, q := sourceOver(t, h)
	ctx := context.Background()
	for i := int32(1); i < back; i++ {
		if n, _ := s.Poll(ctx); n != 0 {
			t.Fatalf("Poll %d added %d, want 0", i, n)
		}
	}
	if _, kept := s.waiting["a"]; kept {
		t.Fatal(`"a" still has its place after waitKept+1 Polls off the list: the test tests nothing`)
	}
	serve.Store(1)
	for i, want := range []int{1, 0, 0} {
		if n, err := s.Poll(ctx); n != want || err != nil {
			t.Errorf("Poll %d after a is back: %d, %v; want %d, nil", i+1, n, err, want)
		}
	}
	if st, _ := q.Stats(ctx); st != (Stats{Ready: 1}) {
		t.Errorf("queue: %+v, want a once", st)
	}
}
