// Command syncer is a content-sync sidecar: it keeps ROOT/current pointing at the latest content of a
// git repository (-repo, fetched with the git binary) or of a tar/tar.gz archive URL (-url), swapping
// the symlink atomically, and after each publish (and once at startup for content already there)
// runs its hooks in order, each retried until it succeeds: -exec commands first, then -webhook URLs.
//
//	syncer -root /srv/www -repo https://example.com/site.git -ref main -interval 1m \
//	    -webhook http://127.0.0.1:8080/-/reload -http 127.0.0.1:9090
//
// A sync also happens on SIGHUP and on POST /sync to -http (GET /sync reports the version). GET
// /readyz on -http answers 200 once content is published (by this run, or found at start from an
// earlier one), 503 before. -metrics ADDR serves the Syncer's metrics (podblocks_sidecar_syncer_*)
// at http://ADDR/metrics. SIGTERM or SIGINT stops it.
//
// -repo runs the git binary, and -exec runs its commands with sh -c: each needs its binary in
// PATH, checked at start (exit 2 without it). The container image, FROM scratch, has neither:
// it syncs -url archives and calls -webhook hooks only. An -exec command runs in a process group of
// its own: once the shell exits, what it left running in the background is killed, and its run is
// done; on stop the whole group is killed. git runs in a group of its own too, so that a transport
// that hangs is killed with git when the syncer stops.
//
// The published files are 0644, or 0755 when executable in the archive, and directories 0755, less
// the umask, whatever other modes an archive holds (git records no others; a ConfigMap volume's
// defaultMode is 0644 too): the application reading them usually runs as another user. Each fetch
// goes into a directory -root/.fetch-<random>; one left by a syncer killed mid-fetch is removed at
// a later start, once no fetch holds it locked and it was not modified for 10 minutes (a fetch on
// another node of a network volume is not always seen by the lock: see below). A fetch whose
// directory was removed meanwhile fails and is retried; it never publishes part of the content.
//
// One syncer per -root: a running syncer holds -root/.podblocks-syncer.lock (flock, released when
// it dies), and a second one on the same root, whatever its -link, exits 1 naming the holder (pid,
// host name) instead of pruning the first one's revisions. A lock file it may not write (left by
// another user) or on a read-only root is locked read-only, and the holder is not written then; on
// a read-only root without a lock file it runs unlocked, with a warning, serving what is published.
// On NFS, Linux turns flock into a whole-file fcntl lock the server sees, so a syncer on another
// node is refused too, unless the volume is mounted with local_lock=flock, local_lock=all or
// nolock, where the lock is local to each node.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/sidecar"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

func main() {
	// First thing: until it is caught, a SIGHUP (a sync asked for early) would kill the syncer.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	lifecycle.RunAsInit() // as PID 1: reap what the children leave, pass signals on
	cmdline.Exit("syncer", run(os.Args[1:], os.Stderr, hup))
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

// run runs the syncer; hup delivers the SIGHUPs that ask for a sync.
func run(args []string, stderr io.Writer, hup <-chan os.Signal) error {
	fs := flag.NewFlagSet("syncer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", "", "directory holding the published revisions and the link")
	repo := fs.String("repo", "", "git repository (URL or path) to sync")
	ref := fs.String("ref", "HEAD", "git branch, tag or commit")
	archive := fs.String("url", "", "tar or tar.gz archive URL to sync (instead of -repo)")
	link := fs.String("link", "current", "name of the published symlink under -root")
	interval := fs.Duration("interval", time.Minute, "sync period (0: only at start, on SIGHUP and POST /sync)")
	addr := fs.String("http", "", "listen address for POST/GET /sync and GET /readyz (empty: none)")
	metrics := fs.String("metrics", "", "listen address for GET /metrics (podblocks_sidecar_syncer_*), such as 127.0.0.1:9104 (empty: none)")
	var execs, hooks list
	fs.Var(&execs, "exec", "command run (by sh -c) after each publish; repeatable, run in order")
	fs.Var(&hooks, "webhook", "URL POSTed after each publish (after -exec); repeatable, run in order")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	if *root == "" || (*repo == "") == (*archive == "") {
		return cmdline.Usagef("want -root and exactly one of -repo and -url")
	}
	if err := cmdline.OnlyWith(fs, *repo != "", "-repo", "ref"); err != nil {
		return err
	}
	for _, c := range execs {
		if strings.TrimSpace(c) == "" {
			return cmdline.Usagef("-exec %q: empty command", c)
		}
	}
	for _, a := range []struct{ flag, addr string }{{"-http", *addr}, {"-metrics", *metrics}} {
		if a.addr != "" {
			if err := cmdline.Addr(a.flag, a.addr); err != nil {
				return err
			}
		}
	}
	if *archive != "" {
		if err := cmdline.HTTPURL("-url", *archive); err != nil {
			return err
		}
	}
	for _, u := range hooks {
		if err := cmdline.HTTPURL("-webhook", u); err != nil {
			return err
		}
	}
	if *interval < 0 {
		return cmdline.Usagef("-interval %v: want 0 or more", *interval)
	}
	// Without them every sync, or every hook run, would fail and be retried for as long as it runs.
	for _, b := range []struct {
		need bool
		flag string
		bin  string
	}{{*repo != "", "-repo", "git"}, {len(execs) > 0, "-exec", "sh"}} {
		if !b.need {
			continue
		}
		if _, err := exec.LookPath(b.bin); err != nil {
			return cmdline.Usagef("%s needs the %s binary, which is not in PATH (the syncer image has none: use -url): %w", b.flag, b.bin, err)
		}
	}
	log, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	var src sidecar.Source = &sidecar.HTTPArchiveSource{URL: *archive}
	if *repo != "" {
		src = &sidecar.GitSource{Repo: *repo, Ref: *ref}
	}
	var actions []sidecar.Action
	for _, c := range execs {
		actions = append(actions, sidecar.Exec("sh", "-c", c))
	}
	for _, u := range hooks {
		actions = append(actions, sidecar.Webhook(nil, http.MethodPost, u))
	}
	reg := prometheus.NewRegistry() // served on -metrics
	s, err := sidecar.NewSyncer(*root, src, sidecar.WithInterval(*interval), sidecar.WithLinkName(*link),
		sidecar.WithHooks(actions...), sidecar.WithLogger(log), sidecar.WithRegisterer(reg))
	if ce := (*sidecar.ConfigError)(nil); errors.As(err, &ce) {
		return cmdline.Usagef("%w", err) // a -link it cannot use; the other values are checked above
	} else if err != nil {
		return err
	}
	var servers []server
	if *addr != "" {
		mux := http.NewServeMux()
		mux.Handle("/sync", s)
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			select {
			case <-s.Ready():
				io.WriteString(w, "ok\n")
			default:
				http.Error(w, "no content published yet", http.StatusServiceUnavailable)
			}
		})
		servers = append(servers, server{*addr, mux})
	}
	if *metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4}))
		servers = append(servers, server{*metrics, mux})
	}
	lns := make([]net.Listener, len(servers))
	for i, sv := range servers {
		if lns[i], err = net.Listen("tcp", sv.addr); err != nil {
			for _, ln := range lns[:i] {
				ln.Close()
			}
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Run(ctx) })
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				s.Trigger()
			}
		}
	})
	for i, sv := range servers {
		srv := &http.Server{Handler: http.MaxBytesHandler(sv.handler, 1<<20), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}
		g.Go(func() error {
			if err := srv.Serve(lns[i]); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	return g.Wait()
}

// server is what one listen address serves.
type server struct {
	addr    string
	handler http.Handler
}
