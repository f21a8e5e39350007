package etcd_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/election/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Campaign on an etcd cluster and fence the leader's writes with the term's token. (Compiled, not
// run: it needs an etcd cluster; Example_embedded runs a hand-over on embedded etcd.)
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

// Two candidates on an embedded single-member etcd (the way a test can run this package without a
// cluster): pod-a wins the first term; when its Run ends it steps down, revokes its lease, and
// pod-b, which waited behind it, leads with a larger fencing token.
func Example_embedded() {
	dir, err := os.MkdirTemp("", "etcd-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	cfg := embed.NewConfig()
	cfg.Dir = dir
	loopback := []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}} // port 0: the kernel picks free ports
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = loopback, loopback
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = loopback, loopback
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	server, err := embed.StartEtcd(cfg)
	if err != nil {
		panic(err)
	}
	defer server.Close()
	within(server.Server.ReadyNotify())

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + server.Clients[0].Addr().String()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		panic(err)
	}
	defer cli.Close() // after both Runs have returned: the Backend does not own the client
	backend, err := etcd.New(cli, "reports", etcd.WithTTL(5*time.Second))
	if err != nil {
		panic(err)
	}

	// start runs a candidate until its stop is called; its first term is sent on the returned channel.
	start := func(id string) (*election.Elector, <-chan election.Term, func()) {
		first := make(chan election.Term, 1) // capacity 1: the first term waits for the reader
		e, err := election.New(backend, id, func(leaderCtx context.Context, t election.Term) error {
			select {
			case first <- t:
			default: // a later term (only if a lease was lost): the example reads the first one
			}
			<-leaderCtx.Done()
			return nil
		})
		if err != nil {
			panic(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		return e, first, func() {
			cancel()
			if err := <-done; err != nil { // Run returns once the term ended and the lease was revoked
				panic(err)
			}
		}
	}

	_, termsA, stopA := start("pod-a")
	a := receive(termsA)
	fmt.Println(a.ID, "leads")

	b, termsB, stopB := start("pod-b")
	defer stopB()
	within(b.Ready())
	fmt.Println("pod-b sees", b.Leader().ID, "leading")

	stopA()
	fmt.Println("pod-a stepped down")
	bt := receive(termsB)
	fmt.Println(bt.ID, "leads")
	fmt.Println("token grew:", bt.Token > a.Token)
	// Output:
	// pod-a leads
	// pod-b sees pod-a leading
	// pod-a stepped down
	// pod-b leads
	// token grew: true
}

// within waits for ch to be closed, for at most a minute.
func within(ch <-chan struct{}) {
	select {
	case <-ch:
	case <-time.After(time.Minute):
		panic("not ready within a minute")
	}
}

// receive returns the next term from ch, waiting at most a minute.
func receive(ch <-chan election.Term) election.Term {
	select {
	case t := <-ch:
		return t
	case <-time.After(time.Minute):
		panic("no term within a minute")
	}
}
