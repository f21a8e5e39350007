// Package redis is the redis RESP protocol for podblocks' sharding ambassador
// (ambassador/twemproxy): a streaming codec for RESP2 requests (and inline commands, forwarded
// as RESP) whose replies, RESP3 types included, are passed through as the server sent them.
//
// Single-key commands are routed by their key; MGET, MSET, DEL, UNLINK, EXISTS and TOUCH are split
// across shards and merged in order (MGET's array in key order, the integers added up, MSET's
// "+OK"); EVAL/EVALSHA are routed by their first key; PING, ECHO, QUIT and SELECT 0 are answered
// by the proxy. In a pool with redis_auth, clients must AUTH with that password first (the proxy
// authenticates to the servers itself, and selects redis_db). Commands that span the keyspace or
// need connection state (KEYS, SCAN, MULTI, SUBSCRIBE, blocking pops, HELLO, ...) get
// "-ERR unsupported command" and the connection stays usable.
//
// Limits: a request is at most Protocol.MaxRequestSize bytes (64 MiB by default) and
// Protocol.MaxArgs arguments; a request over them, or one that is not valid RESP, gets
// "-ERR Protocol error: ..." and that client's connection is closed.
//
// # Lifecycle
//
// Protocol has no lifecycle: it is a value passed to twemproxy.NewServer in twemproxy.Protocols.
//
// # Cleanup
//
// Nothing to clean up.
//
// # Concurrency
//
// A Protocol is safe for concurrent use by any number of connections; it keeps no state.
package redis
