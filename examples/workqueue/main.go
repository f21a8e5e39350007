// Command workqueue is the work-queue pattern as a language-neutral sidecar:
//
//	workqueue serve -backend memory|bolt|jetstream [-path FILE] [-nats URL] -http ADDR
//	workqueue enqueue -server URL [-key K] < payload
//	workqueue work -server URL -concurrency N -- CMD ARGS...
//
// serve exposes a queue over HTTP (see workqueue.API); enqueue adds stdin as one item and prints its
// ID (stdin over 64 MiB is refused, exit 1, and nothing is added); work leases items and runs CMD for each with WORK_ITEM_FILE holding the payload and OUTPUT_DIR
// for results: exit 0 acks, non-zero retries (and, after -max-attempts, buries the item). serve
// listens before it opens the queue; until the queue is open (bolt waits for a file another process
// holds, JetStream for its stream), it answers every request, /readyz and /metrics included, 503
// with Retry-After and the reason; a SIGTERM meanwhile ends the wait, and serve exits 0.
//
// serve's probes, on -http, keep Kubernetes' conventions: /healthz answers 200 while the process
// runs; /readyz answers 200 while the queue serves, and 503 while it opens and once a SIGTERM came.
// Then serve keeps serving for -propagation, so that the pod leaves its Service's endpoints before
// the listener closes, and then drains: the requests in flight get 5s to finish.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/workqueue"
	"github.com/podblocks/podblocks/workqueue/bolt"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// main exits as the flag package's commands do (internal/cmdline): 0 on help, 2 on a command line
// it cannot use, 1 on a failure while running.
func main() {
	lifecycle.RunAsInit() // as PID 1: reap what the children leave, pass signals on
	cmdline.Exit("workqueue", run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage:
  workqueue serve -backend memory|bolt|jetstream [-path FILE] [-nats URL] -http ADDR
  workqueue enqueue -server URL [-key K] < payload
  workqueue work -server URL -concurrency N -- CMD ARGS...
`

// run runs the command in args. Help (-h, -help, --help or help instead of a command, or -h after
// one) prints the usage on stderr, as the flag package does, and is not an error (exit 0), as the
// adapters' -h is not.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return cmdline.Usagef("%s", strings.TrimSpace(usage))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "enqueue":
		err = enqueue(ctx, args[1:], stdin, stdout, stderr)
	case "work":
		err = work(ctx, args[1:], stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, usage)
		return nil
	default:
		return cmdline.Usagef("unknown command %q; %s", args[0], strings.TrimSpace(usage))
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // the flag set printed the usage
	}
	return err
}

// newFlagSet is the flag set of subcommand cmd, whose usage line is synopsis; it prints on stderr.
func newFlagSet(cmd, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: workqueue %s %s\n", cmd, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func newLogger(verbose bool) *zap.Logger {
	cfg := zap.NewProductionConfig()
	if !verbose {
		cfg.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	}
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "-backend memory|bolt|jetstream [-path FILE] [-nats URL] -http ADDR", stderr)
	backend := fs.String("backend", "memory", "queue backend: memory, bolt or jetstream")
	path := fs.String("path", "workqueue.db", "bolt: the queue file")
	natsURL := fs.String("nats", nats.DefaultURL, "jetstream: NATS server URL(s), comma-separated")
	name := fs.String("name", "work", "jetstream: queue name (stream WQ_<name>)")
	replicas := fs.Int("replicas", 1, "jetstream: stream replicas")
	addr := fs.String("http", "127.0.0.1:8080", "HTTP listen address for the queue API")
	lease := fs.Duration("lease", 30*time.Second, "lease duration")
	maxAttempts := fs.Int("max-attempts", 0, "bury an item after this many attempts (0: unlimited)")
	source := fs.String("source", "", "also feed the queue from a book-style item source at this URL (GET /api/v1/items)")
	poll := fs.Duration("poll", 5*time.Second, "how often to list the -source")
	verbose := fs.Bool("v", false, "log at info level")
	metricsAddr := fs.String("metrics", "", "serve the queue's Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9090; default: none)")
	propagation := fs.Duration("propagation", 0, "on SIGTERM, answer /readyz 503 and keep serving for this long before the listener closes (so that the pod leaves its Service's endpoints first)")
	if err := cmdline.Parse(fs, args); err != nil {
		return err
	}
	// Checked before anything is opened or served: a bad flag leaves no file behind (bolt) and is
	// named in the error.
	switch {
	case fs.NArg() > 0:
		return cmdline.Usagef("serve: unexpected arguments %q", fs.Args())
	case *backend != "memory" && *backend != "bolt" && *backend != "jetstream":
		return cmdline.Usagef("serve: -backend %q: want memory, bolt or jetstream", *backend)
	case *lease <= 0:
		return cmdline.Usagef("serve: -lease %v: must be positive", *lease)
	case *maxAttempts < 0:
		return cmdline.Usagef("serve: -max-attempts %d: must be 0 (unlimited) or more", *maxAttempts)
	case *replicas < 1:
		return cmdline.Usagef("serve: -replicas %d: must be 1 or more", *replicas)
	case *poll <= 0:
		return cmdline.Usagef("serve: -poll %v: must be positive", *poll)
	case *propagation < 0:
		return cmdline.Usagef("serve: -propagation %v: must be 0 or more", *propagation)
	}
	// A flag the backend or the source does not use is a mistake (a -path for a jetstream queue
	// would otherwise be dropped without a word).
	for _, c := range []struct {
		ok    bool
		with  string
		names []string
	}{
		{*backend == "bolt", "-backend bolt", []string{"path"}},
		{*backend == "jetstream", "-backend jetstream", []string{"nats", "name", "replicas"}},
		{*source != "", "-source", []string{"poll"}},
	} {
		if err := cmdline.OnlyWith(fs, c.ok, c.with, c.names...); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	if err := checkServeValues(*backend, *path, *natsURL, *name, *addr, *metricsAddr, *source); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	// A port in use shows only when listened on: the listeners come before the queue, so that a
	// failed listen leaves nothing behind either (a new bolt file, a JetStream stream).
	ln, err := listen("serve", "http", *addr)
	if err != nil {
		return err
	}
	defer ln.Close() // unless srv.Serve closed it
	var metricsLn net.Listener
	if *metricsAddr != "" {
		if metricsLn, err = listen("serve", "metrics", *metricsAddr); err != nil {
			return err
		}
		defer metricsLn.Close() // unless its server closed it
	}
	log := newLogger(*verbose)
	defer log.Sync()

	// While the queue opens (bolt waits up to its open timeout for a file another process holds,
	// JetStream up to 30s), the listeners answer every request 503 at once, rather than leave
	// connections unanswered; then the gates pass requests on to the API and the metrics. The
	// probes are outside the API's gate: /healthz answers while the process runs, /readyz through
	// a gate of its own, closed again on SIGTERM.
	apiGate, metricsGate, readyGate := newGate("opening the queue"), newGate("opening the queue"), newGate("opening the queue")
	root := http.NewServeMux()
	root.Handle("/", apiGate) // every other path: the API's JSON 404 (503 while the queue opens)
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	root.Handle("GET /readyz", readyGate)
	srv := &http.Server{
		Handler:           root,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      90 * time.Second, // above the API's 60s lease long-poll
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	serving := false
	defer func() {
		if !serving { // the queue, the Source or the API failed: nothing to drain
			srv.Close()
			<-errc
		}
	}()
	if metricsLn != nil {
		stop, err := serveMetrics("serve", metricsLn, metricsGate, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	reg := prometheus.NewRegistry()
	q, closeQueue, err := openQueue(ctx, queueConfig{backend: *backend, path: *path, natsURL: *natsURL, name: *name, replicas: *replicas,
		lease: *lease, maxAttempts: *maxAttempts}, log, reg)
	if err != nil {
		if ctx.Err() != nil { // a SIGTERM while the queue opened: a shutdown, with nothing to drain
			log.Info("stopped while opening the queue", zap.Error(err))
			return nil
		}
		return err
	}
	defer closeQueue()
	var src *workqueue.Source
	if *source != "" {
		src, err = workqueue.NewSource(*source, q, workqueue.WithPollInterval(*poll), workqueue.WithLogger(log),
			workqueue.WithRegisterer(reg))
		if err != nil {
			return fmt.Errorf("serve: -source: %w", err)
		}
	}
	api, err := workqueue.NewAPI(q, workqueue.WithLogger(log), workqueue.WithMaxWait(60*time.Second))
	if err != nil {
		return err
	}
	metricsGate.open(metricsHandler(reg))
	apiGate.open(api)
	readyGate.open(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }))
	serving = true
	fmt.Fprintf(stdout, "serving %s queue on http://%s\n", *backend, ln.Addr())
	srcDone := make(chan error, 1)
	srcCtx, stopSrc := context.WithCancel(ctx)
	defer stopSrc()
	if src != nil {
		go func() { srcDone <- src.Run(srcCtx) }()
	} else {
		srcDone <- nil
	}
	select {
	case err := <-errc:
		stopSrc()
		<-srcDone
		return err
	case <-ctx.Done():
	}
	// Not ready from now on; the API keeps serving for the propagation delay, while the endpoints
	// controllers take the pod out of its Service, and then drains. A second SIGTERM or SIGINT
	// (someone at a terminal) ends the delay at once, as in package lifecycle.
	readyGate.close("shutting down")
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(again)
	t := time.NewTimer(*propagation)
	select {
	case <-t.C:
	case <-again:
		t.Stop()
	case err := <-errc: // Serve failed meanwhile
		t.Stop()
		stopSrc()
		<-srcDone
		return err
	}
	stopSrc()
	<-srcDone
	err = stopServing(srv, api, q, 5*time.Second)
	<-errc
	return err
}

// queueConfig is what serve's flags say of the queue.
type queueConfig struct {
	backend, path, natsURL, name string
	replicas, maxAttempts        int
	lease                        time.Duration
}

// openQueue opens the queue c describes, with its metrics registered with reg, and returns it and
// the func that closes it (and its NATS connection). A bolt file another process holds is waited
// for up to bolt's open timeout, and a JetStream stream up to 30s, unless ctx ends first: the
// error then wraps ctx.Err().
func openQueue(ctx context.Context, c queueConfig, log *zap.Logger, reg prometheus.Registerer) (workqueue.Queue, func(), error) {
	switch c.backend {
	case "bolt":
		b, err := bolt.Open(ctx, c.path, bolt.WithLeaseDuration(c.lease), bolt.WithMaxAttempts(c.maxAttempts), bolt.WithLogger(log),
			bolt.WithRegisterer(reg))
		if err != nil {
			return nil, nil, err
		}
		return b, func() { b.Close() }, nil
	case "jetstream":
		nc, err := nats.Connect(c.natsURL, nats.Name("podblocks-workqueue"), nats.MaxReconnects(-1))
		if err != nil {
			return nil, nil, fmt.Errorf("connect %s: %w", c.natsURL, err)
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		j, err := wqjs.Open(octx, nc, c.name, wqjs.WithLeaseDuration(c.lease), wqjs.WithMaxAttempts(c.maxAttempts), wqjs.WithReplicas(c.replicas),
			wqjs.WithLogger(log), wqjs.WithRegisterer(reg))
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return j, func() { j.Close(); nc.Close() }, nil
	}
	m, err := workqueue.NewMemory(workqueue.WithLeaseDuration(c.lease), workqueue.WithMaxAttempts(c.maxAttempts), workqueue.WithLogger(log),
		workqueue.WithRegisterer(reg))
	if err != nil {
		return nil, nil, err
	}
	return m, func() { m.Close() }, nil
}

// checkServeValues checks the values of serve's flags that name a file, an address or a URL, as
// far as they can be checked without opening or listening on anything: what it refuses is a
// *cmdline.UsageError naming the flag. Those of a backend or a source not used are not checked
// (serve refuses them when given).
func checkServeValues(backend, path, natsURL, name, addr, metricsAddr, source string) error {
	if err := cmdline.Addr("-http", addr); err != nil {
		return err
	}
	if metricsAddr != "" {
		if err := cmdline.Addr("-metrics", metricsAddr); err != nil {
			return err
		}
	}
	if source != "" {
		if err := workqueue.CheckSourceURL(source); err != nil {
			return cmdline.Usagef("-source: %w", err)
		}
	}
	switch backend {
	case "bolt":
		if path == "" {
			return cmdline.Usagef("-path: empty: want the queue file")
		}
	case "jetstream":
		urls, err := cmdline.List("nats", natsURL)
		if err != nil {
			return err
		}
		if len(urls) == 0 {
			return cmdline.Usagef("-nats: empty: want the NATS server URL(s)")
		}
		if err := wqjs.CheckName(name); err != nil {
			return cmdline.Usagef("-name: %w", err)
		}
	}
	return nil
}

// listen listens on addr, the value of flag -name of command cmd, once cmdline.Addr takes it (a
// *cmdline.UsageError otherwise).
func listen(cmd, name, addr string) (net.Listener, error) {
	if err := cmdline.Addr("-"+name, addr); err != nil {
		return nil, cmdline.Usagef("%s: %w", cmd, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: -%s: %w", cmd, name, err)
	}
	return ln, nil
}

// gate is an http.Handler that answers every request 503, with Retry-After and a JSON reason as
// the API's 503s have (a Client takes it for ErrUnavailable, and retries), until open gives it
// the handler to pass requests on to, and again from close on.
type gate struct{ st atomic.Pointer[gateState] }

// gateState is a gate's handler, or if it has none the reason of its 503s.
type gateState struct {
	h      http.Handler
	reason string
}

// newGate returns a gate closed for reason.
func newGate(reason string) *gate {
	g := &gate{}
	g.close(reason)
	return g
}

// open passes the requests from now on to h.
func (g *gate) open(h http.Handler) { g.st.Store(&gateState{h: h}) }

// close answers the requests from now on 503, for reason.
func (g *gate) close(reason string) { g.st.Store(&gateState{reason: reason}) }

// ServeHTTP implements http.Handler.
func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := g.st.Load()
	if st.h != nil {
		st.h.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	json.NewEncoder(w).Encode(map[string]string{"error": "workqueue serve: " + st.reason + "; try again"})
}

// stopServing stops srv, which serves api over q, and then closes q: the HTTP server first, so
// that the acks, nacks and extensions in flight complete (a queue closed under them would refuse
// them, and their items would be done again). StopPolls ends the long-polling leases, so that
// Shutdown need not wait for them; the workers retry until a server is back. Requests still running
// after grace are cut off.
func stopServing(srv *http.Server, api *workqueue.API, q io.Closer, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	api.StopPolls()
	err := srv.Shutdown(ctx)
	if err != nil {
		srv.Close()
	}
	q.Close()
	return err
}

// maxStdin bounds the payload enqueue reads from stdin; a larger one is refused, not cut. (serve
// takes at most 16 MiB, the API's default.)
const maxStdin = 64 << 20

func enqueue(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("enqueue", "-server URL [-key K] < payload", stderr)
	server := fs.String("server", "http://127.0.0.1:8080", "queue server URL")
	key := fs.String("key", "", "dedup key")
	delay := fs.Duration("delay", 0, "not before this delay")
	prio := fs.Int("priority", 0, "priority (higher first)")
	if err := cmdline.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cmdline.Usagef("enqueue: unexpected arguments %q: the payload is read from stdin", fs.Args())
	}
	if *delay < 0 {
		return cmdline.Usagef("enqueue: -delay %v: must be 0 or more", *delay)
	}
	c, err := workqueue.NewClient(*server, &http.Client{Timeout: 30 * time.Second})
	if err != nil { // NewClient only checks the URL
		return cmdline.Usagef("enqueue: -server: %w", err)
	}
	defer c.Close()
	payload, err := io.ReadAll(io.LimitReader(stdin, maxStdin+1))
	if err != nil {
		return fmt.Errorf("enqueue: read stdin: %w", err)
	}
	if len(payload) > maxStdin {
		return fmt.Errorf("enqueue: stdin holds more than %d bytes (64 MiB), enqueue's limit: nothing was added", maxStdin)
	}
	id, err := c.Add(ctx, payload, workqueue.AddOptions{Key: *key, Delay: *delay, Priority: *prio})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}

func work(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("work", "-server URL -concurrency N -- CMD ARGS...", stderr)
	server := fs.String("server", "http://127.0.0.1:8080", "queue server URL")
	conc := fs.Int("concurrency", 1, "items run at once")
	timeout := fs.Duration("timeout", 0, "kill an item's command (and its process group) after this long (0: never)")
	output := fs.String("output", "", "keep results: OUTPUT_DIR is DIR/<item ID>, empty at each attempt; what an earlier run left there is moved to DIR/<item ID>.N (default: a temporary directory per item)")
	maxAttempts := fs.Int("max-attempts", 5, "bury an item whose attempt N failed (0: retry forever)")
	drain := fs.Duration("drain", 30*time.Second, "on SIGTERM, let running items finish for this long, then release them")
	verbose := fs.Bool("v", false, "log at info level (command output included)")
	idle := fs.Duration("exit-when-idle", 0, "exit 0 once the queue has had nothing ready, delayed or leased for this long, so a Job's pods complete (0: run until SIGTERM)")
	metricsAddr := fs.String("metrics", "", "serve the pool's Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9090; default: none)")
	if err := cmdline.Parse(fs, args); err != nil {
		return err
	}
	switch {
	case *idle < 0:
		return cmdline.Usagef("work: -exit-when-idle must be >= 0")
	case *conc < 1:
		return cmdline.Usagef("work: -concurrency %d: must be 1 or more", *conc)
	case *timeout < 0:
		return cmdline.Usagef("work: -timeout %v: must be 0 or more", *timeout)
	case *drain < 0:
		return cmdline.Usagef("work: -drain %v: must be 0 or more", *drain)
	case *maxAttempts < 0:
		return cmdline.Usagef("work: -max-attempts %d: must be 0 or more", *maxAttempts)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return cmdline.Usagef("work: no command after --")
	}
	log := newLogger(*verbose)
	defer log.Sync()
	c, err := workqueue.NewClient(*server, nil)
	if err != nil { // NewClient only checks the URL
		return cmdline.Usagef("work: -server: %w", err)
	}
	defer c.Close()
	opts := []workqueue.ExecOption{workqueue.WithLogger(log.Named("cmd"))}
	if *output != "" {
		opts = append(opts, workqueue.WithOutputRoot(*output))
	}
	w, err := workqueue.NewExecWorker(argv, opts...)
	if errors.Is(err, workqueue.ErrInvalid) { // the command after --: not found, not executable, ...
		return cmdline.Usagef("work: %w", err)
	}
	if err != nil {
		return fmt.Errorf("work: %w", err)
	}
	reg := prometheus.NewRegistry()
	p, err := workqueue.NewPool(c, w, workqueue.WithConcurrency(*conc), workqueue.WithItemTimeout(*timeout),
		workqueue.WithPoolMaxAttempts(*maxAttempts), workqueue.WithDrainTimeout(*drain), workqueue.WithLogger(log),
		workqueue.WithRegisterer(reg))
	if err != nil { // the options come from the flags
		return cmdline.Usagef("work: %w", err)
	}
	if *metricsAddr != "" {
		ln, err := listen("work", "metrics", *metricsAddr)
		if err != nil {
			return err
		}
		stop, err := serveMetrics("work", ln, metricsHandler(reg), log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if *idle > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			exitWhenIdle(ctx, c, *idle, stop)
		}()
		defer func() {
			stop()
			<-watched
		}()
	}
	err = p.Run(ctx)
	cnt := p.Counts()
	log.Info("worker stopped", zap.Int64("acked", cnt.Acked), zap.Int64("retried", cnt.Retried), zap.Int64("buried", cnt.Buried))
	if err != nil && !errors.Is(err, workqueue.ErrClosed) {
		return err
	}
	return nil
}

// metricsHandler serves reg's metrics at /metrics.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// serveMetrics serves h (metricsHandler's, or a gate to it) on ln until stop; cmd names the
// subcommand in its error. The server is lifecycle's, as the other examples' are, with read, write
// and idle timeouts and a header size limit (DESIGN.md: every listener has them).
func serveMetrics(cmd string, ln net.Listener, h http.Handler, log *zap.Logger) (stop func(), err error) {
	srv, err := lifecycle.NewHTTPServerListener(&http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}, ln)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: -metrics: %w", cmd, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(ctx); err != nil {
			log.Warn("metrics server", zap.Error(err))
		}
	}()
	return func() {
		cancel()
		<-done
	}, nil
}

// exitWhenIdle calls stop once q has been empty (nothing ready, delayed or leased, by any worker) for
// idle. It returns when ctx ends.
func exitWhenIdle(ctx context.Context, q workqueue.Queue, idle time.Duration, stop context.CancelFunc) {
	every := min(time.Second, max(idle/4, 10*time.Millisecond))
	t := time.NewTicker(every)
	defer t.Stop()
	var emptySince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := q.Stats(ctx)
		switch {
		case err != nil || st.Depth() > 0:
			emptySince = time.Time{}
		case emptySince.IsZero():
			emptySince = time.Now()
		case time.Since(emptySince) >= idle:
			stop()
			return
		}
	}
}
