package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/prometheus/client_golang/prometheus"
)

func runTCP(args []string) error { return runTCPContext(context.Background(), args, os.Stdout) }

func runTCPContext(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ambassador tcp", flag.ContinueOnError)
	var f proxyFlags
	f.register(fs, false)
	maxConns := fs.Int("max-conns", 10000, "maximum concurrent client connections")
	if err := fs.Parse(args); err != nil {
		return err
	}
	eps, err := f.endpoints()
	if err != nil {
		return err
	}
	tuneGC()
	log := newLogger(f.verbose)
	reg := prometheus.NewRegistry()
	opts, err := f.options(log, reg)
	if err != nil {
		return err
	}
	opts = append(opts, ambassador.WithMaxConns(*maxConns))
	cluster, err := ambassador.NewCluster(ambassador.NewStatic(eps...), opts...)
	if err != nil {
		return err
	}
	p, err := ambassador.NewTCPProxy(f.listen, cluster, opts...)
	if err != nil {
		return err
	}
	return serve(ctx, &f, p, cluster, reg, stdout)
}
