package statsd

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The kernel doubles what SO_RCVBUF(FORCE) asks for; running as root (CI) the forced size passes
// rmem_max, otherwise it is capped there. Either way the buffer must grow past its default.
func TestForceReadBufferGrowsTheSocketBuffer(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	before := rcvbuf(t, conn)
	// Past rmem_max, so that only SO_RCVBUFFORCE can give it.
	want := 2 * rmemMax(t)
	if err := forceReadBuffer(conn, want); err != nil {
		t.Fatal(err)
	}
	after := rcvbuf(t, conn)
	if after <= before {
		t.Fatalf("SO_RCVBUF %d after asking for %d, %d before", after, want, before)
	}
	if syscall.Geteuid() == 0 && after < want {
		t.Fatalf("as root SO_RCVBUFFORCE should pass rmem_max: got %d, asked %d", after, want)
	}
}

func rcvbuf(t *testing.T, conn *net.UDPConn) int {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var gerr error
	rc.Control(func(fd uintptr) { n, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return n
}

func rmemMax(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip("no rmem_max:", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
