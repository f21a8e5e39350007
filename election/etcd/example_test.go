package etcd_test

import (
	"context"
	"net/http"
	"time"

	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/election/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Campaign on an etcd cluster and fence the leader's writes with the term's token. (Compiled, not
// run: it needs an etcd cluster; the tests run the same code against embedded etcd.)
func Example() {
	run := func(ctx context.Context) error {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://127.0.0.1:2379"}})
		if err != nil {
			return err
		}
		defer cli.Close()
		backend, err := etcd.New(cli, "reports", etcd.WithTTL(5*time.Second))
		if err != nil {
			return err
		}
		e, err := election.New(backend, "pod-a", func(leaderCtx context.Context, t election.Term) error {
			// Lead until leaderCtx ends; send t.Token with every write so the store can fence.
			req, _ := http.NewRequestWithContext(leaderCtx, http.MethodPut, "http://store/report", nil)
			req.Header.Set(election.TokenHeader, election.FormatToken(t.Token))
			_, err := http.DefaultClient.Do(req)
			<-leaderCtx.Done()
			return err
		})
		if err != nil {
			return err
		}
		return e.Run(ctx) // campaign, lead, step down, campaign again, until ctx ends
	}
	_ = run
}
