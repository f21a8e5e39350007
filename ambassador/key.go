package ambassador

import (
	"net"
	"net/http"

	"github.com/cespare/xxhash/v2"
)

// KeyFunc extracts the hash key of an HTTP request for hashing balancers (ring hash, maglev).
// Requests with equal keys go to the same endpoint while the endpoint set is unchanged.
type KeyFunc func(r *http.Request) uint64

// HashString is the hash KeyFuncs use (xxhash64), exported so other callers can hash keys the same way.
func HashString(s string) uint64 { return xxhash.Sum64String(s) }

// HeaderKey hashes the value of header name (the empty string when absent).
func HeaderKey(name string) KeyFunc {
	name = http.CanonicalHeaderKey(name)
	return func(r *http.Request) uint64 {
		if v := r.Header[name]; len(v) > 0 {
			return HashString(v[0])
		}
		return HashString("")
	}
}

// CookieKey hashes the value of cookie name (the empty string when absent).
func CookieKey(name string) KeyFunc {
	return func(r *http.Request) uint64 {
		if c, err := r.Cookie(name); err == nil {
			return HashString(c.Value)
		}
		return HashString("")
	}
}

// PathKey hashes the request path.
func PathKey(r *http.Request) uint64 { return HashString(r.URL.Path) }

// ClientIPKey hashes the client's IP address (without the port).
func ClientIPKey(r *http.Request) uint64 { return HashString(hostOnly(r.RemoteAddr)) }

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
