package freeport_test

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/freeport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAddressesCanBeBound(t *testing.T) {
	ln, err := net.Listen("tcp", freeport.TCP(t))
	if err != nil {
		t.Fatalf("listen on freeport.TCP: %v", err)
	}
	ln.Close()
	pc, err := net.ListenPacket("udp", freeport.UDP(t))
	if err != nil {
		t.Fatalf("listen on freeport.UDP: %v", err)
	}
	pc.Close()
}

// A port in the ephemeral range can be taken between the pick and the bind by the source port of any
// outgoing connection on the machine (other test binaries run in parallel), and that is how an
// embedded etcd member once failed to start in CI. Picks stay below the range, and never repeat.
func TestPicksBelowEphemeralRangeWithoutRepeats(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skipf("no Linux ip_local_port_range: %v", err)
	}
	low, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil || low < 16000 {
		t.Skipf("ephemeral range %q leaves too little room below it", b)
	}
	seen := map[string]bool{}
	for range 300 {
		for _, a := range []string{freeport.TCP(t), freeport.UDP(t)} {
			_, p, _ := net.SplitHostPort(a)
			n, _ := strconv.Atoi(p)
			if n <= 0 || n >= low {
				t.Fatalf("picked %s; want a port in (0, %d)", a, low)
			}
			if seen[a] {
				t.Fatalf("picked %s twice", a)
			}
			seen[a] = true
		}
	}
}

func TestOnRefusesNonZeroPort(t *testing.T) {
	if _, err := freeport.On("127.0.0.1:80"); err == nil {
		t.Fatal("On with a non-zero port succeeded")
	}
}
