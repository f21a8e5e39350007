package loopback_test

import (
	"io"
	"net"
	"testing"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/loopback"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeEchoesPerConnection(t *testing.T) {
	addr := loopback.Serve(t, func(i int, c net.Conn) { _, _ = io.Copy(c, c) })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
}
