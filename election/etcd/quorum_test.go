package etcd_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/election/etcd"
	"github.com/podblocks/podblocks/internal/etcdtest"
)

// observers runs one Elector per endpoint, each with its own client, on the election "unconfirmed"
// with TTL 1s, and stops them when the test function returns (call the returned func with defer).
func observers(t *testing.T, ids []string, endpoints [][]string) ([]*election.Elector, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var electors []*election.Elector
	var dones []chan error
	stop := func() {
		cancel()
		for i, d := range dones {
			if err := <-d; err != nil {
				t.Errorf("Run %s: %v", electors[i].ID(), err)
			}
		}
	}
	for i, id := range ids {
		b, err := etcd.New(etcdtest.NewClient(t, endpoints[i]...), "unconfirmed", etcd.WithTTL(time.Second))
		if err != nil {
			stop()
			t.Fatal(err)
		}
		e, err := election.New(b, id, func(ctx context.Context, _ election.Term) error {
			<-ctx.Done()
			return nil
		}, election.WithReleaseTimeout(200*time.Millisecond))
		if err != nil {
			stop()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		electors = append(electors, e)
		dones = append(dones, done)
	}
	return electors, stop
}

// views returns what every Elector reports, in one line.
func views(electors []*election.Elector) string {
	var b strings.Builder
	for _, e := range electors {
		fmt.Fprintf(&b, " %s=%+v", e.ID(), e.Leader())
	}
	return b.String()
}

// waitViews polls until ok holds for what the electors report, or fails the test after 30s.
func waitViews(t *testing.T, what string, electors []*election.Elector, ok func(ls []election.Leader) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ls []election.Leader
		for _, e := range electors {
			ls = append(ls, e.Leader())
		}
		if ok(ls) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s; candidates report:%s", what, views(electors))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agreed reports whether exactly one candidate leads and every candidate names its term.
func agreed(ls []election.Leader) bool {
	selfs := 0
	for _, l := range ls {
		if l.Self {
			selfs++
		}
		if l.ID == "" || l.ID != ls[0].ID || l.Token != ls[0].Token {
			return false
		}
	}
	return selfs == 1
}

// TestQuorumLossReportsNoLeader stops two members of a 3-member cluster under three candidates.
// Nobody can renew a lease without a quorum, so the leader steps down by its own clock within the
// TTL; then every candidate, the one that stepped down included, must report no leader (GET /leader
// answers "leader":"" as DESIGN.md's contract says) rather than the last leader it saw.
func TestQuorumLossReportsNoLeader(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	all := c.Endpoints()
	electors, stop := observers(t, []string{"pod-a", "pod-b", "pod-c"}, [][]string{all, all, all})
	defer stop()
	waitViews(t, "a leader everyone names", electors, agreed)
	before := views(electors)

	c.Stop(1)
	c.Stop(2)
	stopped := time.Now()
	waitViews(t, "no leader after the quorum was lost", electors, func(ls []election.Leader) bool {
		return cmp.Equal(ls, make([]election.Leader, len(ls)))
	})
	t.Logf("every candidate reports no leader %v after the quorum was lost (before:%s)",
		time.Since(stopped).Round(time.Millisecond), before)
	for _, e := range electors {
		w := httptest.NewRecorder()
		election.NewHandler(e).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/leader", nil))
		if diff := cmp.Diff(`{"leader":"","token":0,"self":false}`+"\n", w.Body.String()); diff != "" {
			t.Errorf("%s: GET /leader without a quorum (-want +got):\n%s", e.ID(), diff)
		}
	}
}

// TestCutOffObserverReportsNoLeader cuts one candidate off from a healthy etcd (its traffic is held,
// so its watch neither delivers nor fails): it must stop naming a leader it cannot confirm within
// about a TTL, while the leader, still connected, keeps its term; once the traffic flows again, it
// names the leader again.
func TestCutOffObserverReportsNoLeader(t *testing.T) {
	srv := etcdtest.NewServer(t)
	proxy := etcdtest.NewProxy(t, strings.TrimPrefix(srv.Endpoint(0), "http://"))
	// The candidate with the direct connection campaigns first and leads.
	first, stopLeader := observers(t, []string{"leader"}, [][]string{{srv.Endpoint(0)}})
	defer stopLeader()
	waitViews(t, "the leader leads", first, agreed)
	second, stopObserver := observers(t, []string{"observer"}, [][]string{{proxy.URL()}})
	defer stopObserver()
	leader, electors := first[0], append(first, second...)
	waitViews(t, "the observer names the leader", electors, agreed)
	term := leader.Leader()

	proxy.Pause()
	paused := time.Now()
	waitViews(t, "the cut-off observer names no leader", electors, func(ls []election.Leader) bool {
		return ls[1] == election.Leader{}
	})
	took := time.Since(paused)
	if got := leader.Leader(); got != term {
		t.Fatalf("leader reports %+v while the observer is cut off, want its term %+v still", got, term)
	}
	// Its last read was sent at most TTL/3 before the cut, so no sooner than 2/3 of the TTL.
	if took < 600*time.Millisecond {
		t.Errorf("observer stopped naming the leader %v after the cut, well before the 1s TTL passed", took)
	}
	t.Logf("the cut-off observer names no leader %v after the cut", took.Round(time.Millisecond))

	proxy.Resume()
	waitViews(t, "the observer names the leader again", electors, func(ls []election.Leader) bool {
		return ls[0] == term && ls[1] == election.Leader{ID: term.ID, Token: term.Token}
	})
}
