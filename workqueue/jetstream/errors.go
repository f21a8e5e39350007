package jetstream

import "errors"

// ErrConsumerGone is the error (wrapped) of a Lease whose queue's consumer, or its stream, no
// longer exists: deleted while the Lease's pull waited (409 Consumer Deleted), or not found by the
// server when pulls got no answer (503). The queue cannot lease until the consumer is made again,
// as Open does.
var ErrConsumerGone = errors.New("jetstream: consumer gone")
