package workqueue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/workqueue"
)

// bookSource serves the book's item-source interface from a map. It lists the map's names, sorted,
// or, when list is not nil, the names in list, in that order (a name listed but not in the map
// answers 404); gets counts the GETs of each item.
type bookSource struct {
	mu    sync.Mutex
	items map[string]string
	list  []string
	gets  map[string]int
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
		if b.list != nil {
			l.Items = b.list
		}
		json.NewEncoder(w).Encode(l)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/api/v1/items/")
	if b.gets == nil {
		b.gets = map[string]int{}
	}
	b.gets[name]++
	v, ok := b.items[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	json.NewEncoder(w).Encode(workqueue.ItemData{Kind: "Item", APIVersion: "v1", Data: json.RawMessage(v)})
}

// serveSource serves src and returns a Source over it feeding a new Memory.
func serveSource(t *testing.T, src *bookSource, opts ...workqueue.SourceOption) (*workqueue.Source, *workqueue.Memory) {
	t.Helper()
	srv := httptest.NewServer(src)
	t.Cleanup(srv.Close)
	q := mustMemory(t)
	s, err := workqueue.NewSource(srv.URL, q, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, q
}

func TestSourcePoll(t *testing.T) {
	src := &bookSource{items: map[string]string{"a": `{"n":1}`, "b": `{"n":2}`}}
	s, q := serveSource(t, src)
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
	got := drain(t, q)
	// "a" was added twice, but the second add was absorbed by the first (not yet leased) item.
	if diff := cmp.Diff([]string{`a={"n":1}`, `b={"n":2}`, `c={"n":3}`}, got); diff != "" {
		t.Errorf("queued items (-want +got):\n%s", diff)
	}
}

// drain leases and acks every item q has ready, and returns them as "key=payload", sorted.
func drain(t *testing.T, q workqueue.Queue) []string {
	t.Helper()
	var got []string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		it, err := q.Lease(ctx)
		cancel()
		if err != nil {
			break
		}
		got = append(got, it.Key+"="+string(it.Payload))
		if err := q.Ack(context.Background(), it.Lease); err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(got)
	return got
}

// TestSourceBadItemDoesNotBlockOthers: an item the source lists but cannot serve neither holds up
// the items listed after it nor keeps the names that left the list remembered; it is tried again
// on every Poll (it was not added, so it is not seen), and added once the source serves it.
func TestSourceBadItemDoesNotBlockOthers(t *testing.T) {
	src := &bookSource{items: map[string]string{"a": `1`, "c": `3`}, list: []string{"a", "gone", "c"}}
	s, q := serveSource(t, src)
	ctx := context.Background()
	poll := func(step string, want int, wantErr bool) {
		t.Helper()
		n, err := s.Poll(ctx)
		if !wantErr && (n != want || err != nil) {
			t.Errorf("%s: Poll = %d, %v; want %d, nil", step, n, err, want)
		}
		if wantErr && (n != want || !errors.Is(err, workqueue.ErrSource) || !strings.Contains(fmt.Sprint(err), `"gone"`)) {
			t.Errorf("%s: Poll = %d, %v; want %d and an ErrSource naming \"gone\"", step, n, err, want)
		}
	}
	for i := range 3 {
		want := 0
		if i == 0 {
			want = 2
		}
		poll(fmt.Sprintf("poll %d of a, gone, c", i), want, true)
	}
	if diff := cmp.Diff([]string{"a=1", "c=3"}, drain(t, q)); diff != "" {
		t.Errorf("queued items after 3 polls (-want +got):\n%s", diff)
	}
	src.mu.Lock()
	if g := src.gets["gone"]; g != 3 {
		t.Errorf("GET gone %d times in 3 polls, want 3 (tried again each poll)", g)
	}
	// a and c leave the list: they must be forgotten although gone fails.
	src.items, src.list = map[string]string{"b": `2`}, []string{"gone", "b"}
	src.mu.Unlock()
	poll("poll of gone, b", 1, true)
	// gone is served now, and a and c are back: all three are new.
	src.mu.Lock()
	src.items, src.list = map[string]string{"a": `4`, "b": `2`, "c": `5`, "gone": `6`}, nil
	src.mu.Unlock()
	poll("poll of a, b, c, gone served", 3, false)
	if diff := cmp.Diff([]string{"a=4", "b=2", "c=5", "gone=6"}, drain(t, q)); diff != "" {
		t.Errorf("queued items at the end (-want +got):\n%s", diff)
	}
}

// TestSourceReadyDespiteBadItem: a Source whose list names an item it cannot serve still becomes
// ready (it read the list and added the other items), rather than never, and logs the item.
func TestSourceReadyDespiteBadItem(t *testing.T) {
	src := &bookSource{items: map[string]string{"a": `1`}, list: []string{"gone", "a"}}
	core, logs := observer.New(zap.InfoLevel)
	s, _ := serveSource(t, src, workqueue.WithPollInterval(10*time.Millisecond), workqueue.WithLogger(zap.New(core)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case <-time.After(10 * time.Second):
		t.Error("Source with one bad item not ready after 10s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	w := logs.FilterMessage("items not added").All()
	if len(w) == 0 || w[0].Level != zap.WarnLevel || w[0].ContextMap()["added"] != int64(1) || w[0].ContextMap()["failed"] != int64(1) {
		t.Errorf("logs %v; want a warning \"items not added\" with added 1, failed 1", logs.All())
	}
}

// TestSourceManyBadItems: a Poll's error names the first items that failed and counts the others,
// so that a source with many broken items does not make one huge log line per poll.
func TestSourceManyBadItems(t *testing.T) {
	src := &bookSource{items: map[string]string{"ok": `1`}}
	for i := range 12 {
		src.list = append(src.list, fmt.Sprintf("bad%02d", i))
	}
	src.list = append(src.list, "ok")
	s, _ := serveSource(t, src)
	n, err := s.Poll(context.Background())
	if n != 1 || !errors.Is(err, workqueue.ErrSource) || !strings.Contains(fmt.Sprint(err), `"bad09"`) ||
		strings.Contains(fmt.Sprint(err), `"bad10"`) || !strings.HasSuffix(fmt.Sprint(err), "; and 2 more items") {
		t.Errorf("Poll = %d, %v; want 1 and an ErrSource naming bad00 to bad09 and counting 2 more", n, err)
	}
}

// A source whose item endpoint does not answer ends the Poll at the first item it times out on: going
// on would wait the HTTP client's timeout once for every listed item. The items are tried again at
// the next Poll.
func TestSourceUnreachableItemsEndThePoll(t *testing.T) {
	names := make([]string, 20)
	for i := range names {
		names[i] = fmt.Sprintf("item-%02d", i)
	}
	hang := make(chan struct{})
	defer close(hang)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/items" {
			json.NewEncoder(w).Encode(workqueue.ItemList{Kind: "ItemList", APIVersion: "v1", Items: names})
			return
		}
		select { // an item GET hangs until the test ends
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	s, err := workqueue.NewSource(srv.URL, mustMemory(t), workqueue.WithSourceHTTPClient(&http.Client{Timeout: 100 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := s.Poll(context.Background())
	if el := time.Since(start); n != 0 || err == nil || el > 2*time.Second {
		t.Errorf("Poll of 20 items that never answer: %d added, err %v, took %v; want an error within a few client timeouts", n, err, el)
	}
}

// One item whose GET gets no answer (the source aborts it) does not stop the Poll: the items after
// it are added, at every Poll.
func TestSourceOneUnansweredItemDoesNotStopThePoll(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/items":
			json.NewEncoder(w).Encode(workqueue.ItemList{Kind: "ItemList", APIVersion: "v1", Items: []string{"poison", "a", "b"}})
		case "/api/v1/items/poison":
			panic(http.ErrAbortHandler) // the client sees the connection end: no answer
		default:
			json.NewEncoder(w).Encode(workqueue.ItemData{Kind: "Item", APIVersion: "v1", Data: json.RawMessage(`{}`)})
		}
	}))
	defer srv.Close()
	s, err := workqueue.NewSource(srv.URL, mustMemory(t))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Poll(context.Background()); n != 2 || err == nil {
		t.Errorf("Poll past one unanswered item: %d added, err %v; want the 2 after it and an error", n, err)
	}
}

// Two items in a row whose GET gets no answer end a Poll, but they cannot keep the items listed
// after them out for good: a later Poll tries the items that failed before after the others.
func TestSourceFailedItemsTriedLast(t *testing.T) {
	var mu sync.Mutex
	var order []string // the item GETs of the last Poll
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/items" {
			mu.Lock()
			order = nil
			mu.Unlock()
			json.NewEncoder(w).Encode(workqueue.ItemList{Kind: "ItemList", APIVersion: "v1", Items: []string{"poison1", "poison2", "a", "b"}})
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/api/v1/items/")
		mu.Lock()
		order = append(order, name)
		mu.Unlock()
		if strings.HasPrefix(name, "poison") {
			panic(http.ErrAbortHandler) // no answer
		}
		json.NewEncoder(w).Encode(workqueue.ItemData{Kind: "Item", APIVersion: "v1", Data: json.RawMessage(`{}`)})
	}))
	defer srv.Close()
	q := mustMemory(t)
	s, err := workqueue.NewSource(srv.URL, q)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Poll(context.Background()); n != 0 || err == nil {
		t.Fatalf("first Poll: %d added, err %v; want it ended by the two unanswered items", n, err)
	}
	if n, err := s.Poll(context.Background()); n != 2 || err == nil {
		t.Fatalf("second Poll: %d added, err %v; want a and b added and the poison items failing again", n, err)
	}
	mu.Lock()
	got := slices.Compact(order) // net/http tries a GET that got no answer once more on a new connection
	mu.Unlock()
	if diff := cmp.Diff([]string{"a", "b", "poison1", "poison2"}, got); diff != "" {
		t.Errorf("second Poll's GETs (-want +got):\n%s", diff)
	}
	if st, _ := q.Stats(context.Background()); st.Ready != 2 {
		t.Errorf("queue %+v, want a and b ready", st)
	}
}

// An item that failed once, listed after two items that never answer, is not kept out by them: the
// failed items a Poll stopped before are tried, at the next Poll, before those that stopped it.
func TestSourceFailedOnceNotStarvedByUnanswered(t *testing.T) {
	var mu sync.Mutex
	gets := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/items" {
			json.NewEncoder(w).Encode(workqueue.ItemList{Kind: "ItemList", APIVersion: "v1", Items: []string{"poison1", "poison2", "c"}})
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/api/v1/items/")
		mu.Lock()
		gets[name]++
		n := gets[name]
		mu.Unlock()
		switch {
		case strings.HasPrefix(name, "poison"):
			panic(http.ErrAbortHandler) // no answer
		case n == 1:
			http.Error(w, "busy", http.StatusServiceUnavailable) // c fails once
		default:
			json.NewEncoder(w).Encode(workqueue.ItemData{Kind: "Item", APIVersion: "v1", Data: json.RawMessage(`{}`)})
		}
	}))
	defer srv.Close()
	if total := pollAdded(t, srv.URL, 4); total != 1 {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("4 Polls added %d items (GETs %v); want c added once its 503 has passed", total, gets)
	}
}

// An item that failed once is tried again though every Poll lists new items that get no answer
// and end it: it has waited longer than they have.
func TestSourceFailedItemNotStarvedByNewOnes(t *testing.T) {
	var mu sync.Mutex
	polls, xGets := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/api/v1/items/")
		if strings.HasPrefix(name, "new") {
			panic(http.ErrAbortHandler) // no answer
		}
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/api/v1/items" {
			polls++
			items := []string{"x"}
			for i := range polls { // two new unanswered items a Poll, listed first
				items = append([]string{fmt.Sprintf("new%d-a", i), fmt.Sprintf("new%d-b", i)}, items...)
			}
			json.NewEncoder(w).Encode(workqueue.ItemList{Kind: "ItemList", APIVersion: "v1", Items: items})
			return
		}
		if xGets++; xGets == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(workqueue.ItemData{Kind: "Item", APIVersion: "v1", Data: json.RawMessage(`{}`)})
	}))
	defer srv.Close()
	if added := pollAdded(t, srv.URL, 4); added != 1 {
		t.Fatalf("4 Polls added %d items; want x added once its 503 has passed", added)
	}
}

// pollAdded polls the source at url n times into a new Memory and returns how many items it added.
func pollAdded(t *testing.T, url string, n int) int {
	t.Helper()
	s, err := workqueue.NewSource(url, mustMemory(t))
	if err != nil {
		t.Fatal(err)
	}
	added := 0
	for range n {
		k, _ := s.Poll(context.Background())
		added += k
	}
	return added
}

// An item missing from every other list, or from two lists in three (a source behind replicas that
// lag each other), is added though unanswered items listed before it end every Poll (two in a row
// stop a Poll): off the list it keeps its place, back on it, it goes ahead of the items tried since.
func TestSourceItemThatComesAndGoesNotStarved(t *testing.T) {
	for _, unanswered := range []int{2, 3, 5} {
		for _, every := range []int{2, 3} {
			t.Run(fmt.Sprintf("%d unanswered, listed every %d", unanswered, every), func(t *testing.T) {
				var mu sync.Mutex
				polls := 0
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasPrefix(r.URL.Path, "/api/v1/items/u") {
						panic(http.ErrAbortHandler) // no answer
					}
					if r.URL.Path == "/api/v1/items" {
						mu.Lock()
						polls++
						var items []string
						for i := range unanswered {
							items = append(items, fmt.Sprintf("u%d", i))
						}
						if polls%every == 1 {
							items = append(items, "x")
						}
						mu.Unlock()
						json.NewEncoder(w).Encode(workqueue.ItemList{Kind: "ItemList", APIVersion: "v1", Items: items})
						return
					}
					json.NewEncoder(w).Encode(workqueue.ItemData{Kind: "Item", APIVersion: "v1", Data: json.RawMessage(`{}`)})
				}))
				defer srv.Close()
				// x is added again each time it comes back (a name off the list is forgotten once added).
				if added := pollAdded(t, srv.URL, 30); added == 0 {
					t.Fatal("30 Polls added nothing; want x added")
				}
			})
		}
	}
}

// TestCheckSourceURL: CheckSourceURL takes the URLs NewSource takes, and refuses the others with an
// ErrInvalid naming the URL, as NewSource does.
func TestCheckSourceURL(t *testing.T) {
	q := mustMemory(t)
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8081", true},
		{"https://items.example/base/", true},
		{"ftp://x", false},
		{"127.0.0.1:8081", false},
		{"http://", false},
		{"http://[::1", false},
		{"", false},
	} {
		err := workqueue.CheckSourceURL(tc.url)
		if tc.ok != (err == nil) || (err != nil && (!errors.Is(err, workqueue.ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.url)))) {
			t.Errorf("CheckSourceURL(%q) = %v; want ok %v, else an ErrInvalid naming the URL", tc.url, err, tc.ok)
		}
		if _, nerr := workqueue.NewSource(tc.url, q); (nerr == nil) != (err == nil) {
			t.Errorf("NewSource(%q) = %v, but CheckSourceURL = %v", tc.url, nerr, err)
		}
	}
}
