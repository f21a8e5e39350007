// Command ambassador is podblocks' ambassador sidecar: the app talks to one local address and the
// ambassador shards, balances and health-checks the real servers.
//
//	ambassador -c nutcracker.yml [-s STATS_PORT] [-t]      twemproxy-compatible sharding proxy
//	ambassador http -listen ADDR -backends URL,URL [-balancer rr|p2c|ring|maglev] [-key path|client-ip|header:NAME|cookie:NAME]
//	                [-health PATH] [-health-interval DUR]
//	ambassador tcp -listen ADDR -backends HOST:PORT,... [-balancer rr|p2c|ring|maglev] [-health-interval DUR]
//
// A backend is HOST:PORT, or for http http://HOST[:PORT], optionally *WEIGHT (1 to 65535: leave a
// backend out to give it no traffic). Ring and maglev hash -key, by default the request path: a
// sidecar's every client is 127.0.0.1, so hashing the client's IP address (-key client-ip, and
// always for tcp) sends all the traffic to one backend, which the command warns about. Every
// backend is checked every -health-interval (2s; at least 100ms, or 0 to turn the checks off), by
// a TCP connect (or, for http with -health PATH, a GET of PATH); one failing 3 checks in a row
// takes no traffic until it passes 2.
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
