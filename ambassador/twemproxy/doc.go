// Package twemproxy is the heart of podblocks' sharding ambassador: a drop-in for twemproxy
// (nutcracker) that reads nutcracker's YAML configuration as-is and puts every key on the same
// server nutcracker would.
//
// It holds the configuration parser (ReadFile, Parse: every pool directive nutcracker 0.5.0
// documents, plus the extensions no_reshard and health_check_interval; an unknown key is a
// *ConfigError naming the key and its line), twemproxy's twelve key hashes (LookupHash), its
// three distributions with hash_tag, weights and server names (BuildContinuum, Placer), and the
// pool server (Server) that multiplexes many client connections onto server_connections pipelined
// connections per server, splits multi-key requests across shards and merges the replies in order,
// ejects failing servers (auto_eject_hosts, server_failure_limit, server_retry_timeout), and
// serves nutcracker's stats JSON and Prometheus metrics. The wire protocols are in the sibling
// packages memcache and redis.
//
// client_connections, which nutcracker 0.5.0 parses and ignores, is enforced as twemproxy documents
// it, as the most client connections the pool accepts: a connection past it is closed at once,
// counted in PoolStats.ClientRejected and podblocks_sharding_client_rejected_total (not in the stats
// JSON's client_err, which counts the errors of accepted clients), and logged as a warning, at most
// one a second. A client whose stream has ended (after quit, or a request refused) no longer counts,
// also while the proxy still reads what it sends (see below), as nutcracker counts a connection
// against its own limit (of its descriptors) until it closes it, at once; at most
// client_connections such clients are read on at once, and one past them is closed at once.
//
// A request whose server failed gets nutcracker's error reply: the strerror text of the errno
// behind the failure ("-ERR Connection refused", "SERVER_ERROR Connection timed out"; see
// ServerError), also when every server is ejected; the details (the server's address, Go's wording)
// are logged as warnings, at most one a second per server.
//
// Beside nutcracker's counters, the Prometheus metrics (podblocks_sharding_*) hold a histogram of
// each server's response times, podblocks_sharding_server_response_seconds{pool,server}: for each
// reply read from the server, the time from its request's queueing for the server (its append to
// the server connection's output) to the read that brought the reply, so the proxy's write, the
// network and the server, not the client's side. A multi-key request's fragments are observed at
// their servers; failed requests (in forward_errors and server_timeouts) and noreply requests are
// not. It costs the reply path one clock reading per read from the server, not per reply, and a
// count per reply published once per batch: a clock reading and a Prometheus Observe for each reply
// cost about 75 ns a reply here, some 5% of the proxy's CPU per request under redis-benchmark -P16,
// where this costs about 12 ns (BenchmarkResponseTimes).
//
// The stats JSON's curr_connections and total_connections count what nutcracker's do (every struct
// conn in its nc_connection.c): each pool's listener, each client connection, and each server
// connection from its dial on, so that a refused dial adds to the total only. Neither counts the
// stats port's connections nor the health checks' probes (an extension).
//
// Placement is checked against Debian's nutcracker 0.5.0 binary by this package's tests. Where
// twemproxy's releases differ, this package follows 0.5.0: "crc16" is 0.5.0's XMODEM variant.
//
// # Differences from nutcracker
//
// Unsupported commands get an error reply instead of a closed connection. A request the protocol
// refuses by closing the connection (an oversized or malformed one) gets its error reply, then the
// end of the stream, and what the client still sends is read and dropped (up to 64 MiB, for up to
// 2s) before the connection closes: nutcracker, like redis-server, closes it with the rest of the
// request unread, which sends a reset, so that the client's write fails and it may never read the
// reply. So does the end of the stream after memcache "quit" and redis QUIT: nutcracker closes the
// connection after its read, so that what the client sent after the quit and that read did not
// take (more than one read holds, or what came later) resets it. memcache "version" goes to the
// server an empty key goes to, where nutcracker 0.5.0 picks the server by a key it never set (see
// package memcache); a "version" with arguments closes the connection with no reply, as nutcracker
// closes it. Stats are current rather than aggregated every -i interval, and out_queue_bytes is
// not tracked (always 0); "backlog" is parsed but Go listens with the kernel's somaxconn; "random"
// picks a server per request like nutcracker but from Go's generator. The extensions no_reshard
// and health_check_interval are rejected by nutcracker itself. Pool and
// server names in the stats JSON are nutcracker's bytes but for a quote, a backslash or a control
// character, which are escaped: nutcracker writes them raw, and its document is then not JSON; a
// byte that is not UTF-8 (only a Config built in Go can hold one) is written as U+FFFD, and U+2028
// and U+2029 as \u2028 and \u2029, as encoding/json writes them (the same text once decoded). A
// redis pool's SELECT of redis_db on a new server connection must succeed (nutcracker drops the
// reply, and a database the server lacks leaves the keys in database 0); see package redis.
//
// Listen addresses (and the stats address) are bound as nutcracker binds them: on the host's IP
// address, or the first address a name resolves to, with a socket of that address's family. So
// 0.0.0.0 takes the port on IPv4 only, and 0.0.0.0:22121 beside ::1:22121 (or fd00::2:22121, or
// fe80::1%eth0:22121) runs here as under nutcracker: a client of [::1]:22121 reaches the second
// pool, and without it is refused. A name is bound on one address only: localhost, where
// /etc/hosts lists "::1 localhost" (Kubernetes pods do), on ::1, so clients of 127.0.0.1 are
// refused, as under nutcracker; write the address to choose it. :: takes the port on IPv4 and
// IPv6, as nutcracker's does under Linux's default net.ipv6.bindv6only=0; here it does so whatever
// that setting says (Go clears IPV6_V6ONLY on the socket). An empty host,
// which nutcracker refuses, listens as ::. What still differs is -t (and Parse, NewServer and
// Reload): two pools whose listen addresses certainly collide on one port are a *ConfigError,
// where nutcracker -t accepts them and nutcracker then fails to bind the second when it starts:
// 0.0.0.0:22121 beside 127.0.0.2:22121, or :::22121 (::) beside any host on port 22121 (see
// [Server.Reload]).
//
// fragments counts the parts multi-key requests are split into (a request sent whole counts none);
// nutcracker 0.5.0 declares the field but never increments it, so its document always says 0.
//
// Every close of a server connection counts toward server_failure_limit, as in nutcracker, also
// one the server closes while no request is in flight on it: a server that dies while its
// server_connections connections are idle is ejected by their closes before a client request
// fails on it (4 idle connections and server_failure_limit 2 count 4 failures and 2 ejections,
// as Debian's nutcracker 0.5.0 does). A server that closes idle connections on purpose (redis's
// "timeout", memcached's idle_timeout) is counted the same way and can be ejected for it: leave
// those off behind the proxy, as under nutcracker.
// A connection made to a server while it is ejected, for requests placed on it just before its
// ejection by clients that raced with it, does not count toward another ejection while the server
// is ejected: nutcracker fails such requests with the connection that ejected it, and counts one
// ejection.
//
// tcpkeepalive sets SO_KEEPALIVE on client connections with the kernel's timing
// (net.ipv4.tcp_keepalive_*), as nutcracker does, and also on server connections, which nutcracker
// 0.5.0 leaves without it: there Go's 15 s idle time and interval apply, so that a server that
// vanished (a NAT or conntrack entry dropped, a host gone) is found while the connection is idle
// rather than by the next request's timeout.
//
// # Lifecycle
//
// NewServer validates and starts nothing. Run listens on every pool's address (and the stats
// address, with WithStatsAddr), closes Ready, and serves until its context ends; it then closes the
// listeners, the client and server connections, and returns nil after every goroutine has exited.
// Reload swaps in a new configuration while Run is running; before Run, it replaces the
// configuration Run will serve.
//
// # Cleanup
//
// Requests in flight when Run's context ends get an error reply if their client is still
// connected. On Reload, pools that keep their listen address keep their client connections; the
// replaced servers' connections finish the requests already sent to them (up to twice the pool's
// timeout, or 30s, or until the pool closes) and are then closed. Reload does not wait for them;
// Run does. Meanwhile they count in the stats of the server of the same name and address in the
// new configuration (their connection, out_queue, responses, timeouts), and their failures count
// toward its ejection from the new distribution, by the new configuration's limits. A server that
// keeps its name at another address is a new server (not ejected, new connections) whose counters
// go on from the old one's, so that the stats and the Prometheus series, which name it by its
// name, do not go back; what the old address's connections count while they drain is not added.
//
// # Concurrency
//
// A Server's methods are safe for concurrent use. On Linux, one goroutine per pool reads the
// requests of its clients (an epoll set waited on through Go's poller, as nutcracker's event loop):
// it parses what each ready client sent, appends the requests to the server connections' buffers
// and, after each round, writes every server connection it touched once. Each client connection
// has a reader goroutine, which takes over while the client must wait (too much unanswered, a full
// server connection), after a request the poller could not finish, at the end of its stream, and
// everywhere but Linux; it flushes the server connections itself (group commit: one write can carry
// many clients' requests). Each client also has a writer goroutine that works only while the
// client's socket is full. Each server connection has a reader goroutine, which
// completes the requests and writes the clients' ready replies straight to their sockets, and a
// goroutine that dials it. Replies reach each client in the order of its requests. On Linux these
// reads and writes of the sockets are raw system calls, which never block (a read that finds no data
// waits in Go's poller) and do not enter the runtime's system call state, whose first entry after
// the process was idle wakes the runtime's sysmon thread.
//
// # Limits
//
// A client's reader stops reading while the client has 1024 requests unanswered (counted one by
// one, however many one read brings) or 1 MB of replies it has not taken (complete ones held
// behind an unanswered request, ones waiting to be written, and the rest of the one being
// written). A server connection's output buffer and the batch being written to the server (or its
// queue while it connects) hold at most 4 MB plus one batch of each client's requests: a client
// whose batch finds them full reads no more until the server takes them. A client that takes no
// byte of its replies for 5 s while more than 32 MB of them wait is closed and its replies
// dropped. A client that reads, however slowly, is cut off only by the client write timeout
// (WithClientWriteTimeout), as redis has no output limit for normal clients by default and
// nutcracker none (it holds every reply for as long as the client stays): one redis reply can be
// 512 MB, and the replies to a pipeline (up to 1024 requests in flight) can come faster than a
// client takes them, so that much may wait for a client that reads.
package twemproxy
