// Package health is the health adapter: it gives a container that has no probes of its own
// Kubernetes-style ones. Checkers test the application the way an operator would (Exec runs a
// command, TCP connects, HTTP gets a URL, GRPC asks the gRPC health protocol, RedisPing PINGs a
// redis); an Adapter adds thresholds (consecutive failures before unhealthy, successes before
// healthy again) and caching (a background interval), and registers the checks on a lifecycle
// hook server as /livez, /readyz and /startupz checks.
//
// # Lifecycle
//
// New validates and starts nothing. Register adds the checks to a lifecycle.Server before it
// runs; the server runs them (in the background for checks with an Interval). The Adapter has no
// goroutines of its own.
//
// # Cleanup
//
// Close releases checkers that keep connections (GRPC). Exec kills its command when the check's
// context ends.
//
// # Concurrency
//
// Checkers and the Adapter are safe for concurrent use.
package health
