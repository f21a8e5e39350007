package election

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// TokenHeader is the HTTP header that carries a fencing token (a decimal uint64) to a resource
// protected by Fence.Middleware.
const TokenHeader = "Fencing-Token"

// Fence protects a resource from writers of old terms: it accepts a token equal to or higher than
// the highest it has accepted and rejects a lower one. Hand each write the Term.Token of the term
// that issued it. The zero value accepts any token first; it is safe for concurrent use.
//
// A Fence only helps if the check and the write are atomic with respect to other writers: use Do,
// which runs the write under the fence's lock, rather than Check followed by a write.
type Fence struct {
	mu      sync.Mutex
	highest uint64
}

// Check accepts token if it is not lower than the highest accepted so far (and then remembers it),
// else returns a *StaleTokenError.
func (f *Fence) Check(token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkLocked(token)
}

func (f *Fence) checkLocked(token uint64) error {
	if token < f.highest {
		return &StaleTokenError{Token: token, Highest: f.highest}
	}
	f.highest = token
	return nil
}

// Do runs write if token passes Check, holding the fence's lock so no higher token can be accepted
// while it runs. It returns the *StaleTokenError or write's error.
func (f *Fence) Do(token uint64, write func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.checkLocked(token); err != nil {
		return err
	}
	return write()
}

// Highest returns the highest token accepted so far (0 if none).
func (f *Fence) Highest() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.highest
}

// FormatToken formats a token for TokenHeader.
func FormatToken(token uint64) string { return strconv.FormatUint(token, 10) }

// ParseToken parses a fencing token as carried in TokenHeader: a decimal uint64 greater than 0,
// with surrounding spaces allowed. It returns ErrNoToken for anything else.
func ParseToken(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, ErrNoToken
	}
	t, err := strconv.ParseUint(s, 10, 64)
	if err != nil || t == 0 {
		return 0, ErrNoToken
	}
	return t, nil
}

// Middleware returns a handler that admits a request to next only if its TokenHeader passes the
// fence, and runs next under the fence's lock (requests through one Fence are serialised). A missing
// or malformed token gets 400 and a stale one 409 Conflict, each with a one-line reason; next does
// not run.
func (f *Fence) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := ParseToken(r.Header.Get(TokenHeader))
		if err != nil {
			http.Error(w, err.Error()+": header "+TokenHeader+" must be a decimal token > 0", http.StatusBadRequest)
			return
		}
		err = f.Do(token, func() error {
			next.ServeHTTP(w, r)
			return nil
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	})
}
