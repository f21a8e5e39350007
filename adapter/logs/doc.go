// Package logs is the log-normalizing adapter: it reads an application's log lines in the
// format the application writes (a regex with named groups, logfmt, JSON, or the common and
// combined log formats of web servers) and writes one structured JSON object per line through
// zap, with "time", "level" and "msg" taken from the line (field renames, level mapping and
// timestamp parsing are configurable), so every container in a pod logs alike.
//
// A line that does not parse is not lost: it is written with the raw text as "msg" and a
// "parse_error" field. Over-long lines are written truncated, marked "truncated": true.
//
// # Lifecycle
//
// New validates and starts nothing; Line normalizes one line at once. Run reads the sources
// given by WithReader (stdin, a file, a pipe), WithListener (stream sockets) and WithPacketConn
// (datagram sockets) until its context ends or, with only a reader, until EOF.
//
// # Cleanup
//
// When Run returns, listeners, packet connections and accepted connections are closed, and a
// reader that is an io.Closer is closed.
//
// # Concurrency
//
// Line and Run may be used concurrently; writes to the output are serialized. Formats hold no
// state and are safe for concurrent use.
package logs
