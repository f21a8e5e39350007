// Package adapter is the adapter pattern of container-based distributed systems: a container
// next to the application that turns the application's own monitoring, logging and health
// interfaces into the one the rest of the system expects. Its subpackages are the blocks:
//
//   - adapter/statsd: statsd (UDP, TCP, unixgram; DogStatsD, InfluxDB, Librato and SignalFX tags)
//     to Prometheus, reading statsd_exporter's mapping config as-is.
//   - adapter/scrape: scrape-and-transform probes (JSON documents by path, redis INFO) exposed as
//     Prometheus metrics, with json_exporter-style /probe?target=.
//   - adapter/logs: a log normalizer (regex with named groups, logfmt, JSON, common and combined
//     log format) writing structured JSON through zap.
//   - adapter/health: health checks (exec, TCP, HTTP, gRPC health, redis PING) exposed as
//     Kubernetes-style /livez and /readyz.
//
// # Lifecycle
//
// Every long-lived block is a component: its constructor validates and starts nothing, and
// Run(ctx) serves until ctx ends, returning nil then, and only after its goroutines exited.
//
// # Cleanup
//
// Cancelling the context passed to Run closes every listener and connection the block opened
// and removes the unix socket files it created.
//
// # Concurrency
//
// The blocks' exported methods are safe for concurrent use unless their documentation says
// otherwise (parsers, which are per-goroutine values, say so).
package adapter
