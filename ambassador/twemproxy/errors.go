package twemproxy

import (
	"errors"
	"fmt"
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
	// ErrClosed is returned by methods of a Server whose Run has returned.
	ErrClosed = errors.New("twemproxy: closed")
)

// ConfigError is a problem in a twemproxy YAML configuration. It names the pool, the key and the
// line (1-based; 0 when the problem has no single line, such as a missing key).
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
