package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestServerAcksRedeliveryOnStaleAck pins the server behaviour that doc.go's "Expired leases
// across processes" rests on: an AckSync sent on a delivery whose AckWait ran out, after the
// server delivered the message again, is answered as a good one and acks the new delivery, so a
// client cannot refuse it by its answer or by the delivery count in its reply subject. Should a
// nats-server release refuse such acks, this test fails, and the window doc.go describes can be
// closed.
func TestServerAcksRedeliveryOnStaleAck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(startConn(t))
	if err != nil {
		t.Fatal(err)
	}
	str, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "STALE", Subjects: []string{"stale"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := str.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "stale", []byte("x")); err != nil {
		t.Fatal(err)
	}
	fetch := func() jetstream.Msg {
		t.Helper()
		for ctx.Err() == nil {
			b, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for m := range b.Messages() {
				return m
			}
		}
		t.Fatal("no delivery within a minute")
		return nil
	}
	first := fetch()
	second := fetch() // after first's AckWait
	md, err := second.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if md.NumDelivered != 2 {
		t.Fatalf("second delivery's count %d, want 2", md.NumDelivered)
	}
	if err := first.DoubleAck(ctx); err != nil {
		t.Fatalf("AckSync of the expired first delivery: %v; the server refuses stale acks now: see doc.go", err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	si, err := str.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ci.NumAckPending != 0 || si.State.Msgs != 0 {
		t.Errorf("after the stale ack: %d acks pending, %d messages in the stream; want the second delivery acked (0, 0)",
			ci.NumAckPending, si.State.Msgs)
	}
}
