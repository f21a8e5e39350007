package statsd

import "errors"

// ErrNoListener is returned by Exporter accessors for a listener that is not configured or not
// yet listening.
var ErrNoListener = errors.New("statsd: listener not configured or not started")
