package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/internal/cmdline"
)

func runTCP(args []string) error { return runTCPContext(context.Background(), args, os.Stdout) }

func runTCPContext(ctx context.Context, args []string, stdout io.Writer) error {
	return runProxy(ctx, "ambassador tcp", false, args, stdout, func(fs *flag.FlagSet) func() ([]ambassador.Option, error) {
		maxConns := fs.Int("max-conns", 10000, "maximum concurrent client connections")
		return func() ([]ambassador.Option, error) {
			if *maxConns < 1 {
				return nil, cmdline.Usagef("-max-conns %d: want 1 or more", *maxConns)
			}
			return []ambassador.Option{ambassador.WithMaxConns(*maxConns)}, nil
		}
	}, func(listen string, c *ambassador.Cluster, opts ...ambassador.Option) (proxy, error) {
		return ambassador.NewTCPProxy(listen, c, opts...)
	})
}
