package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/etcdtest"
	"github.com/podblocks/podblocks/internal/testbin"
)

// bin is the built elector, for the tests of its command line; the others run it in-process.
var bin string

func TestMain(m *testing.M) { testbin.Main(m, "elector", &bin, etcdtest.IgnoreOptions()...) }

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-ttl", exec.Command(bin))
}

func TestParseRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown backend", []string{"-backend", "zookeeper"}},
		{"no endpoints", []string{"-backend", "etcd", "-endpoints", " , "}},
		{"short ttl", []string{"-ttl", "500ms"}},
		{"ttl not whole seconds", []string{"-ttl", "1500ms"}},
		{"bad ttl", []string{"-ttl", "soon"}},
		{"empty id", []string{"-id", ""}},
		{"empty http", []string{"-http", ""}},
		{"stray argument", []string{"-backend", "memory", "extra"}},
		{"unknown flag", []string{"-leader"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parse(tt.args, io.Discard); err == nil {
				t.Fatalf("parse(%q) accepted bad flags", tt.args)
			}
		})
	}
	c, err := parse([]string{"-backend", "etcd", "-endpoints", "http://a:2379, http://b:2379", "-election", "jobs", "-id", "p1", "-http", "127.0.0.1:0", "-ttl", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"http://a:2379", "http://b:2379"}, c.endpoints); diff != "" || c.election != "jobs" || c.id != "p1" || c.ttl != 3*time.Second {
		t.Fatalf("parse = %+v; endpoints (-want +got):\n%s", c, diff)
	}
}

// TestUsageErrors: a flag value the elector cannot use is a usage error (exit 2, naming the flag),
// found before it connects or serves. The etcd flags are not checked with -backend memory, which
// ignores them (TestMemoryIgnoresEtcdFlags).
func TestUsageErrors(t *testing.T) {
	cmdlinetest.TestExits(t, exec.Command(bin, "-http", "127.0.0.1:0"), []cmdlinetest.Exit{
		{Args: []string{"-backend", "zookeeper"}, Status: 2, Stderr: `elector: -backend "zookeeper": want etcd or memory`},
		{Args: []string{"-backend", "etcd", "-endpoints", " , "}, Status: 2, Stderr: `elector: -endpoints " , ": empty item in the comma-separated list`},
		{Args: []string{"-endpoints", "http://127.0.0.1:1,,http://127.0.0.1:2"}, Status: 2, Stderr: `elector: -endpoints "http://127.0.0.1:1,,http://127.0.0.1:2": empty item`},
		{Args: []string{"-endpoints", ""}, Status: 2, Stderr: "elector: -endpoints: at least one etcd URL needed with -backend etcd"},
		{Args: []string{"-ttl", "500ms"}, Status: 2, Stderr: "elector: -ttl 500ms: want whole seconds, at least 1s"},
		// An etcd lease's TTL is whole seconds: 1.5s would be 2s.
		{Args: []string{"-ttl", "1500ms", "-endpoints", "http://127.0.0.1:1"}, Status: 2, Stderr: "elector: -ttl 1.5s: want whole seconds, at least 1s"},
		{Args: []string{"-id", ""}, Status: 2, Stderr: "elector: -id: empty"},
		{Args: []string{"-http", ""}, Status: 2, Stderr: "elector: -http: empty"},
		// An impossible port exited 1 from the listen.
		{Args: []string{"-backend", "memory", "-http", ":99999"}, Status: 2, Stderr: `elector: -http ":99999"`},
		{Args: []string{"-backend", "memory", "extra"}, Status: 2, Stderr: `elector: unexpected arguments ["extra"]`},
	})
}

// TestMemoryIgnoresEtcdFlags: -backend memory accepts the etcd flags with values only etcd would
// refuse, and notes them as ignored, as it does with valid ones.
func TestMemoryIgnoresEtcdFlags(t *testing.T) {
	c, err := parse([]string{"-backend", "memory", "-ttl", "1500ms", "-endpoints", ""}, io.Discard)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if diff := cmp.Diff([]string{"-endpoints", "-ttl"}, c.ignored); diff != "" {
		t.Fatalf("ignored flags (-want +got):\n%s", diff)
	}
}

// sidecar is one elector process run in-process.
type sidecar struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

func startSidecar(t *testing.T, args ...string) *sidecar {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	s := &sidecar{cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- run(ctx, append(args, "-http", "127.0.0.1:0"), io.Discard, func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		s.url = "http://" + a
	case err := <-s.done:
		cancel()
		t.Fatalf("elector exited: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("elector did not start serving")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *sidecar) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("elector returned %v on shutdown, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("elector did not stop")
	}
}

type leaderJSON struct {
	Leader string `json:"leader"`
	Token  uint64 `json:"token"`
	Self   bool   `json:"self"`
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func leaderOf(t *testing.T, s *sidecar) leaderJSON {
	t.Helper()
	code, body := get(t, s.url+"/leader")
	if code != http.StatusOK {
		t.Fatalf("GET /leader: %d %s", code, body)
	}
	var l leaderJSON
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("GET /leader body %q: %v", body, err)
	}
	return l
}

// TestMemoryBackend runs the memory backend with DESIGN's full command line: the etcd flags a
// manifest keeps when it switches -backend are accepted, logged as ignored, and change nothing.
func TestMemoryBackend(t *testing.T) {
	s := startSidecar(t, "-backend", "memory", "-id", "solo", "-endpoints", "http://127.0.0.1:1", "-election", "jobs", "-ttl", "10s")
	await.True(t, "ready", 30*time.Second, func() bool { code, _ := get(t, s.url+"/readyz"); return code == http.StatusOK })
	await.True(t, "leadership", 30*time.Second, func() bool { return leaderOf(t, s).Self })
	if diff := cmp.Diff(leaderJSON{Leader: "solo", Token: 1, Self: true}, leaderOf(t, s)); diff != "" {
		t.Fatalf("GET /leader (-want +got):\n%s", diff)
	}
	if code, body := get(t, s.url+"/livez"); code != http.StatusOK {
		t.Fatalf("/livez: %d %s", code, body)
	}
	if code, body := get(t, s.url+"/metrics"); code != http.StatusOK || !strings.Contains(body, "podblocks_election_is_leader 1") {
		t.Fatalf("/metrics: %d, is_leader gauge missing or not 1", code)
	}
	resp, err := http.Post(s.url+"/leader", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /leader: %d, want 405", resp.StatusCode)
	}
}

// TestTwoSidecarsOnEtcd runs two electors against embedded etcd: one leads, the other watches,
// POST /resign hands over, and stopping the leader hands over again.
func TestTwoSidecarsOnEtcd(t *testing.T) {
	c := etcdtest.NewServer(t)
	common := []string{"-backend", "etcd", "-endpoints", c.Endpoint(0), "-election", "jobs", "-ttl", "1s"}
	a := startSidecar(t, append(common, "-id", "a")...)
	await.True(t, "a leads", 30*time.Second, func() bool { return leaderOf(t, a).Self })
	b := startSidecar(t, append(common, "-id", "b")...)
	await.True(t, "b ready", 30*time.Second, func() bool { code, _ := get(t, b.url+"/readyz"); return code == http.StatusOK })
	la := leaderOf(t, a)
	if diff := cmp.Diff(leaderJSON{Leader: "a", Token: la.Token, Self: false}, leaderOf(t, b)); diff != "" {
		t.Fatalf("b's view (-want +got):\n%s", diff)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/leader?watch=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("watch Content-Type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)

	rresp, err := http.Post(a.url+"/resign", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	rresp.Body.Close()
	if rresp.StatusCode != http.StatusOK {
		t.Fatalf("POST /resign on the leader: %d", rresp.StatusCode)
	}
	var last leaderJSON
	for !last.Self && lines.Scan() {
		if err := json.Unmarshal(lines.Bytes(), &last); err != nil {
			t.Fatalf("watch line %q: %v", lines.Text(), err)
		}
	}
	if last.Leader != "b" || !last.Self || last.Token <= la.Token {
		t.Fatalf("after resign, b's watch ended at %+v; want b, self, token > %d", last, la.Token)
	}
	await.True(t, "a sees b", 30*time.Second, func() bool { l := leaderOf(t, a); return l.Leader == "b" && !l.Self })
	if code, _ := get(t, b.url+"/resign"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /resign: %d, want 405", code)
	}
	cancel()

	// Stopping the leader (SIGTERM in production) releases the lease: a takes over at once.
	b.stop(t)
	await.True(t, "a leads again", 30*time.Second, func() bool { return leaderOf(t, a).Self })
	if l := leaderOf(t, a); l.Token <= last.Token {
		t.Fatalf("a's new token %d not above b's %d", l.Token, last.Token)
	}
}
