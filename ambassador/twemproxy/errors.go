package twemproxy

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

var (
	// ErrUnknownHash is returned for a "hash:" value twemproxy does not know.
	ErrUnknownHash = errors.New("twemproxy: unknown hash")
	// ErrUnknownDistribution is returned for a "distribution:" value twemproxy does not know.
	ErrUnknownDistribution = errors.New("twemproxy: unknown distribution")
	// ErrNoLiveServers is the error a request gets when every server of its pool is ejected.
	ErrNoLiveServers = errors.New("twemproxy: no live servers")
	// ErrServerEjected is the error a request gets, in no-reshard mode, when its key's server is ejected.
	ErrServerEjected = errors.New("twemproxy: server ejected")
	// ErrTimeout is the error a request gets when its server did not answer within the pool's timeout.
	ErrTimeout = errors.New("twemproxy: server timed out")
	// ErrClosed is returned by methods of a Server whose Run has returned (or is returning).
	ErrClosed = errors.New("twemproxy: closed")
)

// notOneOfError is a value of a configuration key that is not one of those the key accepts; it is
// the key's sentinel (ErrUnknownHash, ErrUnknownDistribution). Its text follows the value, which
// the ConfigError's text puts before it: `"md4" is not one of crc16, ...`.
type notOneOfError struct {
	sentinel error
	accepted []string
}

func (e *notOneOfError) Error() string { return "is not one of " + strings.Join(e.accepted, ", ") }
func (e *notOneOfError) Unwrap() error { return e.sentinel }

var (
	errHashNotOneOf = &notOneOfError{ErrUnknownHash, HashNames()}
	errDistNotOneOf = &notOneOfError{ErrUnknownDistribution, distributions}
)

// ConfigError is a problem in a twemproxy YAML configuration. It names the pool, the key and the
// line (1-based; 0 when the problem has no single line, such as a missing key); Err names the bad
// value, but a redis_auth password, and for a key with a set of values (hash, distribution, a
// boolean) the values it accepts.
type ConfigError struct {
	Line int
	Pool string
	Key  string
	Err  error
}

func (e *ConfigError) Error() string {
	switch {
	case e.Pool == "" && e.Line > 0:
		return fmt.Sprintf("twemproxy: config line %d: %v", e.Line, e.Err)
	case e.Pool == "":
		return fmt.Sprintf("twemproxy: config: %v", e.Err)
	case e.Key == "" && e.Line > 0:
		return fmt.Sprintf("twemproxy: config line %d: pool %q: %v", e.Line, e.Pool, e.Err)
	case e.Key == "":
		return fmt.Sprintf("twemproxy: config: pool %q: %v", e.Pool, e.Err)
	case e.Line > 0:
		return fmt.Sprintf("twemproxy: config line %d: pool %q: %q: %v", e.Line, e.Pool, e.Key, e.Err)
	default:
		return fmt.Sprintf("twemproxy: config: pool %q: %q: %v", e.Pool, e.Key, e.Err)
	}
}

func (e *ConfigError) Unwrap() error { return e.Err }

// ServerError is the error a request gets when its server failed it (Request.Err). Error is the
// text of the client's error reply, the one nutcracker 0.5.0 sends: the strerror text of the errno
// behind the failure ("Connection refused" for a refused dial and for a key with no live server,
// "Connection timed out", "Connection reset by peer", "Invalid argument" for a reply the proxy cannot
// parse), or "unknown" for a server that closed the connection; a redis server's refusal of the
// connection's AUTH or SELECT (which nutcracker does not check) is "handshake rejected: " and the
// server's error. Err is the failure itself, with its details (such as the server's address), which
// the proxy logs.
type ServerError struct {
	Text string
	Err  error
}

func (e *ServerError) Error() string { return e.Text }
func (e *ServerError) Unwrap() error { return e.Err }

// The ServerErrors of the sentinels, made once: a pool whose servers are all ejected fails every
// request with one.
var (
	errNoLiveReply  = &ServerError{Text: strerror(syscall.ECONNREFUSED), Err: ErrNoLiveServers}
	errTimeoutReply = &ServerError{Text: strerror(syscall.ETIMEDOUT), Err: ErrTimeout}
)

// serverError returns err as the *ServerError a request gets for it (the one err wraps, if any).
// ErrClosed (the proxy, not the server, ended the request), ErrServerEjected (the extension
// no_reshard's, which nutcracker has no reply for) and nil are returned as they are. For an error
// that is none of these and wraps no *ServerError it allocates the *ServerError and, for an errno,
// its text (twice in all, where a failed dial has allocated some twelve times): a failure that
// fails many requests makes their error once (finishEach).
func serverError(err error) error {
	switch err {
	case nil, ErrClosed, ErrServerEjected:
		return err
	case ErrNoLiveServers:
		return errNoLiveReply
	case ErrTimeout:
		return errTimeoutReply
	}
	if se, ok := errors.AsType[*ServerError](err); ok {
		return se
	}
	return &ServerError{Text: errnoText(err), Err: err}
}

// errnoText is nutcracker's text for a failure: strerror of the errno behind it.
func errnoText(err error) string {
	// errors.AsType, unlike errors.As, leaves nothing on the heap.
	if errors.Is(err, ErrNoLiveServers) {
		return strerror(syscall.ECONNREFUSED)
	}
	if ne, ok := errors.AsType[net.Error](err); errors.Is(err, ErrTimeout) || ok && ne.Timeout() {
		return strerror(syscall.ETIMEDOUT)
	}
	if errors.Is(err, ErrBadResponse) {
		return strerror(syscall.EINVAL) // nutcracker's parser fails the connection with EINVAL
	}
	if errno, ok := errors.AsType[syscall.Errno](err); ok {
		return strerror(errno)
	}
	return "unknown" // no errno (the server closed the connection): nutcracker's "unknown"
}

// strerror is the C library's text for errno: Go's, which is the same but for its first letter.
func strerror(errno syscall.Errno) string {
	s := errno.Error()
	if s != "" && 'a' <= s[0] && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s
}
