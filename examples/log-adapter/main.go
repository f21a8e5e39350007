// Command log-adapter normalizes an application's log lines into structured JSON (zap): one
// object per line with "time", "level" and "msg", then the line's fields.
//
//	log-adapter -format combined -static source=nginx < access.log
//	log-adapter -format logfmt -rename lvl=level,m=msg -input 'file:/var/log/app/*.log' -state /var/lib/log-adapter/state
//	log-adapter -format regex -regex '^(?P<time>\S+) (?P<level>\w+) (?P<msg>.*)$' -input tcp:127.0.0.1:5170
//
// Inputs: stdin (default), file:GLOB (followed rotation-safely with sidecar.Tailer, -state keeps
// offsets across restarts), tcp:ADDR, udp:ADDR, unix:PATH (stream) and unixgram:PATH (a
// socket file left by a killed log-adapter is replaced, a live one is not; it is removed on exit,
// and PATH.lock, which serializes starters on PATH, is left). Output:
// stdout (default) or file:PATH (appended). A line that cannot be written is an error: with stdin
// log-adapter exits 1; with file: it logs the error to stderr and retries, keeping its position
// before the line; within one run no line is written twice, but a restart while the output fails
// may write again lines of the failed batch (at-least-once across restarts). -metrics ADDR serves its metrics (write errors, lines) at /metrics. SIGTERM and
// SIGINT stop it; with stdin it stops at EOF.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/podblocks/podblocks/adapter/logs"
	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/internal/unixsock"
	"github.com/podblocks/podblocks/lifecycle"
	"github.com/podblocks/podblocks/sidecar"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cmdline.Exit("log-adapter", run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func pairs(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	for p := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", p)
		}
		m[k] = v
	}
	return m, nil
}

// parseLevel reads the level name v of flag (zap's names; "", which zap reads as info, is refused).
func parseLevel(flag, v string) (zapcore.Level, error) {
	l, err := zapcore.ParseLevel(v)
	if err != nil || v == "" {
		return l, cmdline.Usagef("%s: level %q: want debug, info, warn, error or fatal", flag, v)
	}
	return l, nil
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("log-adapter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "logfmt", "input format: logfmt, json, regex, clf (common), combined")
	expr := fs.String("regex", "", "regular expression with named groups (-format regex)")
	rename := fs.String("rename", "", "field renames old=new,...")
	levelFields := fs.String("level-field", "", "keys tried for the level, comma-separated (default level,lvl,severity,...)")
	timeFields := fs.String("time-field", "", "keys tried for the time, comma-separated (default time,ts,timestamp,...)")
	msgFields := fs.String("message-field", "", "keys tried for the message, comma-separated (default msg,message,log)")
	timeLayouts := fs.String("time-layout", "", "Go time layouts tried first, separated by '|'")
	levelMap := fs.String("level-map", "", "extra level names name=debug|info|warn|error|fatal,...")
	static := fs.String("static", "", "constant fields key=value,... added to every line (a line's own field of that key becomes orig_KEY)")
	minLevel := fs.String("min-level", "debug", "drop lines below this level")
	input := fs.String("input", "stdin", "stdin, file:GLOB, tcp:ADDR, udp:ADDR, unix:PATH, unixgram:PATH")
	state := fs.String("state", "", "checkpoint file for file: inputs (offsets survive restarts)")
	output := fs.String("output", "stdout", "stdout or file:PATH")
	metricsAddr := fs.String("metrics", "", "serve podblocks_adapter_logs_* and the tailer's metrics at http://ADDR/metrics (\"\": not served)")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return err
	}
	kind, addr, hasAddr := strings.Cut(*input, ":")
	if err := cmdline.OnlyWith(fs, *format == "regex", "-format regex", "regex"); err != nil {
		return err
	}
	if err := cmdline.OnlyWith(fs, kind == "file", "-input file:GLOB", "state"); err != nil {
		return err
	}

	var f logs.Format
	switch *format {
	case "logfmt":
		f = logs.Logfmt{}
	case "json":
		f = logs.JSON{}
	case "clf", "common":
		f = logs.CommonLog{}
	case "combined":
		f = logs.CommonLog{Combined: true}
	case "regex":
		r, err := logs.NewRegex(*expr)
		if err != nil {
			return cmdline.Usagef("-regex: %w", err)
		}
		f = r
	default:
		return cmdline.Usagef("-format %q: want logfmt, json, regex, clf, common or combined", *format)
	}
	var opts []logs.Option
	renames, err := pairs(*rename)
	if err != nil {
		return cmdline.Usagef("-rename: %w", err)
	}
	for k, v := range renames {
		if v == "" {
			return cmdline.Usagef("-rename %s: no new name", k)
		}
	}
	opts = append(opts, logs.WithRename(renames))
	for _, l := range []struct {
		name, value string
		option      func(...string) logs.Option
	}{
		{"level-field", *levelFields, logs.WithLevelFields},
		{"time-field", *timeFields, logs.WithTimeFields},
		{"message-field", *msgFields, logs.WithMessageFields},
	} {
		keys, err := cmdline.List(l.name, l.value)
		if err != nil {
			return err
		}
		if keys != nil {
			opts = append(opts, l.option(keys...))
		}
	}
	if *timeLayouts != "" {
		layouts := strings.Split(*timeLayouts, "|")
		if slices.Contains(layouts, "") {
			return cmdline.Usagef("-time-layout %q: empty layout", *timeLayouts)
		}
		opts = append(opts, logs.WithTimeLayouts(append(layouts, logs.DefaultTimeLayouts...)...))
	}
	lm, err := pairs(*levelMap)
	if err != nil {
		return cmdline.Usagef("-level-map: %w", err)
	}
	levels := map[string]zapcore.Level{}
	for k, v := range lm {
		if levels[k], err = parseLevel("-level-map "+k, v); err != nil {
			return err
		}
	}
	opts = append(opts, logs.WithLevelMap(levels))
	st, err := pairs(*static)
	if err != nil {
		return cmdline.Usagef("-static: %w", err)
	}
	for k, v := range st {
		if slices.Contains(logs.ReservedKeys, k) {
			return cmdline.Usagef("-static %s: the key is the normalizer's (%s)", k, strings.Join(logs.ReservedKeys, ", "))
		}
		opts = append(opts, logs.WithStatic(k, v))
	}
	ml, err := parseLevel("-min-level", *minLevel)
	if err != nil {
		return err
	}
	opts = append(opts, logs.WithMinLevel(ml))
	outPath, toFile := strings.CutPrefix(*output, "file:")
	if (!toFile && *output != "stdout") || (toFile && outPath == "") {
		return cmdline.Usagef("-output %q: want stdout or file:PATH", *output)
	}

	// Diagnostics (a line that cannot be written, ...) go to stderr as JSON.
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.Lock(zapcore.AddSync(stderr)), zapcore.InfoLevel))
	opts = append(opts, logs.WithLogger(log.Named("logs")))

	var reg *prometheus.Registry // nil: no -metrics
	if *metricsAddr != "" {
		if err := cmdline.Addr("-metrics", *metricsAddr); err != nil {
			return err
		}
		reg = prometheus.NewRegistry()
		opts = append(opts, logs.WithRegisterer(reg))
	}

	// Every flag is checked before anything is opened; the Tailer (which opens nothing until it
	// runs) checks the -input glob, and gets its normalizer once that is made.
	stdinOK := kind == "stdin" && !hasAddr
	if !stdinOK && (addr == "" || !slices.Contains([]string{"file", "tcp", "udp", "unix", "unixgram"}, kind)) {
		return cmdline.Usagef("-input %q: want stdin, file:GLOB, tcp:ADDR, udp:ADDR, unix:PATH or unixgram:PATH", *input)
	}
	var tailer *sidecar.Tailer
	var tailed sink
	if kind == "file" {
		topts := []sidecar.Option{sidecar.WithLogger(log.Named("tailer"))}
		if reg != nil {
			topts = append(topts, sidecar.WithRegisterer(reg))
		}
		if *state != "" {
			topts = append(topts, sidecar.WithCheckpoint(*state))
		}
		tailer, err = sidecar.NewTailer([]string{addr}, &tailed, topts...)
		if ce := (*sidecar.ConfigError)(nil); errors.As(err, &ce) {
			return cmdline.Usagef("%w", err)
		} else if err != nil {
			return err
		}
	}

	var out io.Writer = stdout
	if toFile {
		file, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer file.Close()
		out = file
	}
	switch kind {
	case "stdin":
		opts = append(opts, logs.WithReader(stdin))
	case "tcp":
		ln, err := net.Listen(kind, addr)
		if err != nil {
			return err
		}
		opts = append(opts, logs.WithListener(ln))
	case "unix": // a stale socket file (after a SIGKILL) is replaced; closing removes the file
		ln, err := unixsock.Listen(addr)
		if err != nil {
			return err
		}
		opts = append(opts, logs.WithListener(ln))
	case "udp":
		pc, err := net.ListenPacket(kind, addr)
		if err != nil {
			return err
		}
		opts = append(opts, logs.WithPacketConn(pc))
	case "unixgram":
		pc, err := unixsock.ListenPacket(addr)
		if err != nil {
			return err
		}
		opts = append(opts, logs.WithPacketConn(pc))
	}
	n, err := logs.New(f, out, opts...)
	if err != nil {
		return err
	}
	var c lifecycle.Component = n
	if tailer != nil {
		tailed.n = n
		c = tailer
	}
	if reg == nil {
		return c.Run(ctx)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4}))
	web, err := lifecycle.NewHTTPServer(&http.Server{Handler: mux, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}, *metricsAddr)
	if err != nil {
		return err
	}
	var g lifecycle.Group
	if err := g.Add("metrics", web); err != nil {
		return err
	}
	if err := g.Add("logs", c); err != nil { // stops the group when it returns (stdin at EOF)
		return err
	}
	return g.Run(ctx)
}

// sink hands a Tailer's records to the normalizer. A write error fails the batch: the Tailer
// keeps its position before it and retries the batch, whole.
type sink struct {
	n *logs.Normalizer
	// retry is the batch that failed (named by its first record) and how many of its records
	// were written before the error: a retry of it skips those, so that none is written twice
	// within one run. It is kept in memory only: after a restart the Tailer resumes from the
	// batch's start (its -state offset), and those records are written again (at-least-once).
	retry struct {
		file    string
		offset  int64
		written int
	}
}

func (s *sink) Write(ctx context.Context, recs []sidecar.Record) error {
	if len(recs) == 0 {
		return nil
	}
	skip := 0
	if r := s.retry; r.written > 0 && r.file == recs[0].File && r.offset == recs[0].Offset {
		skip = min(r.written, len(recs))
	}
	for i, r := range recs[skip:] {
		if err := s.n.Line(r.Line); errors.Is(err, logs.ErrWrite) {
			s.retry.file, s.retry.offset, s.retry.written = recs[0].File, recs[0].Offset, skip+i
			return err
		}
	}
	s.retry.written = 0
	return nil
}
