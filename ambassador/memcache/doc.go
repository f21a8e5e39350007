// Package memcache is the memcache ASCII protocol for podblocks' sharding ambassador
// (ambassador/twemproxy): a streaming, allocation-conscious codec for get/gets/gat/gats (multi-key,
// split across shards and merged), set/add/replace/append/prepend/cas, delete, incr/decr, touch,
// version and quit, with noreply.
//
// Limits: a get or gets line is at most 1 MiB (memcached reads one of any length: a multi-get of
// many keys; past the proxy's 16 KiB read buffer, only with at most 100 spaces first, as memcached),
// the line of another command the proxy forwards at most 2048 bytes, and of one it answers itself
// (quit, an unknown command, version when Protocol.Version is set) at most 16 KiB. Spaces before a command are skipped, as
// memcached does, and not forwarded. A key is at most 250 bytes without control characters, a value
// at most Protocol.MaxValueSize (1 MiB by default), the reply to one retrieval at most
// Protocol.MaxReplySize (64 MiB by default; a larger one is read and dropped, and answered
// "SERVER_ERROR out of memory writing get response"). An oversized value is swallowed and
// answered "SERVER_ERROR object too large for cache", an unknown command "ERROR", a malformed one
// "CLIENT_ERROR bad command line format"; the connection stays usable, as with memcached. A line
// too long, a corrupt data block or a value over 64 times MaxValueSize (which memcached would read
// and drop) closes that client's connection after an error reply. A command that ends with noreply
// gets no reply at all, as with memcached: not even an error, whether the proxy answers it (an
// oversized value, a malformed command) or its server fails.
//
// "version" is forwarded, as nutcracker 0.5.0 forwards it, to the server an empty key goes to,
// and answered with that server's version (or the pool's error, when it failed); set
// Protocol.Version to have the proxy answer it instead. A "version" with anything but spaces after
// it ("version x", "version noreply", which memcached answers) closes the connection with no reply,
// as nutcracker 0.5.0 closes it (ErrVersionArgs): the client gets the replies to the requests it
// sent before, then the end of the stream.
//
// Only commands memcached parses exactly as the codec does are forwarded: numbers are read as
// memcached's safe_strtol/safe_strtoul/safe_strtoull read them, and a flags, exptime or length
// value past 32 bits (which a 64-bit memcached cuts and a 32-bit one refuses) is answered here as
// malformed. A command memcached would refuse without consuming its data block would have that
// block run as a command, and its reply would reach another client sharing the server connection.
// Where a 64-bit memcached would cut the length to its low 32 bits and read that many bytes (every
// other field passing its checks) while a 32-bit one reads none, no one knows where the client's
// next command starts: the connection is closed after the error reply.
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
package memcache
