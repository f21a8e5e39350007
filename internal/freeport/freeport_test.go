package freeport_test

import (
	"net"
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
