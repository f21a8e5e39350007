// Command elector is the paper's leader-election container: a sidecar that campaigns for
// leadership on behalf of the app in its pod and answers, on localhost, "who is the leader, and is
// it me?", so an app in any language gets leader election with fencing tokens over HTTP.
//
//	elector -backend etcd -endpoints http://etcd-0:2379,http://etcd-1:2379 -election jobs -id $POD_NAME -http 127.0.0.1:4040 -ttl 10s
//	elector -backend memory -http 127.0.0.1:4040   # single process: always the leader
//
// On -http it serves:
//
//	GET  /leader          {"leader":"<id>","token":<uint64>,"self":<bool>} ("" and 0 when there is no leader)
//	GET  /leader?watch=1  the same object now and on every change, one JSON object per line
//	POST /resign          hand leadership over at once ({"resigned":true}; 409 if not the leader)
//	/livez, /readyz       probes (ready once the current leader, or "no leader", is known)
//	/metrics, /statusz    Prometheus metrics and a status page
//
// The app should pass the token with every write to shared state (for example in the
// Fencing-Token header) so the state can reject writes from an older leader. The elector steps down
// when it cannot confirm a lease renewal within the TTL on its own monotonic clock. On SIGTERM or
// SIGINT it gives up leadership (releasing the lease, so a peer takes over at once) and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/election/etcd"
	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cmdline.Exit("elector", run(ctx, os.Args[1:], os.Stderr, nil))
}

type config struct {
	backend   string
	endpoints []string
	election  string
	id        string
	http      string
	ttl       time.Duration
	ignored   []string // flags given that the backend does not use
}

func parse(args []string, stderr io.Writer) (config, error) {
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("elector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var endpoints string
	fs.StringVar(&c.backend, "backend", "etcd", "lock service: etcd or memory (in-process, single candidate)")
	fs.StringVar(&endpoints, "endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs (-backend etcd)")
	fs.StringVar(&c.election, "election", "default", "election name; candidates with the same name compete (-backend etcd)")
	fs.StringVar(&c.id, "id", host, "this candidate's ID (unique per candidate; default the hostname, the pod name in Kubernetes)")
	fs.StringVar(&c.http, "http", "127.0.0.1:4040", "address of the leader API and probes (loopback by default)")
	fs.DurationVar(&c.ttl, "ttl", etcd.DefaultTTL, "lease TTL (-backend etcd; whole seconds; the server may raise it to its minimum)")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return c, err
	}
	switch c.backend {
	case "etcd":
		items, err := cmdline.List("endpoints", endpoints)
		if err != nil {
			return c, err
		}
		for _, e := range items {
			c.endpoints = append(c.endpoints, strings.TrimSpace(e))
		}
		if len(c.endpoints) == 0 {
			return c, cmdline.Usagef("-endpoints: at least one etcd URL needed with -backend etcd")
		}
		if c.ttl < time.Second || c.ttl%time.Second != 0 { // an etcd lease's TTL is whole seconds
			return c, cmdline.Usagef("-ttl %v: want whole seconds, at least 1s", c.ttl)
		}
	case "memory":
		// One candidate in this process: no lock service to reach, no lease, no name to share. DESIGN's
		// command line is one for both backends, so a manifest may switch -backend and keep the
		// etcd flags: they are accepted, not checked, and ignored (run logs which).
		given := cmdline.Given(fs)
		for _, name := range []string{"endpoints", "ttl", "election"} {
			if given[name] {
				c.ignored = append(c.ignored, "-"+name)
			}
		}
	default:
		return c, cmdline.Usagef("-backend %q: want etcd or memory", c.backend)
	}
	if c.id == "" {
		return c, cmdline.Usagef("-id: empty (and no hostname to default to)")
	}
	if c.http == "" {
		return c, cmdline.Usagef("-http: empty")
	}
	if err := cmdline.Addr("-http", c.http); err != nil {
		return c, err
	}
	return c, nil
}

// run runs the elector until ctx ends. started, if non-nil, is called with the bound -http
// address once the API serves (tests bind port 0).
func run(ctx context.Context, args []string, stderr io.Writer, started func(addr string)) error {
	c, err := parse(args, stderr)
	if err != nil {
		return err
	}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(stderr), zap.InfoLevel)).Named("elector")
	if len(c.ignored) > 0 {
		log.Info("flags ignored by -backend "+c.backend, zap.Strings("flags", c.ignored))
	}

	var backend election.Backend
	switch c.backend {
	case "memory":
		backend = election.NewMemory()
	case "etcd":
		cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints, DialTimeout: 5 * time.Second, Logger: log.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.WarnLevel))})
		if err != nil {
			return fmt.Errorf("etcd client: %w", err)
		}
		defer cli.Close()
		if backend, err = etcd.New(cli, c.election, etcd.WithTTL(c.ttl), etcd.WithLogger(log)); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	e, err := election.New(backend, c.id, func(leaderCtx context.Context, t election.Term) error {
		// The app does the leader's work; this container only tells it, over HTTP, that it leads.
		<-leaderCtx.Done()
		return nil
	}, election.WithLogger(log), election.WithRegisterer(reg))
	if err != nil {
		return err
	}

	srv, err := lifecycle.NewServer(lifecycle.WithAddr(c.http), lifecycle.WithLogger(log), lifecycle.WithGatherer(reg))
	if err != nil {
		return err
	}
	api := election.NewHandler(e)
	srv.Handle("/leader", api)
	srv.Handle("/resign", api)
	srv.AddStatus(e)
	if err := srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "election", Func: func(context.Context) error {
		select {
		case <-e.Ready():
			return nil
		default:
			return errors.New("leader not known yet")
		}
	}}); err != nil {
		return err
	}

	// The server starts first (probes answer while the elector connects) and stops last.
	var g lifecycle.Group
	g.Logger = log
	if err := g.Add("http", srv); err != nil {
		return err
	}
	// Wrapped so the group does not wait for e.Ready: while etcd is unreachable the elector keeps
	// trying and /readyz says why, instead of the process giving up after a start timeout.
	if err := g.Add("elector", lifecycle.Func(e.Run)); err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-srv.Ready():
			// Readiness is the "election" check's: ready once the leader is known.
			srv.SetState(lifecycle.StateReady)
			if started != nil {
				started(srv.Addr())
			}
		case <-done:
		}
	}()
	err = g.Run(ctx)
	srv.SetState(lifecycle.StateStopped)
	return err
}
