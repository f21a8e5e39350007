package memcache_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/podblocks/podblocks/ambassador/memcache"
)

// TestRefusedCommandDoesNotLeak: memcached refuses a storage command with a number it cannot
// parse and then runs the data block as a command, sending that reply on the server connection.
// Forwarded, the reply would go to the next request waiting on that connection: here another
// client's. The proxy answers such a command itself; the victim, pipelining gets on the one
// server connection, only ever sees its own replies.
func TestRefusedCommandDoesNotLeak(t *testing.T) {
	needMemcached(t)
	addr, _ := startProxy(t, "  server_connections: 1\n", startMemcached(t, 1), &memcache.Protocol{})
	attacker := dial(t, addr)
	attacker.send("set secret 0 0 6\r\nhunter\r\n")
	if got := attacker.reply(); got != "STORED\r\n" {
		t.Fatalf("set secret: %q", got)
	}

	vc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	_ = vc.SetDeadline(time.Now().Add(60 * time.Second))
	stop := make(chan struct{})
	victim := make(chan error, 1)
	go func() {
		br := bufio.NewReader(vc)
		batch := strings.Repeat("get victimkey\r\n", 16)
		for n := 0; ; n++ {
			select {
			case <-stop:
				victim <- nil
				return
			default:
			}
			if _, err := vc.Write([]byte(batch)); err != nil {
				victim <- err
				return
			}
			for range 16 {
				l, err := br.ReadString('\n')
				if err != nil {
					victim <- err
					return
				}
				if l != "END\r\n" {
					victim <- fmt.Errorf("batch %d: the victim's get got %q", n, l)
					return
				}
			}
		}
	}()

	attacks := []string{
		"set x 0 99999999999999999999 10 noreply\r\nget secret\r\n",   // exptime past int64
		"set x 18446744073709551616 0 10 noreply\r\nget secret\r\n",   // flags past 2^64-1
		"cas x 0 0 10 18446744073709551616 noreply\r\nget secret\r\n", // cas unique past 2^64-1
		"set x 0 9223372036854775808 10 noreply\r\nget secret\r\n",    // exptime 2^63
	}
	for range 20 {
		for _, a := range attacks {
			expectOnly(t, attacker, a)
		}
	}
	close(stop)
	if err := <-victim; err != nil {
		t.Error(err)
	}
}
