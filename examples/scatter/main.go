// Command scatter is a sharded full-text search over a generated corpus, built on package scatter:
// leaf processes each index one shard of the corpus and answer top-k queries over HTTP; the root
// fans a query out to every shard (hedging across replicas, with a deadline and coverage headers)
// and merges the top k.
//
//	scatter leaf -listen 127.0.0.1:9001 -shard 0 -shards 4 [-docs 20000] [-seed 1] [-slow-prob 0.01 -slow 200ms]
//	scatter root -listen 127.0.0.1:9000 -leaves 'http://127.0.0.1:9001/search|http://127.0.0.1:9011/search,http://...'
//	             [-timeout 200ms] [-coverage 0] [-hedge-percentile 0.95] [-hedge-delay 10ms] [-hedge-budget 0.1]
//	scatter demo [-shards 4] [-replicas 2] [-docs 20000] [-queries 300] [-slow-prob 0.02] [-slow 200ms]
//
// A leaf serves POST /search with {"q": "...", "k": 10} and answers {"hits": [...], "docs": N}.
// The root serves GET /search?q=...&k=10, answers a JSON array of hits (best first) with the
// X-Scatter-Shards, -Answered, -Coverage, -Hedges, -End and -Statuses headers (other methods: 405),
// and /metrics. demo starts shards*replicas leaf processes (this binary, re-executed) and a root,
// runs queries without and with hedging, prints latency percentiles, and stops everything; on
// Linux its leaves die with it also when it is killed.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/internal/pdeathsig"
	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/scatter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	cmdline.Exit("scatter", err)
}

const usage = "usage: scatter leaf|root|demo [flags] (scatter CMD -h for the flags)"

// run runs the command in args. Help (-h, -help, --help or help instead of a command) prints the
// usage on stderr, as the commands' flag sets do, and returns flag.ErrHelp.
func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return cmdline.Usagef(usage)
	}
	switch args[0] {
	case "leaf":
		return runLeaf(ctx, args[1:], out)
	case "root":
		return runRoot(ctx, args[1:], out)
	case "demo":
		return runDemo(ctx, args[1:], out)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(os.Stderr, usage)
		return flag.ErrHelp
	}
	return cmdline.Usagef("unknown command %q; %s", args[0], usage)
}

// serve runs h on addr until ctx ends, printing "listening http://ADDR" once it listens.
func serve(ctx context.Context, addr string, h http.Handler, out io.Writer) error {
	srv, err := lifecycle.NewHTTPServer(&http.Server{Handler: h, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}, addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		fmt.Fprintf(out, "listening http://%s\n", srv.Addr())
	case err := <-errc:
		return err
	}
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	return <-errc
}

func runLeaf(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("leaf", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	shard := fs.Int("shard", 0, "this leaf's shard, in [0, shards)")
	shards := fs.Int("shards", 1, "number of shards")
	docs := fs.Int("docs", 20000, "documents in the whole generated corpus")
	seed := fs.Uint64("seed", 1, "corpus seed (every leaf and replica must use the same)")
	slowProb := fs.Float64("slow-prob", 0, "fraction of queries that take -slow longer (to watch hedging)")
	slow := fs.Duration("slow", 200*time.Millisecond, "extra latency of slow queries")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	if *shards < 1 || *shard < 0 || *shard >= *shards {
		return cmdline.Usagef("leaf: need 0 <= -shard < -shards")
	}
	if err := cmdline.Addr("-listen", *listen); err != nil {
		return fmt.Errorf("leaf: %w", err)
	}
	if err := checkLeaf(*docs, *slowProb, *slow); err != nil {
		return fmt.Errorf("leaf: %w", err)
	}
	ix := buildIndex(generate(*seed, *docs), *shard, *shards)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(*shard)))
	var rmu sync.Mutex // guards rng
	h := &scatter.LeafHandler[query, answer]{MaxBody: 64 << 10, Func: func(ctx context.Context, q query) (answer, error) {
		if q.K <= 0 || q.K > 1000 {
			return answer{}, scatter.BadRequest(errors.New("k must be in [1, 1000]"))
		}
		rmu.Lock()
		isSlow := rng.Float64() < *slowProb
		rmu.Unlock()
		if isSlow {
			t := time.NewTimer(*slow)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return answer{}, ctx.Err()
			}
		}
		return answer{Hits: ix.search(q.Q, q.K), Docs: len(ix.docLen)}, nil
	}}
	mux := http.NewServeMux()
	mux.Handle("/search", h)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	return serve(ctx, *listen, mux, out)
}

// checkLeaf checks the leaf flags that demo passes on to its leaves.
func checkLeaf(docs int, slowProb float64, slow time.Duration) error {
	switch {
	case docs < 1:
		return cmdline.Usagef("-docs %d: want 1 or more", docs)
	case !(slowProb >= 0 && slowProb <= 1):
		return cmdline.Usagef("-slow-prob %v: want 0 to 1", slowProb)
	case slow < 0:
		return cmdline.Usagef("-slow %v: want 0 or more", slow)
	}
	return nil
}

// rootConfig is the root's fan-out configuration, shared by root and demo.
type rootConfig struct {
	timeout, hedgeDelay time.Duration
	coverage, pct, bud  float64
}

func (c rootConfig) register(fs *flag.FlagSet) *rootConfig {
	fs.DurationVar(&c.timeout, "timeout", 200*time.Millisecond, "deadline of one fan-out")
	fs.Float64Var(&c.coverage, "coverage", 0, "answer once this fraction of shards answered (0: wait for all or the deadline)")
	fs.Float64Var(&c.pct, "hedge-percentile", 0.95, "hedge after this percentile of a shard's latency (0: static -hedge-delay)")
	fs.DurationVar(&c.hedgeDelay, "hedge-delay", 10*time.Millisecond, "static hedge delay, and the delay until the percentile is known (0 with percentile 0: no hedging)")
	fs.Float64Var(&c.bud, "hedge-budget", 0.1, "hedges per primary request at most (token bucket; negative: no cap)")
	return &c
}

// check names the flag of a value scatter.New would refuse, or (a -hedge-budget of 0: the library's
// default) read otherwise than it says, or (a negative -coverage) ignore.
func (c *rootConfig) check() error {
	switch {
	case c.timeout < 0:
		return cmdline.Usagef("-timeout %v: want 0 or more", c.timeout)
	case !(c.coverage >= 0 && c.coverage <= 1):
		return cmdline.Usagef("-coverage %v: want 0 to 1", c.coverage)
	case !(c.pct >= 0 && c.pct < 1):
		return cmdline.Usagef("-hedge-percentile %v: want 0 or more, below 1", c.pct)
	case c.hedgeDelay < 0:
		return cmdline.Usagef("-hedge-delay %v: want 0 or more", c.hedgeDelay)
	case c.bud == 0 || math.IsNaN(c.bud):
		return cmdline.Usagef("-hedge-budget %v: want more than 0, or negative for no cap", c.bud)
	}
	return nil
}

func (c *rootConfig) options(log *zap.Logger, reg prometheus.Registerer) []scatter.Option {
	opts := []scatter.Option{scatter.WithTimeout(c.timeout), scatter.WithLogger(log), scatter.WithRegisterer(reg)}
	if c.coverage > 0 {
		opts = append(opts, scatter.WithCoverage(c.coverage))
	}
	if c.pct > 0 || c.hedgeDelay > 0 {
		opts = append(opts, scatter.WithHedge(scatter.Hedge{Percentile: c.pct, Delay: c.hedgeDelay, Budget: c.bud}),
			scatter.WithProbation(scatter.Probation{}))
	}
	return opts
}

func newSearch(spec string, cfg *rootConfig, reg prometheus.Registerer, client *http.Client) (*scatter.Fanout[query, answer, []hit], error) {
	shards, err := scatter.ParseShards(spec)
	if err != nil {
		return nil, err
	}
	leaves, err := scatter.HTTPShards[query, answer](shards, client)
	if err != nil {
		return nil, err
	}
	merge := topK()
	return scatter.New(leaves, merge, cfg.options(zap.NewNop(), reg)...)
}

// topK merges the leaves' hits into the best k; k comes from the query, so the fold keeps up to
// 1000 (the largest k) and the root trims.
func topK() scatter.Merge[answer, []hit] {
	return scatter.TopKMerge(1000, better, func(a answer) []hit { return a.Hits })
}

// decodeQuery reads GET /search?q=...&k=...
func decodeQuery(r *http.Request) (query, error) {
	q := query{Q: r.URL.Query().Get("q"), K: 10}
	if strings.TrimSpace(q.Q) == "" {
		return q, errors.New("missing q")
	}
	if ks := r.URL.Query().Get("k"); ks != "" {
		k, err := strconv.Atoi(ks)
		if err != nil || k < 1 || k > 1000 {
			return q, errors.New("k must be an integer in [1, 1000]")
		}
		q.K = k
	}
	return q, nil
}

// rootHandler serves /search (the merged hits cut to the query's k) and /metrics.
func rootHandler(f *scatter.Fanout[query, answer, []hit], reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	root := &scatter.RootHandler[query, answer, []hit]{Fanout: f, Decode: decodeQuery,
		Encode: func(q query, res *scatter.Result[answer, []hit]) any {
			hits := res.Out
			if len(hits) > q.K {
				hits = hits[:q.K]
			}
			if hits == nil {
				hits = []hit{}
			}
			return hits
		}}
	mux.HandleFunc("/search", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
			io.WriteString(w, `{"error":"use GET /search?q=...&k=..."}`+"\n")
			return
		}
		root.ServeHTTP(w, r)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

func runRoot(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("root", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address to serve on")
	spec := fs.String("leaves", "", "shards: comma separated; replicas of a shard separated by '|'")
	cfg := rootConfig{}.register(fs)
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := cmdline.Addr("-listen", *listen); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if err := cfg.check(); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	reg := prometheus.NewRegistry()
	client := scatter.NewHTTPClient()
	defer client.CloseIdleConnections()
	f, err := newSearch(*spec, cfg, reg, client)
	if err != nil { // everything newSearch is given comes from the flags
		return cmdline.Usagef("root: %w", err)
	}
	defer f.Wait()
	return serve(ctx, *listen, rootHandler(f, reg), out)
}

// startLeaf starts a leaf process and returns its URL once it listens. The leaf gets a
// parent-death signal (Linux): call startLeaf from a goroutine locked to its OS thread that stays
// until the leaf has been waited for (see pdeathsig).
func startLeaf(ctx context.Context, args []string) (*exec.Cmd, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{"leaf", "-listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "SCATTER_EXAMPLE_MAIN=1")
	cmd.Stderr = os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = pdeathsig.Set(nil)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, "", fmt.Errorf("leaf did not start: %w", err)
	}
	go io.Copy(io.Discard, stdout)
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "listening ")), nil
}

func runDemo(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	nshards := fs.Int("shards", 4, "shards")
	replicas := fs.Int("replicas", 2, "replicas per shard (leaf processes: shards*replicas)")
	docs := fs.Int("docs", 20000, "documents in the generated corpus")
	queries := fs.Int("queries", 300, "queries per run")
	slowProb := fs.Float64("slow-prob", 0.02, "fraction of leaf queries that are slow")
	slow := fs.Duration("slow", 200*time.Millisecond, "extra latency of slow leaf queries")
	cfg := rootConfig{}.register(fs)
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	if *nshards < 1 || *replicas < 1 || *queries < 1 {
		return cmdline.Usagef("demo: -shards, -replicas and -queries must be at least 1")
	}
	// Checked before the leaves start: a value they or the root cannot use is the demo's usage error.
	if err := errors.Join(checkLeaf(*docs, *slowProb, *slow), cfg.check()); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	lctx, stopLeaves := context.WithCancel(ctx)
	var leaves sync.WaitGroup
	defer func() {
		stopLeaves()
		leaves.Wait()
	}()
	fmt.Fprintf(out, "starting %d leaf processes (%d shards x %d replicas, %d documents)\n", *nshards**replicas, *nshards, *replicas, *docs)
	type started struct {
		url string
		err error
	}
	n := *nshards * *replicas
	results := make(chan started, n) // leaves start in parallel: each builds its index
	for i := range n {
		leaves.Go(func() {
			// The leaf's parent-death signal fires when the thread that started it ends: this
			// goroutine keeps it, locked, until the leaf has exited, and then lets it end.
			runtime.LockOSThread()
			cmd, url, err := startLeaf(lctx, []string{"-shard", strconv.Itoa(i / *replicas), "-shards", strconv.Itoa(*nshards),
				"-docs", strconv.Itoa(*docs), "-slow-prob", strconv.FormatFloat(*slowProb, 'f', -1, 64), "-slow", slow.String()})
			results <- started{url + "/search#" + strconv.Itoa(i), err}
			if err == nil {
				_ = cmd.Wait()
			}
		})
	}
	urls := make([]string, n)
	var startErr error
	for range n {
		r := <-results
		if r.err != nil {
			startErr = errors.Join(startErr, r.err)
			continue
		}
		u, idx, _ := strings.Cut(r.url, "#")
		i, _ := strconv.Atoi(idx)
		urls[i] = u
	}
	if startErr != nil {
		return startErr
	}
	var spec []string
	for s := range *nshards {
		spec = append(spec, strings.Join(urls[s**replicas:(s+1)**replicas], "|"))
	}
	client := scatter.NewHTTPClient()
	defer client.CloseIdleConnections()

	// The root, over HTTP, for one query.
	reg := prometheus.NewRegistry()
	f, err := newSearch(strings.Join(spec, ","), cfg, reg, client)
	if err != nil {
		return err
	}
	defer f.Wait()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	rsrv, err := lifecycle.NewHTTPServerListener(&http.Server{Handler: rootHandler(f, reg), ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}, ln)
	if err != nil {
		return err
	}
	rctx, stopRoot := context.WithCancel(ctx)
	rdone := make(chan error, 1)
	go func() { rdone <- rsrv.Run(rctx) }()
	defer func() { stopRoot(); <-rdone }()
	<-rsrv.Ready()
	corpus := generate(1, 1)
	q := corpus.vocab[3] + " " + corpus.vocab[40]
	res, err := client.Get("http://" + rsrv.Addr() + "/search?k=3&q=" + strings.ReplaceAll(q, " ", "+"))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Fprintf(out, "GET /search?q=%s&k=3 -> %s, coverage %s (%s of %s shards)\n  %s", q, res.Status,
		res.Header.Get(scatter.HeaderCoverage), res.Header.Get(scatter.HeaderAnswered), res.Header.Get(scatter.HeaderShards), body)

	// Latency with and without hedging, same leaves.
	noHedge := *cfg
	noHedge.pct, noHedge.hedgeDelay = 0, 0
	for _, run := range []struct {
		name string
		cfg  *rootConfig
	}{{"no hedging", &noHedge}, {"hedging", cfg}} {
		f, err := newSearch(strings.Join(spec, ","), run.cfg, nil, client)
		if err != nil {
			return err
		}
		lats, hedges, partial := make([]time.Duration, 0, *queries), 0, 0
		for i := range *queries {
			if ctx.Err() != nil {
				return nil
			}
			start := time.Now()
			res, _ := f.Do(ctx, query{Q: corpus.vocab[i%200] + " " + corpus.vocab[(i*7)%500], K: 10})
			lats = append(lats, time.Since(start))
			hedges += res.Hedges
			if res.Answered < len(res.Slots) {
				partial++
			}
		}
		f.Wait()
		slices.Sort(lats)
		p := func(q float64) time.Duration {
			return lats[min(len(lats)-1, int(q*float64(len(lats))))].Round(10 * time.Microsecond)
		}
		fmt.Fprintf(out, "%-11s %d queries: p50 %v  p90 %v  p99 %v  max %v  hedges %d (%.1f%% of leaf calls)  partial answers %d\n",
			run.name, *queries, p(0.5), p(0.9), p(0.99), lats[len(lats)-1].Round(10*time.Microsecond), hedges,
			100*float64(hedges)/float64(*queries**nshards), partial)
	}
	return nil
}
