// Package electiontest helps test code that uses package election: Fake, a backend a test drives by
// hand (grant, revoke, stop renewals), and TestBackend, the conformance suite every
// election.Backend passes (Memory, election/etcd and Fake).
//
// # Lifecycle
//
// A Fake needs no setup or teardown; its zero value is ready. TestBackend runs subtests and
// releases every lease it wins.
//
// # Cleanup
//
// Fake starts no goroutines. TestBackend cancels every Campaign and Observe it starts before it
// returns.
//
// # Concurrency
//
// Fake's methods are safe for concurrent use, also while Electors campaign through it.
package electiontest
