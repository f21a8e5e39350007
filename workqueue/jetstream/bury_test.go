package jetstream_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/podblocks/podblocks/workqueue"
	wqjs "github.com/podblocks/podblocks/workqueue/jetstream"
)

// largestAdd is the largest payload Add takes with key under a max_payload of limit, as Add
// documents it: limit-1159, and 10 bytes and the key's length less with a key a header carries as
// is, 14 bytes and the length of its base64 less with another.
func largestAdd(limit int, key string) int {
	switch {
	case key == "":
		return limit - 1159
	case keyAsIs(key):
		return limit - 1169 - len(key)
	default:
		return limit - 1173 - base64.RawURLEncoding.EncodedLen(len(key))
	}
}

// keyAsIs reports whether a NATS header carries key unchanged, as Add documents it: every byte a
// tab, 0x20-0x7e or 0x80 and above, and no space or tab first or last.
func keyAsIs(key string) bool {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c != '\t' && (c < 0x20 || c == 0x7f) {
			return false
		}
	}
	return strings.Trim(key, " \t") == key
}

// largestTaken finds the largest payload q.Add takes with key, below max_payload limit: it
// checks that Add refuses every larger one with ErrTooLarge.
func largestTaken(ctx context.Context, t *testing.T, q *wqjs.Queue, key string, limit, guess int) int {
	t.Helper()
	takes := func(n int) bool {
		_, err := q.Add(ctx, make([]byte, n), workqueue.AddOptions{Key: key})
		if err != nil && !errors.Is(err, workqueue.ErrTooLarge) {
			t.Fatalf("Add of %d bytes with key %q (max_payload %d): %v, want nil or ErrTooLarge", n, key, limit, err)
		}
		return err == nil
	}
	// Add's acceptance is monotonic in n: when it takes guess bytes and refuses one more, guess is
	// the answer, for two Adds; the search below (some forty 1 MB Adds) runs only when it is not.
	if takes(guess) && !takes(guess+1) {
		return guess
	}
	lo, hi := limit-64<<10, limit+1 // Add takes lo bytes and refuses hi
	if !takes(lo) || takes(hi) {
		t.Fatalf("Add with key %q (max_payload %d): takes %d bytes %v, takes %d bytes %v; want true, false",
			key, limit, lo, takes(lo), hi, takes(hi))
	}
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; takes(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// pattern is n bytes that differ from one payload to the next (seed) and along it.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i%251)
	}
	return b
}

// checkCut checks that got is reason cut as MaxReasonLen documents it to at most n bytes: valid
// UTF-8 (reason is), a prefix of reason marked with "...".
func checkCut(t *testing.T, what, reason, got string, n int) {
	t.Helper()
	head, cut := strings.CutSuffix(got, "...")
	if !cut || head == "" || !strings.HasPrefix(reason, head) || len(got) > n || !utf8.ValidString(got) {
		t.Errorf("%s: reason %q (%d bytes), want a valid UTF-8 prefix of the %d-byte reason ending in \"...\", %d bytes at most",
			what, got, len(got), len(reason), n)
	}
}

// TestBuryLargest: an item of the largest size Add takes (as documented; a byte more is refused
// with ErrTooLarge) can always be buried, by Bury with a reason longer than MaxReasonLen (cut to
// it, at a rune boundary) and by running out of attempts, and its dead letter keeps its payload
// whole.
func TestBuryLargest(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := openQueue(ctx, t, nc, "buryLargest", wqjs.WithMaxAttempts(1), wqjs.WithLeaseDuration(2*time.Second), wqjs.WithFetchBatch(1))
	probe := openQueue(ctx, t, nc, "buryProbe")
	limit := int(nc.MaxPayload())
	keyedN, plainN := largestTaken(ctx, t, probe, "k1", limit, largestAdd(limit, "k1")), largestTaken(ctx, t, probe, "", limit, largestAdd(limit, ""))
	if want := largestAdd(limit, "k1"); keyedN != want {
		t.Errorf("Add takes up to %d bytes with key k1 (max_payload %d), want %d as documented", keyedN, limit, want)
	}
	if want := largestAdd(limit, ""); plainN != want {
		t.Errorf("Add takes up to %d bytes without a key (max_payload %d), want %d as documented", plainN, limit, want)
	}
	keyed, plain := pattern(keyedN, 1), pattern(plainN, 2)
	keyedID, err := q.Add(ctx, keyed, workqueue.AddOptions{Key: "k1"})
	if err != nil {
		t.Fatalf("Add of %d bytes with key k1 (max_payload %d): %v, want it stored", len(keyed), limit, err)
	}
	plainID, err := q.Add(ctx, plain, workqueue.AddOptions{})
	if err != nil {
		t.Fatalf("Add of %d bytes (max_payload %d): %v, want it stored", len(plain), limit, err)
	}

	// Bury with a reason of 2-byte runes, longer than MaxReasonLen, whose cut falls inside a rune.
	reason := "bad item: " + strings.Repeat("é", wqjs.MaxReasonLen)
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if it.ID != keyedID || !bytes.Equal(it.Payload, keyed) {
		t.Fatalf("leased %s with %d bytes, want %s with its %d bytes", it.ID, len(it.Payload), keyedID, len(keyed))
	}
	if err := q.Bury(ctx, it.Lease, reason); err != nil {
		t.Errorf("Bury of %s: %v", it.ID, err)
	}

	// Out of attempts: lease, nack, and let the next Lease bury it.
	it, err = q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if it.ID != plainID {
		t.Fatalf("leased %s, want %s", it.ID, plainID)
	}
	if err := q.Nack(ctx, it.Lease, 0); err != nil {
		t.Fatal(err)
	}
	var dead []workqueue.DeadItem
	for wait := time.Now().Add(15 * time.Second); len(dead) < 2 && time.Now().Before(wait); {
		lctx, lcancel := context.WithTimeout(ctx, time.Second)
		it, err := q.Lease(lctx)
		lcancel()
		if err == nil {
			t.Fatalf("leased %s (attempt %d), want it buried out of attempts", it.ID, it.Attempt)
		}
		if dead, err = q.Dead(ctx, 10); err != nil {
			t.Fatal(err)
		}
	}
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2: %s buried and %s out of attempts", len(dead), keyedID, plainID)
	}
	for i, want := range []workqueue.DeadItem{
		{ID: keyedID, Key: "k1", Payload: keyed, Attempts: 1},
		{ID: plainID, Payload: plain, Attempts: 1, Reason: "max attempts (1) used"},
	} {
		got := dead[i]
		if got.ID != want.ID || got.Key != want.Key || got.Attempts != want.Attempts || !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("dead letter %d: ID %s, key %q, attempts %d, %d bytes; want ID %s, key %q, attempts %d, its %d bytes",
				i, got.ID, got.Key, got.Attempts, len(got.Payload), want.ID, want.Key, want.Attempts, len(want.Payload))
		}
		if want.Reason != "" && got.Reason != want.Reason {
			t.Errorf("dead letter %d: reason %q, want %q", i, got.Reason, want.Reason)
		}
	}
	checkCut(t, "dead letter 0", reason, dead[0].Reason, wqjs.MaxReasonLen)
}

// TestBuryWithLessRoom: an item with less room under max_payload than Add leaves (one added by
// an older version, published here as it did) is still buried, its reason cut to what room is left.
func TestBuryWithLessRoom(t *testing.T) {
	nc := startConn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := wqjs.Open(ctx, nc, "buryOld")
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// 200 bytes of room: enough for the dead letter's other headers and a reason of some bytes.
	payload := pattern(int(nc.MaxPayload())-200, 3)
	if _, err := js.Publish(ctx, "wq.buryOld.u.old", payload); err != nil {
		t.Fatal(err)
	}
	it, err := q.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reason := strings.Repeat("too old ", 100)
	if err := q.Bury(ctx, it.Lease, reason); err != nil {
		t.Fatalf("Bury of %d bytes: %v", len(it.Payload), err)
	}
	dead, err := q.Dead(ctx, 10)
	if err != nil || len(dead) != 1 || !bytes.Equal(dead[0].Payload, payload) {
		t.Fatalf("Dead = %d letters, %v; want the item with its %d bytes", len(dead), err, len(payload))
	}
	checkCut(t, "dead letter", reason, dead[0].Reason, 200)
}
