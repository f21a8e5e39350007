package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// roundTripKeys are keys a NATS header does not carry unchanged (nats.go trims a value's
// surrounding whitespace and turns CR and LF into spaces; Go's net/textproto, which other NATS
// clients read headers with, refuses other control bytes), and ordinary ones.
var roundTripKeys = []string{
	" pad ", "a\r\nb", "a\nb", "\x01x", "x\x7f", "\x00", "\t", " ", "trail\t", "\tlead",
	"é€", "\xff\xfe", "in side\tok", "plain-key", "wq.k.dots>*",
}

// TestKeyRoundTrip: every key comes back exactly as added, in Item.Key and, after Bury or
// running out of attempts, in DeadItem.Key; adding a key again while its item is in the queue
// returns the same ID.
func TestKeyRoundTrip(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := openQueue(ctx, t, nc, "keys", wqjs.WithMaxAttempts(1), wqjs.WithLeaseDuration(5*time.Second), wqjs.WithFetchBatch(1))
	keyOf := map[string]string{} // ID -> key
	for i, key := range roundTripKeys {
		id, err := q.Add(ctx, []byte{byte(i)}, workqueue.AddOptions{Key: key})
		if err != nil {
			t.Fatalf("Add with key %q: %v", key, err)
		}
		again, err := q.Add(ctx, []byte("dup"), workqueue.AddOptions{Key: key})
		if err != nil || again != id {
			t.Errorf("Add again with key %q = %s, %v; want %s (the item in the queue)", key, again, err, id)
		}
		keyOf[id] = key
	}
	// Lease each once; bury half, nack the others so that their next lease buries them out of
	// attempts.
	for i := range roundTripKeys {
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatalf("Lease %d: %v", i, err)
		}
		want, ok := keyOf[it.ID]
		if !ok {
			t.Fatalf("leased %s, not an added ID", it.ID)
		}
		if it.Key != want {
			t.Errorf("leased %s: key %q, want %q", it.ID, it.Key, want)
		}
		if i%2 == 0 {
			err = q.Bury(ctx, it.Lease, "bury")
		} else {
			err = q.Nack(ctx, it.Lease, 0)
		}
		if err != nil {
			t.Fatalf("settle %s: %v", it.ID, err)
		}
	}
	var dead []workqueue.DeadItem
	for wait := time.Now().Add(20 * time.Second); len(dead) < len(roundTripKeys) && time.Now().Before(wait); {
		lctx, lcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		it, err := q.Lease(lctx)
		lcancel()
		if err == nil {
			t.Fatalf("leased %s (key %q, attempt %d), want it buried out of attempts", it.ID, it.Key, it.Attempt)
		}
		if dead, err = q.Dead(ctx, -1); err != nil {
			t.Fatal(err)
		}
	}
	if len(dead) != len(roundTripKeys) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(roundTripKeys))
	}
	for _, d := range dead {
		if want, ok := keyOf[d.ID]; !ok || d.Key != want {
			t.Errorf("dead letter %s: key %q, want %q", d.ID, d.Key, want)
		}
	}
}

// TestKeyRoom: Add's room for its dead letter is exact for a key carried in base64 as for one
// carried as is (largestAdd), and an item of the largest size Add takes with such a key can be
// buried with a reason longer than MaxReasonLen.
func TestKeyRoom(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := openQueue(ctx, t, nc, "keyRoom", wqjs.WithFetchBatch(1))
	probe := openQueue(ctx, t, nc, "keyRoomProbe")
	limit := int(nc.MaxPayload())
	keys := []string{" pad ", "a\r\nbc", "\x01", "é€"}
	for i, key := range keys {
		n := largestTaken(ctx, t, probe, key, limit, largestAdd(limit, key))
		if want := largestAdd(limit, key); n != want {
			t.Errorf("Add takes up to %d bytes with key %q (max_payload %d), want %d", n, key, limit, want)
		}
		if _, err := q.Add(ctx, pattern(n, byte(i)), workqueue.AddOptions{Key: key}); err != nil {
			t.Fatalf("Add of %d bytes with key %q: %v", n, key, err)
		}
		it, err := q.Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Bury(ctx, it.Lease, strings.Repeat("x", 2*wqjs.MaxReasonLen)); err != nil {
			t.Errorf("Bury of %d bytes with key %q: %v", len(it.Payload), key, err)
		}
	}
	dead, err := q.Dead(ctx, -1)
	if err != nil || len(dead) != len(keys) {
		t.Fatalf("Dead = %d letters, %v; want %d", len(dead), err, len(keys))
	}
	for i, d := range dead {
		if want := largestAdd(limit, keys[i]); d.Key != keys[i] || !bytes.Equal(d.Payload, pattern(want, byte(i))) {
			t.Errorf("dead letter %s: key %q, %d bytes; want key %q, %d bytes", d.ID, d.Key, len(d.Payload), keys[i], want)
		}
	}
}

// TestKeyOldMessage: an item and a dead letter published as the previous version did (the key
// in HeaderKey, whatever it holds) are read with that key.
func TestKeyOldMessage(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := openQueue(ctx, t, nc, "keyOld", wqjs.WithFetchBatch(1))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("wq.keyOld.k.b2xk")
	m.Data = []byte("old")
	m.Header.Set(wqjs.HeaderKey, "old")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if it.Key != "old" || !bytes.Equal(it.Payload, []byte("old")) {
		t.Errorf("leased key %q, payload %q; want old, old", it.Key, it.Payload)
	}
	if err := q.Bury(ctx, it.Lease, "r"); err != nil {
		t.Fatal(err)
	}
	dead, err := q.Dead(ctx, -1)
	if err != nil || len(dead) != 1 || dead[0].Key != "old" {
		t.Fatalf("Dead = %+v, %v; want one letter with key old", dead, err)
	}
}

// TestKeyTooLong: a key of MaxKeyLen bytes, each of which HeaderKeyB64 carries, comes back whole
// from a queue of the longest name (the longest subject); a longer one is refused with ErrInvalid
// before it is sent. It used to be published, and one whose subject passed the server's
// max_control_line made the server close the connection, ending every queue on it.
func TestKeyTooLong(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := openQueue(ctx, t, nc, "keyLong"+strings.Repeat("_", 64-len("keyLong")), wqjs.WithFetchBatch(1))
	longest := strings.Repeat("\x01", wqjs.MaxKeyLen)
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{Key: longest}); err != nil {
		t.Fatalf("Add with a key of MaxKeyLen (%d) bytes: %v", len(longest), err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if it.Key != longest {
		t.Errorf("leased key of %d bytes, want the %d bytes added", len(it.Key), len(longest))
	}
	if err := q.Ack(ctx, it.Lease); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{wqjs.MaxKeyLen + 1, 4096} {
		_, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{Key: strings.Repeat("k", n)})
		if !errors.Is(err, workqueue.ErrInvalid) || !strings.Contains(fmt.Sprint(err), "MaxKeyLen") {
			t.Errorf("Add with a key of %d bytes: %v, want ErrInvalid naming MaxKeyLen", n, err)
		}
	}
	if _, err := q.Add(ctx, []byte("x"), workqueue.AddOptions{Key: "after"}); err != nil || !nc.IsConnected() {
		t.Errorf("Add after the refused ones: %v, connected %v; want it stored on the open connection", err, nc.IsConnected())
	}
}
