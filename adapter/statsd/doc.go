// Package statsd receives statsd lines and exposes them as Prometheus metrics: a drop-in for
// statsd_exporter that reads its mapping config (glob and regex matches, labels from captures,
// match_metric_type, drop, ttl, name, help, scale, histogram and summary options) as-is.
//
// Lines arrive over UDP (read with recvmmsg by several goroutines on a socket with a large
// receive buffer), TCP or a unixgram socket, or through Exporter.Handle. Counters, gauges with
// +/- deltas, timers, histograms, distributions and sets are understood, with sample rates and
// DogStatsD, InfluxDB, Librato and SignalFX tags.
//
// A metric type conflict (a name first seen as a counter and then as a gauge, a counter named
// like a summary's _count, or a name of the adapter's own metrics or of WithReservedNames) is
// counted in podblocks_adapter_statsd_conflicts_total and logged (at warn level at most once a
// second, else at debug level); the sample is dropped and /metrics keeps serving everything else.
// Exporter.Gather never fails.
//
// # Lifecycle
//
// New validates options and starts nothing. Run listens on the configured addresses, closes
// Ready when every listener is up, and serves until its context ends. Handle and Gather work
// without Run.
//
// # Cleanup
//
// When Run's context ends, the listeners and every TCP connection are closed, the unixgram
// socket file is removed, and Run returns after all reader goroutines exited.
//
// # Concurrency
//
// Each reader goroutine parses what it reads, so parsing spreads over cores; the hot path
// allocates nothing for a line whose metric was seen before (a per-reader cache maps the line's
// name and tags to its series) and updates values with atomic operations. Exporter's methods are
// safe for concurrent use; a Parser is not (use one per goroutine).
package statsd
