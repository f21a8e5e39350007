package etcd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/election/etcd"
	"github.com/podblocks/podblocks/internal/etcdtest"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPausedLeaderStepsDownByItself cuts the leader off from etcd (its traffic is held, so no
// error and no "lease lost" can reach it) and checks it steps down on its own local clock within
// the TTL, and that a candidate with a working connection takes over afterwards with a higher token.
func TestPausedLeaderStepsDownByItself(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { testPausedLeader(t, etcdtest.NewServer(t).Endpoint(0)) })
	t.Run("debian-etcd-3.4", func(t *testing.T) { testPausedLeader(t, etcdtest.StartBinary(t).Endpoint) })
}

func testPausedLeader(t *testing.T, endpoint string) {
	proxy := etcdtest.NewProxy(t, strings.TrimPrefix(endpoint, "http://"))
	admin := etcdtest.NewClient(t, endpoint)
	type event struct {
		id   string
		tm   election.Term
		at   time.Time
		down bool
	}
	events := make(chan event, 8)
	leader := func(id string) election.LeaderFunc {
		return func(ctx context.Context, tm election.Term) error {
			events <- event{id: id, tm: tm, at: time.Now()}
			<-ctx.Done()
			events <- event{id: id, tm: tm, at: time.Now(), down: true}
			return nil
		}
	}
	start := func(endpoint, id string, reg prometheus.Registerer) (stop func()) {
		cli := etcdtest.NewClient(t, endpoint)
		b, err := etcd.New(cli, "pause", etcd.WithTTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		e, err := election.New(b, id, leader(id), election.WithRegisterer(reg), election.WithReleaseTimeout(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run %s: %v", id, err)
			}
		}
	}
	next := func() event {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no election event within 30s")
			return event{}
		}
	}

	regA := prometheus.NewRegistry()
	stopA := start(proxy.URL(), "a", regA)
	defer stopA()
	first := next()
	if first.id != "a" || first.down {
		t.Fatalf("first event %+v, want a's term", first)
	}
	stopB := start(endpoint, "b", prometheus.NewRegistry())
	defer stopB()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) { // until b is campaigning: two candidate keys
		resp, err := admin.Get(context.Background(), etcd.DefaultPrefix+"pause/", clientV3Prefix()...)
		if err == nil && resp.Count == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	paused := time.Now()
	proxy.Pause()
	var down, took event
	for down.id == "" || took.id == "" {
		switch ev := next(); {
		case ev.id == "a" && ev.down:
			down = ev
		case ev.id == "b" && !ev.down:
			took = ev
		default:
			t.Fatalf("unexpected event %+v after the pause", ev)
		}
	}
	if !down.at.Before(took.at) {
		t.Fatalf("b led at %v, a stepped down only at %v (pause at 0)", took.at.Sub(paused), down.at.Sub(paused))
	}
	// a's last confirmed renewal was sent before the pause, so it must let go within one TTL of
	// the pause (plus scheduling slack on a loaded machine).
	if d := down.at.Sub(paused); d > 1500*time.Millisecond {
		t.Fatalf("a stepped down %v after the pause, want within the 1s TTL", d)
	}
	if got := counterValue(t, regA, "podblocks_election_stepdowns_total", "renewal_timeout"); got != 1 {
		t.Fatalf("stepdowns{reason=renewal_timeout} = %v, want 1", got)
	}
	if took.tm.Token <= first.tm.Token {
		t.Fatalf("b's token %d not above a's %d", took.tm.Token, first.tm.Token)
	}
	t.Logf("a stepped down %v after the pause; b led %v after a let go", down.at.Sub(paused).Round(time.Millisecond), took.at.Sub(down.at).Round(time.Millisecond))
	proxy.Resume()
}

func clientV3Prefix() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
}

// counterValue returns the counter name{reason=reason} in reg (0 if absent).
func counterValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
