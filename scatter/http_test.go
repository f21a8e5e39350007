package scatter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/scatter"
)

type addReq struct {
	N int `json:"n"`
}

type addResp struct {
	Sum int `json:"sum"`
}

func adder(k int) *scatter.LeafHandler[addReq, addResp] {
	return &scatter.LeafHandler[addReq, addResp]{Func: func(_ context.Context, r addReq) (addResp, error) {
		return addResp{Sum: r.N + k}, nil
	}}
}

func TestLeafHandler(t *testing.T) {
	h := &scatter.LeafHandler[addReq, addResp]{MaxBody: 64, Func: func(_ context.Context, r addReq) (addResp, error) {
		switch r.N {
		case -1:
			return addResp{}, errors.New("negative")
		case -2:
			panic("leaf bug")
		}
		return addResp{Sum: r.N + 1}, nil
	}}
	tests := []struct {
		name, method, body string
		code               int
		answer             string
	}{
		{"ok", "POST", `{"n":41}`, 200, `{"sum":42}`},
		{"not POST", "GET", ``, 405, `{"error":"use POST with a JSON body"}`},
		{"bad JSON", "POST", `{"n":`, 400, `{"error":"decode request: unexpected end of JSON input"}`},
		{"wrong type", "POST", `{"n":"x"}`, 400, `{"error":"decode request: json: cannot unmarshal string into Go struct field addReq.n of type int"}`},
		{"too large", "POST", `{"n":1,"pad":"` + strings.Repeat("x", 100) + `"}`, 413, `{"error":"body larger than 64 bytes"}`},
		{"error", "POST", `{"n":-1}`, 500, `{"error":"negative"}`},
		{"panic", "POST", `{"n":-2}`, 500, `{"error":"scatter: leaf panicked: leaf bug"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tt.method, "/", strings.NewReader(tt.body)))
			got := struct {
				Code   int
				Answer string
			}{w.Code, strings.TrimSpace(w.Body.String())}
			want := struct {
				Code   int
				Answer string
			}{tt.code, tt.answer}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzLeafHandler(f *testing.F) {
	for _, s := range []string{`{"n":41}`, `{"n":`, `{"n":"x"}`, `null`, `[]`, `{"n":1e400}`, ``} {
		f.Add(s)
	}
	h := &scatter.LeafHandler[addReq, addResp]{MaxBody: 256, Func: func(_ context.Context, r addReq) (addResp, error) { return addResp{Sum: r.N}, nil }}
	f.Fuzz(func(t *testing.T, body string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/", strings.NewReader(body)))
		switch w.Code {
		case 200, 400, 413:
		default:
			t.Fatalf("code %d for %q", w.Code, body)
		}
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("answer %q is not JSON: %v", w.Body.String(), err)
		}
	})
}

func TestParseShards(t *testing.T) {
	tests := []struct {
		spec string
		want [][]string
		err  bool
	}{
		{spec: "http://a", want: [][]string{{"http://a"}}},
		{spec: "http://a|http://b, http://c", want: [][]string{{"http://a", "http://b"}, {"http://c"}}},
		{spec: "", err: true},
		{spec: "a,,b", err: true},
		{spec: "a||b", err: true},
		{spec: "http://a,,http://b", err: true},
		{spec: "http://a||http://b", err: true},
		{spec: "https://a:443/search?x=1", want: [][]string{{"https://a:443/search?x=1"}}},
		{spec: "HTTP://a", want: [][]string{{"HTTP://a"}}},
	}
	for _, tt := range tests {
		got, err := scatter.ParseShards(tt.spec)
		if (err != nil) != tt.err {
			t.Errorf("ParseShards(%q) error = %v, want error %v", tt.spec, err, tt.err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseShards(%q) (-want +got):\n%s", tt.spec, diff)
		}
	}
}

// TestShardsRejectBadURLs: a leaf that is not an http or https URL with a host (a bare
// host:port above all) is refused when the list is read, naming the value, instead of every query
// failing later with the URL parser's message.
func TestShardsRejectBadURLs(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"127.0.0.1:9101", `parse shards: shard 0: leaf URL "127.0.0.1:9101": want http:// or https:// and a host (as in "http://127.0.0.1:9101")`},
		{"http://a, localhost:9101", `parse shards: shard 1: leaf URL "localhost:9101": want http:// or https:// and a host (as in "http://localhost:9101")`},
		{"http://a|ftp://b", `parse shards: shard 0: leaf URL "ftp://b": want http:// or https:// and a host`},
		{"http://", `parse shards: shard 0: leaf URL "http://": want http:// or https:// and a host`},
		{"http:/a", `parse shards: shard 0: leaf URL "http:/a": want http:// or https:// and a host`},
		{"/search", `parse shards: shard 0: leaf URL "/search": want http:// or https:// and a host`},
		{"http://a b", `parse shards: shard 0: leaf URL "http://a b": want http:// or https:// and a host`},
	}
	for _, tt := range tests {
		got, err := scatter.ParseShards(tt.spec)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseShards(%q) = %q, %v; want error %q", tt.spec, got, err, tt.want)
		}
		// A list built by hand gets the same check.
		leaves, err := scatter.HTTPShards[addReq, addResp]([][]string{{"http://ok"}, strings.Split(tt.spec, "|")}, nil)
		if err == nil || !strings.Contains(err.Error(), "shard 1: leaf URL") {
			t.Errorf("HTTPShards(%q) = %v, %v; want an error naming shard 1's URL", tt.spec, leaves, err)
		}
	}
}

func FuzzParseShards(f *testing.F) {
	for _, s := range []string{"http://a", "http://a|http://b, http://c", "", "a,,b", "a||b", " | ", "127.0.0.1:9101", "https://a:443/x?y=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := scatter.ParseShards(spec)
		if err != nil {
			return
		}
		for _, sh := range got {
			if len(sh) == 0 {
				t.Fatalf("empty shard from %q", spec)
			}
			for _, r := range sh {
				if r == "" || strings.ContainsAny(r, ",|") || r != strings.TrimSpace(r) {
					t.Fatalf("bad replica %q from %q", r, spec)
				}
				if u, err := url.Parse(r); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					t.Fatalf("replica %q from %q is not an http(s) URL with a host", r, spec)
				}
			}
		}
	})
}

// TestHTTPReliability: leaves that hang, panic, answer garbage or close the connection only cost
// their own slot; the root answers within its deadline with the coverage in its headers, and keeps
// serving.
func TestHTTPReliability(t *testing.T) {
	release := make(chan struct{})
	servers := map[string]http.Handler{
		"good1": adder(1),
		"good2": adder(2),
		"hang": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}),
		"leafpanic": &scatter.LeafHandler[addReq, addResp]{Func: func(context.Context, addReq) (addResp, error) { panic("bug") }},
		"rawpanic": http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			panic(http.ErrAbortHandler) // net/http aborts the connection mid-answer
		}),
		"garbage": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"sum": 12 this is not json`)
		}),
		"close": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
		}),
		"huge": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"sum":1,"pad":"`+strings.Repeat("x", 1<<20)+`"}`)
		}),
	}
	order := []string{"good1", "hang", "leafpanic", "rawpanic", "garbage", "close", "huge", "good2"}
	var spec []string
	for _, name := range order {
		s := httptest.NewServer(servers[name])
		t.Cleanup(s.Close)
		spec = append(spec, s.URL)
	}
	t.Cleanup(func() { close(release) }) // runs before the servers close
	shards, err := scatter.ParseShards(strings.Join(spec, ","))
	if err != nil {
		t.Fatal(err)
	}
	client := scatter.NewHTTPClient()
	t.Cleanup(client.CloseIdleConnections)
	leaves, err := scatter.HTTPShards[addReq, addResp](shards, client)
	if err != nil {
		t.Fatal(err)
	}
	merge := scatter.Merge[addResp, addResp]{Fold: func(acc addResp, _ int, r addResp) addResp { acc.Sum += r.Sum; return acc }}
	const deadline = time.Second
	f, err := scatter.New(leaves, merge, scatter.WithTimeout(deadline))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Wait)
	root := httptest.NewServer(&scatter.RootHandler[addReq, addResp, addResp]{Fanout: f})
	t.Cleanup(root.Close)
	for round := range 3 {
		start := time.Now()
		res, err := client.Post(root.URL, "application/json", strings.NewReader(fmt.Sprintf(`{"n":%d}`, round*10)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		took := time.Since(start)
		if took > deadline+2*time.Second {
			t.Errorf("round %d: root took %v, deadline %v", round, took, deadline)
		}
		answered, n, err := scatter.ParseCoverage(res.Header)
		if err != nil {
			t.Fatal(err)
		}
		got := []string{res.Status, strings.TrimSpace(string(body)), fmt.Sprint(answered, "/", n), res.Header.Get(scatter.HeaderStatuses)}
		want := []string{"200 OK", fmt.Sprintf(`{"sum":%d}`, 2*round*10+3), "2/8", "ok,timeout,error,error,error,error,error,ok"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("round %d (-want +got):\n%s", round, diff)
		}
	}
	// Bad input to the root: 400, and it keeps serving.
	res, err := client.Post(root.URL, "application/json", strings.NewReader(`{"n":`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Errorf("bad request: %s, want 400", res.Status)
	}
}

func TestHTTPRootShortCoverage(t *testing.T) {
	fail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 500) }))
	t.Cleanup(fail.Close)
	good := httptest.NewServer(adder(5))
	t.Cleanup(good.Close)
	client := scatter.NewHTTPClient()
	t.Cleanup(client.CloseIdleConnections)
	leaves, err := scatter.HTTPShards[addReq, addResp]([][]string{{fail.URL}, {good.URL}}, client)
	if err != nil {
		t.Fatal(err)
	}
	f, err := scatter.New(leaves, scatter.Merge[addResp, int]{}, scatter.WithQuorum(2))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	(&scatter.RootHandler[addReq, addResp, int]{Fanout: f}).ServeHTTP(w, httptest.NewRequest("POST", "/", strings.NewReader(`{"n":1}`)))
	f.Wait()
	got := []string{fmt.Sprint(w.Code), w.Header().Get(scatter.HeaderCoverage), strings.TrimSpace(w.Body.String())}
	want := []string{"503", "0.500", `{"error":"scatter: 1 of 2 shards answered, 2 required: scatter: leaf answered 500: down"}`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestHTTPReplicaHedge(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	fast := httptest.NewServer(adder(7))
	t.Cleanup(fast.Close)
	client := scatter.NewHTTPClient()
	t.Cleanup(client.CloseIdleConnections)
	leaves, err := scatter.HTTPShards[addReq, addResp]([][]string{{slow.URL, fast.URL}}, client)
	if err != nil {
		t.Fatal(err)
	}
	f, err := scatter.New(leaves, scatter.Merge[addResp, int]{}, scatter.WithSelection(scatter.SelectRoundRobin),
		scatter.WithHedge(scatter.Hedge{Delay: 20 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := f.Do(t.Context(), addReq{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("hedged call took %v", took)
	}
	s := res.Slots[0]
	if s.Resp.Sum != 8 || s.Replica != 1 || !s.HedgeWon {
		t.Errorf("slot = %+v, want the fast replica's answer via the hedge", s)
	}
	f.Wait() // the slow replica's call was cancelled: Wait returns well before its 5s
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("loser not cancelled: Wait returned after %v", took)
	}
}

func TestParseCoverage(t *testing.T) {
	tests := []struct {
		answered, shards string
		want             [2]int
		err              bool
	}{
		{"3", "4", [2]int{3, 4}, false},
		{"0", "0", [2]int{0, 0}, false},
		{"5", "4", [2]int{}, true},
		{"-1", "4", [2]int{}, true},
		{"", "4", [2]int{}, true},
		{"x", "4", [2]int{}, true},
	}
	for _, tt := range tests {
		h := http.Header{}
		h.Set(scatter.HeaderAnswered, tt.answered)
		h.Set(scatter.HeaderShards, tt.shards)
		a, n, err := scatter.ParseCoverage(h)
		if (err != nil) != tt.err || (err == nil && [2]int{a, n} != tt.want) {
			t.Errorf("ParseCoverage(%q, %q) = %d, %d, %v", tt.answered, tt.shards, a, n, err)
		}
	}
}

func FuzzParseCoverage(f *testing.F) {
	for _, s := range [][2]string{{"3", "4"}, {"0", "0"}, {"5", "4"}, {"-1", "4"}, {"", "4"}, {"x", "4"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, answered, shards string) {
		h := http.Header{}
		h.Set(scatter.HeaderAnswered, answered)
		h.Set(scatter.HeaderShards, shards)
		a, n, err := scatter.ParseCoverage(h)
		if err == nil && (a < 0 || a > n) {
			t.Fatalf("ParseCoverage(%q, %q) = %d of %d", answered, shards, a, n)
		}
	})
}
