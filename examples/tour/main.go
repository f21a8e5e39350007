// Command tour runs every podblocks pattern in one process on embedded defaults, narrates what
// happens, and prints a summary table. It exits 0 when every act succeeded, within a minute.
//
//	go run ./examples/tour              play the acts and exit
//	go run ./examples/tour -serve ADDR  then keep the pod running, with its hook server (/statusz,
//	                                    probes, metrics) on ADDR, until SIGTERM
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podblocks/podblocks/internal/cmdline"
	"github.com/podblocks/podblocks/lifecycle"
)

// acts are played in this order.
func acts() []act {
	return []act{
		lifecycleAct(),
		sidecarAct(),
		ambassadorAct(),
		shardingAct(),
		adapterAct(),
		electionAct(),
		workqueueAct(),
		scatterAct(),
	}
}

func main() {
	lifecycle.RunAsInit()
	if role := childRole(os.Args); role != "" {
		os.Exit(runChild(role))
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		cmdline.Exit("tour", err)
	}
	code, err := tour(context.Background(), os.Stdout, acts(), o.actTimeout, o.serve)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tour:", err)
	}
	os.Exit(code)
}

type options struct {
	serve      string
	actTimeout time.Duration
}

// parseFlags reads the command line; a mistake is printed on stderr with the usage.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("tour", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.serve, "serve", "", "after the acts, keep running with the hook server on this address")
	fs.DurationVar(&o.actTimeout, "act-timeout", 20*time.Second, "the longest one act may take")
	if err := cmdline.ParseFlags(fs, args); err != nil {
		return o, err
	}
	if o.actTimeout <= 0 {
		return o, cmdline.Usagef("-act-timeout %v: want a positive duration", o.actTimeout)
	}
	return o, nil
}

type outcome struct {
	act    act
	result string
	err    error
	took   time.Duration
}

// tour plays the acts, prints the summary, and with serve != "" runs the kept components behind a
// hook server until SIGTERM or the end of ctx. It returns the exit code.
func tour(ctx context.Context, out io.Writer, acts []act, actTimeout time.Duration, serve string) (int, error) {
	dir, err := os.MkdirTemp("", "podblocks-tour")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	s := &stage{out: out, dir: dir}
	fmt.Fprintf(out, "podblocks tour: %d patterns from \"Design patterns for container-based distributed systems\"\n\n", len(acts))

	start := time.Now()
	var results []outcome
	for i, a := range acts {
		fmt.Fprintf(out, "Act %d: %s (%s)\n", i+1, a.pattern, a.pkg)
		actCtx, cancel := context.WithTimeout(ctx, actTimeout)
		t0 := time.Now()
		res, err := a.run(actCtx, s)
		cancel()
		o := outcome{act: a, result: res, err: err, took: time.Since(t0)}
		if err != nil {
			fmt.Fprintf(out, "    FAILED: %v\n", err)
		}
		results = append(results, o)
		fmt.Fprintln(out)
	}

	failed := 0
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACT\tPATTERN\tPACKAGE\tRESULT\tTIME\tSTATUS")
	for i, o := range results {
		status := "ok"
		res := o.result
		if o.err != nil {
			status, res = "FAILED", o.err.Error()
			failed++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, o.act.pattern, o.act.pkg, oneLine(res), o.took.Round(time.Millisecond), status)
	}
	tw.Flush()
	fmt.Fprintf(out, "\n%d of %d acts succeeded in %v\n", len(results)-failed, len(results), time.Since(start).Round(time.Millisecond))
	code := 0
	if failed > 0 {
		code = 1
	}
	if serve == "" {
		return code, nil
	}
	return code, keepServing(ctx, out, s, serve)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

// keepServing runs the components the acts kept, behind a hook server on addr, until SIGTERM or the
// end of ctx.
func keepServing(ctx context.Context, out io.Writer, s *stage, addr string) error {
	reg := prometheus.NewRegistry()
	app, err := lifecycle.NewApp(lifecycle.WithAddr(addr), lifecycle.WithRegisterer(reg), lifecycle.WithGatherer(reg),
		lifecycle.WithPropagationDelay(0), lifecycle.WithStatusRefresh(5*time.Second), lifecycle.WithVersion("tour"))
	if err != nil {
		return err
	}
	s.mu.Lock()
	kept, providers := s.kept, s.providers
	s.mu.Unlock()
	for i, c := range kept {
		if err := app.Add(fmt.Sprintf("kept-%d", i+1), c); err != nil {
			return err
		}
	}
	for _, p := range providers {
		sp, ok := p.(lifecycle.StatusProvider)
		if ok && !isKept(kept, p) { // App.Add already shows kept components that have a Statusz
			app.Hooks().AddStatus(sp)
		}
	}
	fmt.Fprintf(out, "serving: open http://%s/statusz (SIGTERM to stop)\n", addr)
	return app.Run(ctx)
}

// isKept reports whether p is one of the kept components.
func isKept(kept []component, p any) bool {
	if !reflect.TypeOf(p).Comparable() {
		return false
	}
	for _, c := range kept {
		if reflect.TypeOf(c) == reflect.TypeOf(p) && any(c) == p {
			return true
		}
	}
	return false
}
