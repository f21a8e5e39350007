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

// A waiting name keeps its place while off the list for up to waitKept Polls in a row, and is
// forgotten at the next one, so names that leave for good are not kept for ever.
func TestSourceForgetsNameOffTheListTooLong(t *testing.T) {
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/items" {
			panic(http.ErrAbortHandler) // no item is answered: two in a row stop a Poll
		}
		items := []string{"u0", "u1", "u2"}
		if polls.Add(1) == 1 {
			items = append(items, "gone") // listed by the first Poll only
		}
		json.NewEncoder(w).Encode(ItemList{Kind: "ItemList", APIVersion: "v1", Items: items})
	}))
	defer srv.Close()
	q, err := NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	s, err := NewSource(srv.URL, q)
	if err != nil {
		t.Fatal(err)
	}
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
