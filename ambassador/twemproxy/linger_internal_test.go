package twemproxy

import "testing"

// At most client_connections clients linger at once (any number without the limit): one past them
// is closed at once, so that a pool with the limit holds at most twice as many client sockets.
func TestLingerSlotsBounded(t *testing.T) {
	var l lingerSlots
	for i := range 2 {
		if !l.start(2) {
			t.Fatalf("client %d of 2 may not linger", i)
		}
	}
	if l.start(2) {
		t.Fatal("a third client lingers with client_connections: 2")
	}
	l.done()
	if !l.start(2) {
		t.Fatal("no client may linger after one of 2 was done")
	}
	for i := range 100 {
		if !l.start(0) {
			t.Fatalf("without client_connections, client %d may not linger", i)
		}
	}
}
