// Package ambassadortest has what tests of the ambassador package and of its users need: real
// HTTP and TCP backends on loopback with programmable latency, failures and closes that record what
// they saw, a real DNS server (A, AAAA, SRV) for DNS discovery, and TestBalancer, the conformance
// suite every ambassador.Balancer passes.
//
// # Lifecycle
//
// NewHTTPBackend, NewTCPBackend and NewDNSServer start listening at once (like
// httptest.NewServer) and register their shutdown with t.Cleanup; Stop and Start take a backend
// down and up again on the same port.
//
// # Cleanup
//
// Everything a constructor starts is stopped by the test's cleanup; Stop is idempotent.
//
// # Concurrency
//
// Every method is safe for concurrent use.
package ambassadortest
