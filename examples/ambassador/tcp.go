package main

import (
	"flag"
	"os"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/prometheus/client_golang/prometheus"
)

func runTCP(args []string) error {
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
	return serve(&f, p, cluster, reg, os.Stdout)
}
