// Package ambassadortest has what tests of the ambassador package and of its users need: real
// HTTP and TCP backends on loopback with programmable latency, failures and closes that record what
// they saw, and TestBalancer, the conformance suite every ambassador.Balancer passes.
//
// # Lifecycle
//
// NewHTTPBackend and NewTCPBackend start listening at once (like httptest.NewServer) and register
// their shutdown with t.Cleanup; Stop and Start take a backend down and up again on the same port.
//
// # Concurrency
//
// Every method is safe for concurrent use.
package ambassadortest
