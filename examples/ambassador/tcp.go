package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/podblocks/podblocks/ambassador"
)

func runTCP(args []string) error { return runTCPContext(context.Background(), args, os.Stdout) }

func runTCPContext(ctx context.Context, args []string, stdout io.Writer) error {
	return runProxy(ctx, "ambassador tcp", false, args, stdout, func(fs *flag.FlagSet) func() ambassador.Option {
		maxConns := fs.Int("max-conns", 10000, "maximum concurrent client connections")
		return func() ambassador.Option { return ambassador.WithMaxConns(*maxConns) }
	}, func(listen string, c *ambassador.Cluster, opts ...ambassador.Option) (proxy, error) {
		return ambassador.NewTCPProxy(listen, c, opts...)
	})
}
