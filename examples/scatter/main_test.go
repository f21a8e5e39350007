package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/scatter"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("SCATTER_EXAMPLE_MAIN") == "1" { // re-executed as a leaf by the demo
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// Sharded search merged by the fan-out equals the same search over one unsharded index.
func TestShardedEqualsUnsharded(t *testing.T) {
	c := generate(7, 3000)
	whole := buildIndex(c, 0, 1)
	const shards = 4
	leaves := make([]scatter.Leaf[query, answer], shards)
	for s := range shards {
		ix := buildIndex(c, s, shards)
		leaves[s] = scatter.LeafFunc[query, answer](func(_ context.Context, q query) (answer, error) {
			return answer{Hits: ix.search(q.Q, q.K), Docs: len(ix.docLen)}, nil
		})
	}
	f, err := scatter.New(leaves, topK())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		q := query{Q: c.vocab[i] + " " + c.vocab[i*13+5], K: 10}
		res, err := f.Do(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		got := res.Out
		if len(got) > q.K {
			got = got[:q.K]
		}
		if diff := cmp.Diff(whole.search(q.Q, q.K), got); diff != "" {
			t.Errorf("query %q (-unsharded +sharded):\n%s", q.Q, diff)
		}
	}
	docs := 0
	for s := range shards {
		docs += len(buildIndex(c, s, shards).docLen)
	}
	if docs != 3000 {
		t.Errorf("shards hold %d documents, want 3000", docs)
	}
}

func TestRootHTTP(t *testing.T) {
	c := generate(1, 2000)
	var spec []string
	for s := range 3 {
		ix := buildIndex(c, s, 3)
		srv := httptest.NewServer(&scatter.LeafHandler[query, answer]{Func: func(_ context.Context, q query) (answer, error) {
			return answer{Hits: ix.search(q.Q, q.K), Docs: len(ix.docLen)}, nil
		}})
		t.Cleanup(srv.Close)
		spec = append(spec, srv.URL)
	}
	client := scatter.NewHTTPClient()
	t.Cleanup(client.CloseIdleConnections)
	reg := prometheus.NewRegistry()
	cfg := rootConfig{}.register(flagSet())
	f, err := newSearch(strings.Join(spec, ","), cfg, reg, client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Wait)
	root := httptest.NewServer(rootHandler(f, reg))
	t.Cleanup(root.Close)
	tests := []struct {
		query string
		code  int
		hits  int
	}{
		{"?q=" + c.vocab[1] + "&k=3", 200, 3},
		{"?q=" + c.vocab[1], 200, 10},
		{"?q=zzzz", 200, 0},
		{"?k=3", 400, -1},
		{"?q=a&k=0", 400, -1},
		{"?q=a&k=x", 400, -1},
	}
	for _, tt := range tests {
		res, err := client.Get(root.URL + "/search" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		var hits []hit
		decErr := json.NewDecoder(res.Body).Decode(&hits)
		res.Body.Close()
		if res.StatusCode != tt.code {
			t.Errorf("%s: %s, want %d", tt.query, res.Status, tt.code)
			continue
		}
		if tt.code == 200 {
			if decErr != nil || len(hits) != tt.hits || res.Header.Get(scatter.HeaderCoverage) != "1.000" {
				t.Errorf("%s: %d hits (%v), coverage %q; want %d hits, coverage 1.000", tt.query, len(hits), decErr, res.Header.Get(scatter.HeaderCoverage), tt.hits)
			}
		}
	}
	res, err := client.Get(root.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(res.Body)
	res.Body.Close()
	if !strings.Contains(b.String(), "podblocks_scatter_fanouts_total") {
		t.Error("/metrics has no podblocks_scatter_fanouts_total")
	}
}

// TestDemo runs the demo end to end: leaf processes (this test binary, re-executed), a root, queries.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"demo", "-shards", "2", "-replicas", "2", "-docs", "2000", "-queries", "40",
		"-slow-prob", "0.05", "-slow", "100ms"}, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{"starting 4 leaf processes", "200 OK, coverage 1.000 (2 of 2 shards)", "no hedging  40 queries", "hedging     40 queries"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
}

func TestBadCommands(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"leaf", "-shard", "3", "-shards", "2"}, {"root", "-leaves", ""}, {"demo", "-shards", "0"}} {
		if err := run(t.Context(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

// scatterCmd is this test binary re-executed as the scatter command (see TestMain), with args.
func scatterCmd(t *testing.T, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "SCATTER_EXAMPLE_MAIN=1")
	return cmd
}

// TestHelpAndUsageErrors: help (scatter -h, scatter CMD -h) prints the usage and exits 0; a command
// line scatter cannot read (no command, an unknown one, an unknown flag) exits 2 with the reason,
// as the flag package's commands do.
func TestHelpAndUsageErrors(t *testing.T) {
	for cmd, usage := range map[string]string{"leaf": "-shards", "root": "-leaves", "demo": "-replicas"} {
		cmdlinetest.TestHelpAndBadFlag(t, usage, scatterCmd(t, cmd))
	}
	const usage = "usage: scatter leaf|root|demo"
	cmdlinetest.TestExits(t, scatterCmd(t), []cmdlinetest.Exit{
		{Args: []string{"-h"}, Status: 0, Stderr: usage},
		{Args: []string{"-help"}, Status: 0, Stderr: usage},
		{Args: []string{"--help"}, Status: 0, Stderr: usage},
		{Args: []string{"help"}, Status: 0, Stderr: usage},
		{Args: nil, Status: 2, Stderr: usage},
		{Args: []string{"nope"}, Status: 2, Stderr: usage},
		{Args: []string{"-no-such-flag"}, Status: 2, Stderr: usage},
		// A stray argument (the flag package stops there and drops the flags after it) and a flag
		// value the command cannot use are usage errors too, named in the message.
		{Args: []string{"leaf", "extra", "-listen", "127.0.0.1:1"}, Status: 2, Stderr: `unexpected arguments ["extra" "-listen" "127.0.0.1:1"]`},
		{Args: []string{"leaf", "-shards", "0"}, Status: 2, Stderr: "-shards"},
		{Args: []string{"leaf", "-slow-prob", "2"}, Status: 2, Stderr: "scatter: leaf: -slow-prob 2: want 0 to 1"},
		{Args: []string{"leaf", "-slow", "-1s"}, Status: 2, Stderr: "scatter: leaf: -slow -1s: want 0 or more"},
		{Args: []string{"root", "-leaves", ""}, Status: 2, Stderr: "root: "},
		// A negative -coverage was ignored; a -hedge-budget of 0 was the library's default, 0.05.
		{Args: []string{"root", "-leaves", "http://127.0.0.1:1", "-coverage", "-0.5"}, Status: 2, Stderr: "scatter: root: -coverage -0.5: want 0 to 1"},
		{Args: []string{"root", "-leaves", "http://127.0.0.1:1", "-hedge-budget", "0"}, Status: 2, Stderr: "scatter: root: -hedge-budget 0: want more than 0, or negative for no cap"},
		{Args: []string{"root", "-leaves", "http://127.0.0.1:1", "-hedge-percentile", "1"}, Status: 2, Stderr: "scatter: root: -hedge-percentile 1: want 0 or more, below 1"},
		{Args: []string{"root", "-leaves", "http://127.0.0.1:1", "-timeout", "-1s"}, Status: 2, Stderr: "scatter: root: -timeout -1s: want 0 or more"},
		{Args: []string{"demo", "-replicas", "0"}, Status: 2, Stderr: "-replicas"},
		{Args: []string{"demo", "stray"}, Status: 2, Stderr: `unexpected arguments ["stray"]`},
		// demo checks what its leaves and its root would refuse before it starts any: no leaf output.
		{Args: []string{"demo", "-docs", "0"}, Status: 2, Stderr: "scatter: demo: -docs 0: want 1 or more"},
		{Args: []string{"demo", "-slow-prob", "1.5"}, Status: 2, Stderr: "scatter: demo: -slow-prob 1.5: want 0 to 1"},
		{Args: []string{"demo", "-hedge-delay", "-1ms"}, Status: 2, Stderr: "scatter: demo: -hedge-delay -1ms: want 0 or more"},
		{Args: []string{"demo", "-coverage", "2"}, Status: 2, Stderr: "scatter: demo: -coverage 2: want 0 to 1"},
		// An impossible port exited 1 from the listen, after a leaf had built its index.
		{Args: []string{"leaf", "-listen", "127.0.0.1:99999"}, Status: 2, Stderr: `scatter: leaf: -listen "127.0.0.1:99999"`},
		{Args: []string{"root", "-leaves", "http://127.0.0.1:1", "-listen", ":99999"}, Status: 2, Stderr: `scatter: root: -listen ":99999"`},
	})
}

func flagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }

func FuzzDecodeQuery(f *testing.F) {
	for _, s := range []string{"q=a&k=3", "q=a", "k=3", "q=a&k=0", "q=a&k=x", "q=%20&k=1000", "q=a&k=1001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/search", nil)
		r.URL.RawQuery = raw
		q, err := decodeQuery(r)
		if err != nil {
			return
		}
		if strings.TrimSpace(q.Q) == "" || q.K < 1 || q.K > 1000 {
			t.Fatalf("decodeQuery(%q) = %+v without error", raw, q)
		}
	})
}

// TestRootMethods: the root's /search is GET (and HEAD); another method answers 405 with Allow,
// without running a fan-out.
func TestRootMethods(t *testing.T) {
	var calls atomic.Int32
	f, err := scatter.New([]scatter.Leaf[query, answer]{scatter.LeafFunc[query, answer](func(context.Context, query) (answer, error) {
		calls.Add(1)
		return answer{}, nil
	})}, topK())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Wait)
	h := rootHandler(f, prometheus.NewRegistry())
	for _, method := range []string{"POST", "PUT", "DELETE"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "/search?q=a", strings.NewReader(`{"q":"a"}`)))
		if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" || !json.Valid(w.Body.Bytes()) {
			t.Errorf("%s /search: %d, Allow %q, body %q; want 405, Allow GET, HEAD and a JSON reason", method, w.Code, w.Header().Get("Allow"), w.Body)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d leaf calls for refused methods, want 0", n)
	}
	for _, method := range []string{"GET", "HEAD"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "/search?q=a", nil))
		if w.Code != 200 {
			t.Errorf("%s /search: %d, want 200", method, w.Code)
		}
	}
}

// TestDocUsage: every flag the package doc shows for a command is one of its flags, and the
// leaf URLs it shows for -leaves name the path leaves serve (/search).
func TestDocUsage(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	cmd := ""
	flagRE := regexp.MustCompile(`(?:^|[\s\[])-([a-z][a-z-]*)`)
	urlRE := regexp.MustCompile(`http://[^|,' ]+`)
	seen := 0
	for _, line := range strings.Split(string(src), "\n") {
		rest, ok := strings.CutPrefix(line, "//\t")
		if !ok {
			cmd = ""
			continue
		}
		if f := strings.Fields(rest); len(f) > 1 && f[0] == "scatter" {
			cmd, rest = f[1], strings.Join(f[2:], " ")
		}
		if cmd == "" {
			continue
		}
		for _, m := range flagRE.FindAllStringSubmatch(rest, -1) {
			seen++
			// "-name=" is an invalid value for any flag but a string one, which then takes
			// "-h": either way the flag is defined unless the error says otherwise.
			out, _ := scatterCmd(t, cmd, "-"+m[1]+"=", "-h").CombinedOutput()
			if strings.Contains(string(out), "not defined") {
				t.Errorf("the package doc shows scatter %s -%s, which is no flag of it: %s", cmd, m[1], out)
			}
		}
		if strings.Contains(rest, "-leaves") {
			for _, u := range urlRE.FindAllString(rest, -1) {
				if u != "http://..." && !strings.HasSuffix(u, "/search") {
					t.Errorf("the package doc shows -leaves URL %s; leaves serve /search", u)
				}
			}
		}
	}
	if seen < 10 {
		t.Fatalf("found %d flags in the package doc's usage lines", seen)
	}
}
