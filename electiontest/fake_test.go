package electiontest_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/electiontest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFakeConformance(t *testing.T) {
	electiontest.TestBackend(t, func(*testing.T) election.Backend { return &electiontest.Fake{} })
}

// TestFakeDrivesElector drives a real Elector by hand: grant, another leader, stop renewals, revoke.
func TestFakeDrivesElector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &electiontest.Fake{Manual: true, TTL: time.Second}
		terms := make(chan election.Term, 8)
		e, err := election.New(f, "me", func(ctx context.Context, tm election.Term) error {
			terms <- tm
			<-ctx.Done()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		synctest.Wait()
		if diff := cmp.Diff([]string{"me"}, f.Waiting()); diff != "" {
			t.Fatalf("waiting (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(election.Leader{}, e.Leader()); diff != "" {
			t.Fatalf("manual fake granted nothing yet (-want +got):\n%s", diff)
		}

		steps := []struct {
			name string
			do   func() election.Term
			want election.Leader
		}{
			{"grant me", func() election.Term { return f.Grant("me") }, election.Leader{ID: "me", Token: 1, Self: true}},
			{"other leads", func() election.Term { return f.Grant("other") }, election.Leader{ID: "other", Token: 2}},
			{"grant me again", func() election.Term { return f.Grant("me") }, election.Leader{ID: "me", Token: 3, Self: true}},
			{"renewals stop", func() election.Term {
				f.StopRenewals()
				// The Elector lets go DefaultStepDownMargin before the TTL runs out.
				time.Sleep(time.Second - election.DefaultStepDownMargin - time.Millisecond)
				synctest.Wait()
				if !e.Leader().Self {
					t.Errorf("stepped down before the TTL less the margin ran out")
				}
				time.Sleep(2 * time.Millisecond)
				return election.Term{}
			}, election.Leader{}},
			{"grant me after step-down", func() election.Term { return f.Grant("me") }, election.Leader{ID: "me", Token: 4, Self: true}},
			{"revoke", func() election.Term { f.Revoke(); return election.Term{} }, election.Leader{}},
		}
		for _, s := range steps {
			s.do()
			synctest.Wait()
			if diff := cmp.Diff(s.want, e.Leader()); diff != "" {
				t.Fatalf("%s: Leader() (-want +got):\n%s", s.name, diff)
			}
		}
		close(terms)
		var got []election.Term
		for tm := range terms {
			got = append(got, tm)
		}
		want := []election.Term{{ID: "me", Token: 1}, {ID: "me", Token: 3}, {ID: "me", Token: 4}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("terms the leader func ran (-want +got):\n%s", diff)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}
