// Command logship is a log-shipping sidecar: it follows the files matching -glob on a volume shared
// with the application and ships every line, as one JSON object per line
// ({"file":"...","line":"...","offset":N}), to stdout, a file or an HTTP endpoint.
//
//	logship -glob '/var/log/app/*.log' -state /var/lib/logship/state.json -sink file:/shipped/app.jsonl
//
// With -format raw it writes each line as it was read instead (stdout and file sinks), which makes it
// a drop-in for Kubernetes' streaming sidecar, `tail -n+1 -F FILE` on the sidecar's stdout so that
// `kubectl logs POD -c SIDECAR` shows the application's lines, that also survives rotation by rename
// and restarts without losing or repeating lines:
//
//	logship -glob /var/log/app/app.log -state /var/lib/logship/state.json -format raw
//
// With -splice, raw lines to a pipe (stdout) go in as the file's page-cache pages instead of a copy
// (less CPU per line). Only for append-only logs: the pipe holds the file's pages until its reader
// takes the lines, so an in-place rewrite, a truncation to a non-zero length or a punched hole
// changes lines already shipped and checkpointed.
//
// Rotation by rename is followed (the renamed file is read to its end, also across restarts, and
// rotated files that appeared while logship was down are read oldest first), copytruncate is handled,
// and with the file sink a SIGKILL at any moment neither loses nor duplicates a line: the checkpoint
// records the sink's length with the offsets, and the sink is truncated back to it on start.
// SIGTERM or SIGINT stops it after committing the checkpoint.
//
// -state's directory is created when missing (an emptyDir volume); a checkpoint it cannot write at
// start exits 1. A checkpoint write that fails later is logged as an error (then once a minute
// while it goes on) and counted in podblocks_sidecar_tailer_checkpoint_errors_total, and shipping
// goes on (a restart then ships again the lines since the last commit). -metrics ADDR serves the
// tailer's metrics (podblocks_sidecar_tailer_*) at http://ADDR/metrics, as examples/reloader and
// examples/log-adapter do. A file sink that -glob would follow (it matches a pattern, or is named
// like a rotated sibling of one) is refused: exit 2.
//
// logship runs Go with GOMAXPROCS=1 unless the GOMAXPROCS environment variable is set: its work is
// one reading goroutine and, for JSON, one writing goroutine (raw lines to a pipe are written to it
// by the reading goroutine), and on a small node an idle Go scheduler thread
// spinning for work takes CPU from the application beside it and from the reader of logship's
// output (in bench/sidecar its runs spread far less, and were no slower, than with GOMAXPROCS=2).
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/sidecar"
)

func main() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	cmdline.Exit("logship", run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logship", flag.ContinueOnError)
	fs.SetOutput(stderr)
	glob := fs.String("glob", "", "files to follow, e.g. 'DIR/*.log' (comma-separated for several)")
	state := fs.String("state", "", "checkpoint file (offsets survive restarts); empty: none")
	sinkSpec := fs.String("sink", "stdout", "stdout | file:PATH | http:URL")
	format := fs.String("format", "json", "json (one JSON object per line) | raw (the lines as read, like tail -F; stdout and file sinks)")
	poll := fs.Duration("poll", 500*time.Millisecond, "rescan interval (also the fallback without inotify)")
	maxLine := fs.Int("max-line", 64<<10, "longest line shipped; longer ones are reported and skipped")
	multiline := fs.String("multiline", "", "regexp that starts a record; other lines join the previous one")
	splice := fs.Bool("splice", false, "with -format raw to a pipe: ship lines as the file's page-cache pages (less CPU); only for append-only logs: an in-place rewrite, a truncation to a non-zero length or a punched hole changes lines already shipped")
	verbose := fs.Bool("v", false, "debug logging on stderr")
	metrics := fs.String("metrics", "", "listen address for GET /metrics (podblocks_sidecar_tailer_*), such as 127.0.0.1:9103 (empty: none)")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	if *glob == "" {
		return cmdline.Usagef("-glob is required")
	}
	globs, err := cmdline.List("glob", *glob)
	if err != nil {
		return err
	}
	var sinkOpts []sidecar.Option
	switch *format {
	case "json":
	case "raw":
		if *sinkSpec != "stdout" && !strings.HasPrefix(*sinkSpec, "file:") {
			return cmdline.Usagef("-format raw: only with -sink stdout or file:PATH (the HTTP sink sends JSON lines)")
		}
		sinkOpts = append(sinkOpts, sidecar.WithFormat(sidecar.FormatRaw))
		if *splice {
			sinkOpts = append(sinkOpts, sidecar.WithSpliceFromFile())
		}
	default:
		return cmdline.Usagef("-format %q: want json or raw", *format)
	}
	if *splice && *format != "raw" {
		return cmdline.Usagef("-splice: only with -format raw")
	}
	if *splice && *sinkSpec != "stdout" { // the file sink writes the bytes it is given
		return cmdline.Usagef("-splice: only with -sink stdout")
	}
	if *splice && *multiline != "" { // a joined record is no run of the file's bytes
		return cmdline.Usagef("-splice: not with -multiline")
	}
	if *poll <= 0 {
		return cmdline.Usagef("-poll %v: want more than 0", *poll)
	}
	if *maxLine <= 0 {
		return cmdline.Usagef("-max-line %d: want more than 0", *maxLine)
	}
	if *metrics != "" {
		if err := cmdline.Addr("-metrics", *metrics); err != nil {
			return err
		}
	}
	opts := []sidecar.Option{sidecar.WithPollInterval(*poll), sidecar.WithMaxLineBytes(*maxLine)}
	if *maxLine >= 256<<10 {
		opts = append(opts, sidecar.WithReadChunkBytes(*maxLine*2))
	}
	if *state != "" {
		opts = append(opts, sidecar.WithCheckpoint(*state))
	}
	if *multiline != "" {
		re, err := regexp.Compile(*multiline)
		if err != nil {
			return cmdline.Usagef("-multiline: %w", err)
		}
		opts = append(opts, sidecar.WithMultiline(re, 0))
	}
	cfg := zap.NewProductionConfig()
	cfg.OutputPaths, cfg.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	if *verbose {
		cfg.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	}
	log, err := cfg.Build()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	opts = append(opts, sidecar.WithLogger(log))
	reg := prometheus.NewRegistry() // served on -metrics
	if *metrics != "" {
		opts = append(opts, sidecar.WithRegisterer(reg))
	}

	// The whole command line is checked before the file sink is opened (created): the -glob patterns
	// by a Tailer over a sink that opens nothing, which NewTailer checks as it would the real one.
	kind, rest, _ := strings.Cut(*sinkSpec, ":")
	var sink sidecar.Sink
	switch {
	case *sinkSpec == "stdout":
		sink = sidecar.NewWriterSink(stdout, sinkOpts...)
	case kind == "file" && rest != "":
		sink = sidecar.NewWriterSink(io.Discard, sinkOpts...) // the file is opened below
	case kind == "http" || kind == "https":
		u := rest
		if strings.HasPrefix(rest, "//") { // -sink http://host/path
			u = *sinkSpec
		}
		hsink, err := sidecar.NewHTTPSink(u, sidecar.WithLogger(log))
		if err != nil {
			return cmdline.Usagef("-sink %q: %w", *sinkSpec, err) // a URL it cannot use
		}
		if err := cmdline.HTTPURL("-sink", u); err != nil {
			return err // a port no request can reach, which the sink would retry forever
		}
		sink = hsink
	default:
		return cmdline.Usagef("-sink %q: want stdout, file:PATH or http:URL", *sinkSpec)
	}
	if kind == "file" {
		if g, ok := followed(globs, rest); ok {
			return cmdline.Usagef("-sink %q: the file sink matches -glob %q: logship would ship its own output, again and again", *sinkSpec, g)
		}
	}
	tailer, err := sidecar.NewTailer(globs, sink, opts...)
	if ce := (*sidecar.ConfigError)(nil); errors.As(err, &ce) {
		return cmdline.Usagef("%w", err) // a -glob pattern it cannot follow; the other values are checked above
	} else if err != nil {
		return err
	}
	var web *lifecycle.HTTPServer
	if *metrics != "" {
		// Listening before the file sink is opened: a port in use exits 1 with nothing shipped.
		ln, err := net.Listen("tcp", *metrics)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4}))
		if web, err = lifecycle.NewHTTPServerListener(&http.Server{Handler: mux, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}, ln); err != nil {
			ln.Close()
			return err
		}
	}
	if kind == "file" {
		fsink, err := sidecar.OpenFileSink(rest, sinkOpts...)
		if err != nil {
			return err
		}
		defer fsink.Close()
		if tailer, err = sidecar.NewTailer(globs, fsink, opts...); err != nil {
			return err
		}
	}
	if f, ok := stdout.(*os.File); ok && *sinkSpec == "stdout" {
		growPipe(f)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if web == nil {
		return tailer.Run(ctx)
	}
	var g lifecycle.Group
	if err := g.Add("metrics", web); err != nil {
		return err
	}
	if err := g.Add("tailer", tailer); err != nil { // stopped first, the metrics server after it
		return err
	}
	return g.Run(ctx)
}

// followed reports the pattern of globs under which the Tailer would follow path: a file matching
// it, or named like a rotated sibling of one (PATTERN.* or PATTERN-*, see sidecar.Tailer).
func followed(globs []string, path string) (string, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	for _, g := range globs {
		ga, err := filepath.Abs(g)
		if err != nil || filepath.Dir(ga) != filepath.Dir(abs) {
			continue
		}
		base, name := filepath.Base(ga), filepath.Base(abs)
		for _, p := range []string{base, base + ".*", base + "-*"} {
			if ok, _ := filepath.Match(p, name); ok {
				return g, true
			}
		}
	}
	return "", false
}
