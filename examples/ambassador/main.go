// Command ambassador is podblocks' ambassador sidecar: the app talks to one local address and the
// ambassador shards, balances and health-checks the real servers.
//
//	ambassador -c nutcracker.yml [-s STATS_PORT] [-t]      twemproxy-compatible sharding proxy
//	ambassador http -listen ADDR -backends URL,URL [-balancer rr|p2c|ring]
//	ambassador tcp -listen ADDR -backends HOST:PORT,...
package main

import (
	"os"

	"github.com/podblocks/podblocks/internal/cmdline"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "http":
		err = runHTTP(os.Args[2:]) // http.go
	case len(os.Args) > 1 && os.Args[1] == "tcp":
		err = runTCP(os.Args[2:]) // tcp.go
	default:
		var code int
		code, err = runNutcracker(os.Args[1:]) // nutcracker.go
		if err == nil {
			os.Exit(code)
		}
	}
	cmdline.Exit("ambassador", err) // the http and tcp subcommands' -h exits 0, a bad flag 2
}
