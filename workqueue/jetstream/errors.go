package jetstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/podblocks/podblocks/workqueue"
)

// ErrConsumerGone is the error (wrapped) of a Lease whose queue's consumer, or its stream, no
// longer exists: deleted while the Lease's pull waited (409 Consumer Deleted), or not found by the
// server when pulls got no answer (503). The queue cannot lease until the consumer is made again,
// as Open does.
var ErrConsumerGone = errors.New("jetstream: consumer gone")

// jsErrClusterNotAvail is the JetStream API's error code for "JetStream system temporarily
// unavailable" (a cluster without a meta leader for the moment).
const jsErrClusterNotAvail jetstream.ErrorCode = 10008

// classify wraps err, the error of a call made under ctx, in a sentinel of workqueue that a
// caller branches on: workqueue.ErrClosed if the connection is closed for good (closedConn), and
// otherwise workqueue.ErrUnavailable if err says that the server could not be reached or did not
// answer, for now (isUnavailable), while ctx is still on, so that the call may be tried again, as
// a workqueue.Pool does. A ctx that ended keeps its error as it is, as workqueue.Client's calls do.
func classify(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case closedConn(err):
		return fmt.Errorf("%w: %w", workqueue.ErrClosed, err)
	case ctx.Err() != nil || !isUnavailable(err):
		return err
	}
	return fmt.Errorf("%w: %w", workqueue.ErrUnavailable, err)
}

// closedConn reports whether err says that the connection is closed, by its owner's Close or
// because nats.go gave up reconnecting, or is draining towards that: no call on it can succeed
// again, so the queue is as good as closed.
func closedConn(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining)
}

// noAnswer reports whether err, of a request that the connection took, says only that its answer
// did not come: the request may have reached the server and been carried out, now or (sent from
// the reconnect buffer) later.
func noAnswer(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrStaleConnection)
}

// isUnavailable reports whether err says that the server could not be reached or did not answer,
// for now: the connection is down and reconnecting (with no reconnect buffer, or a full one, a
// publish fails at once), a request got no answer within its bound (context.DeadlineExceeded from
// the queue's own bound or nats.go's, when the caller's ctx has no deadline) or no responder
// (JetStream not up, as in a failover), or the JetStream cluster is not available for the moment.
// A closed connection (closedConn) is not: no retry on it can succeed.
func isUnavailable(err error) bool {
	var api *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrStaleConnection):
		return true
	case errors.As(err, &api):
		return api.ErrorCode == jsErrClusterNotAvail
	}
	return false
}
