package health_test

import (
	"context"
	"fmt"

	"github.com/podblocks/podblocks/adapter/health"
	"github.com/podblocks/podblocks/lifecycle"
)

// Give a container without probes /livez and /readyz: exec a client command for readiness, with
// thresholds, and register the checks on the lifecycle hook server.
func Example() {
	a, err := health.New([]health.Spec{{
		Name:             "mysql",
		Probe:            lifecycle.Readyz,
		Checker:          &health.Exec{Command: []string{"sh", "-c", "exit 0"}}, // e.g. mysql -e 'SELECT 1'
		FailureThreshold: 3,
	}})
	if err != nil {
		panic(err)
	}
	srv, err := lifecycle.NewServer(lifecycle.WithAddr("127.0.0.1:0"))
	if err != nil {
		panic(err)
	}
	if err := a.Register(srv); err != nil {
		panic(err)
	}
	// srv.Run(ctx) would serve /readyz with the mysql check; run it once here.
	fmt.Println(a.Check(context.Background(), "mysql"))
	// Output: <nil>
}
