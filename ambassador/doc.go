// Package ambassador is the ambassador pattern of "Design patterns for container-based distributed
// systems": a proxy beside the app, on the pod's shared localhost, so the app talks to one local
// address while the ambassador does discovery, load balancing, health checking, retries and
// experiments.
//
// The pieces compose:
//
//   - a Source supplies endpoints: Static (set by hand, the hot-reconfiguration entry point), DNS
//     (A/AAAA or SRV records re-resolved on an interval, as a Kubernetes headless Service has them)
//     or File (a JSON/YAML list, watched);
//   - a Balancer picks one: NewRoundRobin (smooth weighted), NewP2C (power of two choices, least
//     requests), NewRingHash (ketama-style) and NewMaglev; hashing balancers take a key from a
//     KeyFunc (HeaderKey, CookieKey, PathKey, ClientIPKey);
//   - a Cluster joins a Source and a Balancer with active health checks (HealthCheck: TCPCheck,
//     HTTPCheck or a custom Checker), passive outlier detection (Outlier) with growing ejection
//     times and a maximum ejection percentage, a panic threshold and a per-endpoint circuit breaker;
//   - TCPProxy (L4, zero-copy splice on Linux) and HTTPProxy (L7: HTTP/1.1 and h2c, retries within
//     a RetryBudget, per-try timeouts, request Splits to experiment clusters, X-Forwarded-*,
//     upgrade pass-through) serve a listener in front of a Cluster. HTTPProxy retries idempotent
//     requests within the RetryBudget on another endpoint, or on one already tried when every
//     other is at its circuit-breaker limits or unavailable (see Cluster.Acquire); an attempt
//     whose dial failed never reached a backend, so it is retried for any method and not charged
//     to the budget.
//
// Metrics per endpoint (requests, errors, latency, requests in flight, ejections, availability) are
// named podblocks_ambassador_* and carry the labels cluster and endpoint.
//
// # Lifecycle
//
// Constructors validate and start nothing. Cluster, TCPProxy, HTTPProxy, DNS, File and Static
// are components: Run blocks until ctx ends, returns nil then, and returns only after every
// goroutine it started has exited. A proxy runs its clusters. A Cluster has one Run at a time: a
// cluster shared by two proxies is run by whichever starts first, and the other leaves it alone
// while that Run runs; when that Run fails, at start or later, the other returns its error too,
// and when it ends normally (its proxy stopped), the other takes the cluster over and runs it
// itself. Ready is closed once a proxy listens and its clusters have their first endpoint sets;
// it is never closed when Run ends before that.
//
// # Cleanup
//
// When ctx ends, HTTPProxy stops accepting, lets requests in flight finish for up to 10 seconds,
// closes upgraded connections and idle upstream connections. TCPProxy closes its listener and
// every proxied connection. Endpoints removed from a Source drain: requests and connections in
// flight to them finish normally, their idle keep-alive connections are closed.
//
// # Concurrency
//
// Balancers, Clusters and proxies are safe for concurrent use. Balancer.Pick and Cluster.Acquire
// do not allocate. Reconfiguration (Static.Set, HTTPProxy.SetSplits, a changed DNS answer or file)
// swaps immutable snapshots atomically, so requests in flight keep the view they started with.
//
// On Linux, HTTPProxy serves HTTP/1.x requests without a body on event loops (WithEventLoops;
// one per two Ps by default, each on a locked OS thread with its own epoll and upstream
// keep-alive connections), and hands every other request, with its connection, to a goroutine
// per connection; both paths share the retry, balancing, breaker and error code. The loops stop
// with Run.
package ambassador
