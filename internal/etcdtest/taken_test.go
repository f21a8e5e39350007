package etcdtest

import (
	"net"
	"testing"
	"time"

	"github.com/podblocks/podblocks/internal/freeport"
)

// A port picked free can be taken by another process before etcd binds it (seen in CI: "bind:
// address already in use"). NewCluster then starts again on new ports, at once.
func TestNewClusterRepicksTakenPort(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	picks := 0
	pickAddr = func(t testing.TB) string {
		picks++
		if picks == 1 {
			return held.Addr().String()
		}
		return freeport.TCP(t)
	}
	defer func() { pickAddr = freeport.TCP }()
	start := time.Now()
	c := NewCluster(t, 1)
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("NewCluster took %v: it waited for a taken port instead of picking another", took)
	}
	if got := c.Endpoint(0); got == "http://"+held.Addr().String() {
		t.Fatalf("member listens on the taken address %s", got)
	}
	if picks < 4 {
		t.Fatalf("%d addresses picked; want the two of the first try and two new ones", picks)
	}
}
