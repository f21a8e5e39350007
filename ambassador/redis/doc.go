// Package redis is the redis RESP protocol for podblocks' sharding ambassador
// (ambassador/twemproxy): a streaming codec for RESP2 requests (and inline commands, forwarded
// as RESP) whose replies, RESP3 types included, are passed through as the server sent them.
//
// # Commands
//
// The proxy forwards every command that nutcracker 0.5.0 forwards, and a few more (EXPIRETIME,
// PEXPIRETIME, SORT_RO, GEORADIUS_RO, GEORADIUSBYMEMBER_RO with one key; EVAL_RO and
// EVALSHA_RO). They are routed so:
//
//   - Commands with one key (GET, SET, HSET, LPUSH, ZADD, BITFIELD, ...) go to the key's server.
//   - MGET, DEL, UNLINK, EXISTS, TOUCH and MSET are split across servers and merged in order
//     (MGET's array in key order, the integers added up, MSET's "+OK").
//   - Commands with several keys go whole to the server of their keys: RPOPLPUSH, LMOVE, SMOVE,
//     COPY, SDIFF, SINTER, SUNION and their STORE forms, PFCOUNT, PFMERGE, ZRANGESTORE,
//     GEOSEARCHSTORE (every key argument); ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE (the destination
//     and the numkeys keys); ZUNION, ZINTER, ZDIFF (the numkeys keys); EVAL, EVALSHA, EVAL_RO
//     and EVALSHA_RO (the numkeys keys; at least one); SORT and GEORADIUS/GEORADIUSBYMEMBER (the key and the keys of
//     their STORE and STOREDIST options). Keep such keys on one server with the pool's hash_tag
//     ("{user:1}:a", "{user:1}:b").
//   - COMMAND and LOLWUT, which have no key, go to the server that an empty key maps to; every
//     server of a pool answers them alike.
//   - PING, ECHO and QUIT are answered by the proxy (QUIT with redis-server's +OK, after the
//     replies to the requests before it, and then the end of the stream; nutcracker 0.5.0 sends
//     no reply to QUIT, only the end of the stream), and so is SELECT: +OK for the pool's
//     redis_db (0 by default), the database the proxy selects on every server connection, and an
//     error naming it for any other. In a pool with redis_auth, clients must AUTH with that
//     password first (the proxy authenticates to the servers itself).
//
// The one difference from nutcracker: where the proxy sees every key of a command and they are on
// different servers, it refuses the command with "-ERR keys of '<command>' are on different
// servers; use hash_tag to keep them on one" and does not run it (each of those servers gets a
// PING); nutcracker runs it on the server of its first key, where the other keys are not. So
// ZUNION, ZINTER and ZDIFF go to their keys' server too, where nutcracker routes them by their
// numkeys argument. SORT's BY and GET patterns name keys the proxy cannot see: they are read on
// the sorted key's server, as with nutcracker.
//
// redis_db: like nutcracker, the proxy sends SELECT on each new server connection when redis_db is
// not 0; unlike nutcracker 0.5.0, which drops the reply unread, it checks it. A server that refuses
// the database (redis_db at or over its "databases") fails the connection, and the requests get
// that error, where nutcracker goes on and reads and writes the keys in database 0. Nutcracker
// closes a client connection that sends SELECT; the proxy answers it as above.
//
// A script (EVAL, ...) with no keys gets "-ERR EVAL needs at least one key to be routed by the
// sharding proxy" (naming the command), and one whose key count redis refuses (not a number,
// negative, more than the arguments) gets redis' error; nutcracker closes the connection for
// both, except where the count is more than the arguments but at least one key is there, which it
// sends to that key's server, which answers with its error.
//
// The commands that nutcracker does not forward either get "-ERR unsupported command" and the
// connection stays usable: those that span the keyspace or the server (KEYS, SCAN, RANDOMKEY,
// FLUSHALL, INFO, CONFIG, SCRIPT, FUNCTION, ...), need connection state (MULTI/EXEC/WATCH,
// SUBSCRIBE, blocking commands such as BLPOP, BLMOVE and BZPOPMIN, HELLO, CLIENT, ...), and
// others such as RENAME, MSETNX, BITOP, MIGRATE, MOVE, OBJECT, FCALL, PUBLISH and the stream
// commands (XADD, ...).
//
// Inline commands (a line of text, as typed into telnet) are split into arguments as redis splits
// them: at blanks, with double quotes (and the escapes \xHH, \n, \r, \t, \b, \a, and a
// backslash before any other character for that character) and single quotes (\' the only escape)
// around arguments with blanks. Like redis, a line with unbalanced quotes, or a closing quote not
// followed by a blank, gets "-ERR Protocol error: unbalanced quotes in request" and one over
// 81910 bytes (its CRLF included) "-ERR Protocol error: too big inline request", and the
// connection is closed. That is the longest line redis-server 7 runs when it comes in one write
// on a new connection: redis refuses a line only when, after one of its reads, it holds more than
// 64 KiB of it without its end, and it reads a new connection 16 KiB, then up to 81910 bytes in
// all. Where redis' reads fall otherwise the two differ: redis refuses a line of more than 64 KiB
// that comes slowly, in pieces, which the proxy runs; and redis may run a longer line after other
// requests, once its buffer has grown (a line of up to 163830 bytes after a PING sent with it),
// which the proxy refuses. A line with a NUL byte, which redis never runs (it waits for more
// until the line is too big), gets a protocol error at once. Nutcracker closes the connection on
// any inline command.
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
