// Package etcd is an election.Backend on an etcd cluster (servers 3.4 and later), through
// go.etcd.io/etcd/client/v3.
//
// Each candidate's key lives under "<prefix><election name>/", attached to a lease with the
// configured TTL; the candidate whose key has the lowest creation revision leads, and that
// revision is the term's fencing token. Unlike the client's concurrency package, a Campaign whose
// lease expires while waiting returns election.ErrLeaseLost instead of blocking, Observe reports
// "no leader", and each lease reports the local monotonic instant up to which renewal is confirmed,
// so an Elector steps down before the server can elect someone else.
//
// # Lifecycle
//
// New validates and starts nothing. Each Campaign starts one goroutine that renews the lease and,
// once the candidate's key is put, one that watches that key (deleted or written by anyone else:
// the lease is lost), both until Release (which the Elector always calls at the end of a term).
// Observe watches the election's keys and reads the leader every TTL/3; a leader no read has
// confirmed for a TTL is reported as "no leader" until the cluster answers again.
//
// # Cleanup
//
// Release stops the lease's goroutines, waits for them, and revokes the lease; after a failed
// revoke, calling it again revokes again. A Campaign that fails revokes its lease; if it cannot,
// it returns an election.UnreleasedError carrying the lease, which the Elector releases again. The Backend does not close the client it was given.
//
// # Concurrency
//
// A Backend is safe for concurrent use by any number of candidates and observers.
package etcd
