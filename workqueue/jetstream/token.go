package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podblocks/podblocks/workqueue"
)

// token is what a lease token names: one delivery of the consumer, by its stream sequence (the
// item), its delivery count and its consumer sequence. These make the delivery's ack subject, which
// the server takes acks, naks and progress on from any connection, so that any Queue of the name
// acts on a lease, not only the one that handed it out.
//
// The token is <stream seq>.<delivered>.<consumer seq>.<epoch>.<queue name>, the numbers in
// decimal but the epoch, the consumer's creation time in unix nanoseconds, in base 36: a queue
// refuses a token of another queue name, or of its consumer before it was deleted and made again
// (whose sequences start over). It is at most maxTokenLen bytes.
type token struct{ seq, delivered, dseq uint64 }

// maxTokenLen bounds a token: three numbers of up to 19 digits, a uint64 in base 36 (13 digits), a
// queue name (64) and four dots.
const maxTokenLen = 3*19 + 13 + 64 + 4

// appendToken appends the token of t for this queue to b.
func (q *Queue) appendToken(b []byte, t token) []byte {
	return appendToken(b, t, q.epoch, q.name)
}

func appendToken(b []byte, t token, epoch uint64, name string) []byte {
	b = strconv.AppendUint(b, t.seq, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, t.delivered, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, t.dseq, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, epoch, 36)
	b = append(b, '.')
	return append(b, name...)
}

// parseToken reads a token of this queue; ok is false for anything else.
func (q *Queue) parseToken(s string) (t token, ok bool) {
	t, epoch, name, ok := parseToken(s)
	return t, ok && epoch == q.epoch && name == q.name
}

// parseToken reads a token as appendToken writes it, and nothing else: numbers without leading
// zeros, sequences and counts from 1, a valid queue name, at most maxTokenLen bytes. So a token has
// one spelling, and appendToken of what it returns gives s back.
func parseToken(s string) (t token, epoch uint64, name string, ok bool) {
	if len(s) > maxTokenLen {
		return token{}, 0, "", false
	}
	var parts [4]string
	rest := s
	for i := range parts {
		j := indexDot(rest)
		if j < 0 {
			return token{}, 0, "", false
		}
		parts[i], rest = rest[:j], rest[j+1:]
	}
	var nums [3]uint64
	for i := range nums {
		n, ok := parseNum(parts[i])
		if !ok || n == 0 || parts[i][0] == '0' {
			return token{}, 0, "", false
		}
		nums[i] = n
	}
	e := parts[3]
	if len(e) == 0 || len(e) > 1 && e[0] == '0' {
		return token{}, 0, "", false
	}
	for i := 0; i < len(e); i++ {
		if c := e[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return token{}, 0, "", false
		}
	}
	epoch, err := strconv.ParseUint(e, 36, 64)
	if err != nil || !validName.MatchString(rest) {
		return token{}, 0, "", false
	}
	return token{nums[0], nums[1], nums[2]}, epoch, rest, true
}

// indexDot is strings.IndexByte(s, '.').
func indexDot(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

// fenceAge is how long the fence stream keeps an item's fence after its last redelivery (see
// fence).
const fenceAge = 7 * 24 * time.Hour

// fenceStream is the stream of lease fences of queue name.
func fenceStream(name string) string { return "WQL_" + name }

// fenceSubject is the subject of item seq's fence: one message per item, its latest delivery count.
func (q *Queue) fenceSubject(seq uint64) string {
	b := make([]byte, 0, len(q.fencePrefix)+34)
	b = append(b, q.fencePrefix...)
	b = strconv.AppendUint(b, q.epoch, 36)
	b = append(b, '.')
	return string(strconv.AppendUint(b, seq, 10))
}

// fence records, before a redelivered item is handed out, that its earlier leases are over: the
// server itself takes an ack, a nak or progress of an earlier delivery as one of the current one
// (it looks only at the stream sequence), so a Queue that did not hand a lease out asks the fence
// whether a later delivery has been leased (remote). Only redeliveries pay for it.
func (q *Queue) fence(ctx context.Context, seq, delivered uint64) error {
	_, err := q.js.Publish(ctx, q.fenceSubject(seq), strconv.AppendUint(nil, delivered, 10))
	return err
}

// remote finds a lease this Queue has not handed out (or whose deadline, as it knows it, has
// passed), by asking the server: the item must still be in the stream (an acked or buried one is
// not), and no later delivery of it fenced (fence). It then acts on the lease through its ack
// subject. What is left: between the server's redelivery of an item and the fence its new holder
// records (a round trip), or after a nak or an expiry before the item is leased again, an older
// token still acts on the item; and after fenceAge without a redelivery of an item that stays in
// the stream, a token older than that one is not told apart.
func (q *Queue) remote(ctx context.Context, t token, lease string) (*held, error) {
	raw, err := q.str.GetMsg(ctx, t.seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, workqueue.ErrLeaseLost
	}
	if err != nil {
		return nil, fmt.Errorf("look up lease of %d: %w", t.seq, err)
	}
	f, err := q.fences.GetLastMsgForSubject(ctx, q.fenceSubject(t.seq))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return nil, fmt.Errorf("look up lease fence of %d: %w", t.seq, err)
	default:
		if n, ok := parseNum(string(f.Data)); !ok || n > t.delivered {
			return nil, workqueue.ErrLeaseLost
		}
	}
	attempt := int(t.delivered)
	if raw.Header.Get(HeaderNotBefore) != "" {
		attempt--
	}
	b := make([]byte, 0, len(q.ackPrefix)+3*20+4)
	b = append(b, q.ackPrefix...)
	b = strconv.AppendUint(b, t.delivered, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, t.seq, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, t.dseq, 10)
	b = append(b, ".0.0"...) // the delivery's time and pending count, which the server ignores
	return &held{
		msg:      replyMsg{q.nc, string(b), raw.Data, raw.Header},
		deadline: time.Now().Add(q.cfg.ackWait),
		attempt:  attempt,
		id:       strconv.FormatUint(t.seq, 10),
		key:      getKey(raw.Header),
		tok:      lease,
		dseq:     t.dseq,
		remote:   true,
	}, nil
}

// replyMsg is a delivery known by its ack subject (remote): acks, naks and progress are published
// to it, as nats.Msg's methods do.
type replyMsg struct {
	nc    *nats.Conn
	reply string
	data  []byte
	hdr   nats.Header
}

var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
)

func (r replyMsg) Data() []byte         { return r.data }
func (r replyMsg) Headers() nats.Header { return r.hdr }
func (r replyMsg) Reply() string        { return r.reply }
func (r replyMsg) Ack() error           { return r.nc.Publish(r.reply, ackAck) }
func (r replyMsg) Nak() error           { return r.nc.Publish(r.reply, ackNak) }
func (r replyMsg) InProgress() error    { return r.nc.Publish(r.reply, ackProgress) }

// NakWithDelay naks with a delay, in nats.go's format.
func (r replyMsg) NakWithDelay(d time.Duration) error {
	return r.nc.Publish(r.reply, fmt.Appendf(nil, "%s {\"delay\": %d}", ackNak, d.Nanoseconds()))
}

// DoubleAck acks and waits for the server's confirmation, within ctx's deadline or ackTimeout.
func (r replyMsg) DoubleAck(ctx context.Context) error {
	ctx, cancel := ackContext(ctx)
	defer cancel()
	_, err := r.nc.RequestWithContext(ctx, r.reply, ackAck)
	return err
}
