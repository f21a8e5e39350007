package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podblocks/podblocks/election"
)

type leaderAnswer struct {
	Leader string `json:"leader"`
	Token  uint64 `json:"token"`
	Self   bool   `json:"self"`
}

// electionWatch polls GET /leader of every candidate and checks, on every round, that one token is
// only ever claimed (self=true) by one candidate, and that no two candidates claim the same round.
type electionWatch struct {
	t     *testing.T
	addrs map[string]string // candidate id -> host address of its leader API

	mu      sync.Mutex
	byToken map[uint64]string // token -> the only id that claimed it
	errs    []string
	resumed string // a candidate just resumed from a pause: its stale claim may overlap
}

func (w *electionWatch) poll(ids ...string) map[string]leaderAnswer {
	got := map[string]leaderAnswer{}
	var claims []string
	type claim struct {
		id    string
		token uint64
	}
	var cs []claim
	for _, id := range ids {
		code, _, body, err := get("http://" + w.addrs[id] + "/leader")
		if err != nil || code != http.StatusOK {
			continue
		}
		var a leaderAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			w.fail("candidate %s: bad /leader answer %q: %v", id, body, err)
			continue
		}
		got[id] = a
		if a.Self {
			claims = append(claims, fmt.Sprintf("%s@%d", id, a.Token))
			cs = append(cs, claim{id, a.Token})
			w.mu.Lock()
			if other, ok := w.byToken[a.Token]; ok && other != id {
				w.errs = append(w.errs, fmt.Sprintf("token %d claimed by %s and %s", a.Token, other, id))
			}
			w.byToken[a.Token] = id
			w.mu.Unlock()
			if a.Leader != id {
				w.fail("candidate %s says self=true but leader=%q", id, a.Leader)
			}
		}
	}
	if len(claims) > 1 {
		// Two claims at once are only allowed while one of them is the stale term of a process
		// resumed from a pause that has not noticed yet; its token must be the lower one (the
		// fence then rejects its writes).
		w.t.Logf("overlapping claims in one round: %v", claims)
		w.mu.Lock()
		ok := len(cs) == 2 && w.resumed != "" &&
			((cs[0].id == w.resumed && cs[0].token < cs[1].token) || (cs[1].id == w.resumed && cs[1].token < cs[0].token))
		if !ok {
			w.errs = append(w.errs, fmt.Sprintf("two leaders at once: %v", claims))
		}
		w.mu.Unlock()
	}
	return got
}

func (w *electionWatch) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, fmt.Sprintf(format, args...))
}

// agree waits until every candidate in ids answers with the same non-empty leader and token, that
// leader is one of them and says self=true, and no other says self=true; it returns the leader.
func (w *electionWatch) agree(timeout time.Duration, ids ...string) leaderAnswer {
	w.t.Helper()
	var out leaderAnswer
	err := eventually(timeout, func() error {
		got := w.poll(ids...)
		if len(got) != len(ids) {
			return fmt.Errorf("%d of %d candidates answered: %v", len(got), len(ids), got)
		}
		first := got[ids[0]]
		if _, ok := got[first.Leader]; !ok {
			return fmt.Errorf("the leader %q is not among the live candidates %v", first.Leader, ids)
		}
		for _, id := range ids {
			a := got[id]
			if a.Leader == "" || a.Leader != first.Leader || a.Token != first.Token {
				return fmt.Errorf("no agreement yet: %v", got)
			}
			if a.Self != (id == a.Leader) {
				return fmt.Errorf("candidate %s: self=%v with leader %s", id, a.Self, a.Leader)
			}
		}
		out = leaderAnswer{Leader: first.Leader, Token: first.Token}
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

func without(ids []string, drop string) []string {
	var out []string
	for _, id := range ids {
		if id != drop {
			out = append(out, id)
		}
	}
	return out
}

// TestElection runs three elector containers against an etcd container, kills the leader, then
// pauses the next one: a new leader with a higher token takes over each time, one token never has
// two holders, and the paused leader's writes are fenced off after it resumes.
func TestElection(t *testing.T) {
	needEngine(t, "etcd", "elector")
	net := network(t, "election")
	etcd := container(t, "etcd", "--network", net, image("etcd"),
		"--name", "e2e", "--listen-client-urls", "http://0.0.0.0:2379",
		"--advertise-client-urls", "http://"+prefix+"etcd:2379")
	ids := []string{"c1", "c2", "c3"}
	w := &electionWatch{t: t, addrs: map[string]string{}, byToken: map[uint64]string{}}
	for _, id := range ids {
		c := container(t, "elector-"+id, "--network", net, "-p", "127.0.0.1::4040", image("elector"),
			"-backend", "etcd", "-endpoints", "http://"+etcd+":2379", "-election", "e2e", "-id", id,
			"-http", "0.0.0.0:4040", "-ttl", "2s")
		w.addrs[id] = hostAddr(t, c, 4040)
	}
	for _, id := range ids {
		waitHTTP(t, "http://"+w.addrs[id]+"/readyz", 90*time.Second)
	}

	// The shared resource every leader's app writes to, fenced by token.
	var fence election.Fence
	var mu sync.Mutex
	var accepted []string
	write := func(who string, token uint64) error {
		return fence.Do(token, func() error {
			mu.Lock()
			defer mu.Unlock()
			accepted = append(accepted, fmt.Sprintf("%s@%d", who, token))
			return nil
		})
	}

	first := w.agree(60*time.Second, ids...)
	t.Logf("leader %s, token %d", first.Leader, first.Token)
	if err := write(first.Leader, first.Token); err != nil {
		t.Fatalf("the first leader's write: %v", err)
	}

	// docker kill the leader: the lease expires (TTL 2 s) and another candidate takes over.
	mustDocker(t, "kill", prefix+"elector-"+first.Leader)
	rest := without(ids, first.Leader)
	second := w.agree(60*time.Second, rest...)
	t.Logf("after killing %s: leader %s, token %d", first.Leader, second.Leader, second.Token)
	if second.Leader == first.Leader || second.Token <= first.Token {
		t.Fatalf("after the kill: leader %s token %d, want a new leader with a token above %d", second.Leader, second.Token, first.Token)
	}
	if err := write(second.Leader, second.Token); err != nil {
		t.Fatalf("the second leader's write: %v", err)
	}
	// The killed one comes back as a follower.
	mustDocker(t, "start", prefix+"elector-"+first.Leader)
	w.mu.Lock()
	w.addrs[first.Leader] = hostAddr(t, prefix+"elector-"+first.Leader, 4040) // a new port after a restart
	w.mu.Unlock()
	if again := w.agree(60*time.Second, ids...); again != second {
		t.Fatalf("after restarting %s: leader %+v, want %+v still", first.Leader, again, second)
	}

	// docker pause the leader: frozen, it can neither renew nor step down.
	paused := prefix + "elector-" + second.Leader
	mustDocker(t, "pause", paused)
	third := w.agree(60*time.Second, without(ids, second.Leader)...)
	t.Logf("after pausing %s: leader %s, token %d", second.Leader, third.Leader, third.Token)
	if third.Leader == second.Leader || third.Token <= second.Token {
		t.Fatalf("after the pause: leader %s token %d, want a new leader with a token above %d", third.Leader, third.Token, second.Token)
	}
	if err := write(third.Leader, third.Token); err != nil {
		t.Fatalf("the third leader's write: %v", err)
	}

	// Resume it. Its app acts on what its elector says and on the token it held: every write it
	// attempts with a token of its old term is rejected.
	w.mu.Lock()
	w.resumed = second.Leader
	w.mu.Unlock()
	mustDocker(t, "unpause", paused)
	var fenced int
	err := eventually(60*time.Second, func() error {
		a, ok := w.poll(second.Leader)[second.Leader]
		token := second.Token // the token the paused app held when it froze
		if ok && a.Self {
			token = a.Token
		}
		if err := write(second.Leader, token); err == nil {
			return fmt.Errorf("a write of the resumed %s with token %d was accepted", second.Leader, token)
		} else if !errors.Is(err, election.ErrStaleToken) {
			return fmt.Errorf("write: %v, want a stale token error", err)
		}
		fenced++
		if !ok || a.Self || a.Leader != third.Leader || a.Token != third.Token {
			return fmt.Errorf("resumed %s still answers %+v", second.Leader, a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if final := w.agree(60*time.Second, ids...); final != third {
		t.Fatalf("after resuming %s: leader %+v, want %+v", second.Leader, final, third)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 {
		t.Fatalf("election invariants broken:\n%s", strings.Join(w.errs, "\n"))
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{fmt.Sprintf("%s@%d", first.Leader, first.Token), fmt.Sprintf("%s@%d", second.Leader, second.Token),
		fmt.Sprintf("%s@%d", third.Leader, third.Token)}
	if fmt.Sprint(accepted) != fmt.Sprint(want) {
		t.Fatalf("accepted writes %v, want %v", accepted, want)
	}
	tokens := make([]uint64, 0, len(w.byToken))
	for tok := range w.byToken {
		tokens = append(tokens, tok)
	}
	sort.Slice(tokens, func(i, j int) bool { return tokens[i] < tokens[j] })
	terms := make([]string, len(tokens))
	for i, tok := range tokens {
		terms[i] = fmt.Sprintf("%d:%s", tok, w.byToken[tok])
	}
	t.Logf("terms seen (token:holder): %v; fenced writes of the resumed leader: %d", terms, fenced)
}
