package jetstream

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// FuzzAckSeqs checks the hand-written reply-subject parser against nats.go's own metadata parser:
// whatever ackSeqs accepts, nats.go must accept too, with the same delivery count and stream
// sequence.
func FuzzAckSeqs(f *testing.F) {
	for _, s := range []string{
		"$JS.ACK.WQ_a.workers.3.1207.1300.1732600000000000000.42",
		"$JS.ACK._.ABCHASH.WQ_a.workers.1.18446744073709551.5.1732600000000000000.0.XyZ",
		"$JS.ACK.hub.ABCHASH.WQ_a.workers.12.9.5.1732600000000000000.0",
		"$JS.ACK.WQ_a.workers.x.1207.1300.1.0",
		"$JS.ACK.WQ_a.workers.3..1300.1.0",
		"$JS.ACK....",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		d, s, ok := ackSeqs(reply)
		if !ok {
			return
		}
		md, err := (&nats.Msg{Reply: reply, Sub: &nats.Subscription{}}).Metadata() // Sub: nats.go wants one bound
		if err != nil {
			t.Fatalf("ackSeqs(%q) = %d, %d, ok; nats.go: %v", reply, d, s, err)
		}
		if md.NumDelivered != d || md.Sequence.Stream != s {
			t.Fatalf("ackSeqs(%q) = %d, %d; nats.go: delivered %d, stream seq %d", reply, d, s, md.NumDelivered, md.Sequence.Stream)
		}
	})
}
