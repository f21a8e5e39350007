package twemproxy

import (
	"bufio"
	"errors"
	"time"
)

// Span is the byte range [Start, End) of a Request's Buf.
type Span struct{ Start, End int }

// Request is one client request on its way through a pool. Protocol implementations fill it in
// ReadRequest and complete it in ReadResponse; the pool owns everything else. Requests are pooled
// and reused: a Protocol must not keep a reference to one after it returns.
type Request struct {
	// Buf holds the bytes forwarded to the server.
	Buf []byte
	// Keys are the request's keys within Buf, used for routing; multi-key commands list every key.
	Keys []Span
	// Resp receives the reply written back to the client.
	Resp []byte
	// Kind is a protocol-specific command class (for example, which reply shape to expect).
	Kind uint8
	// NoReply: the client gets no reply to this request (memcache "noreply"): the server sends
	// none, and the proxy writes none either, not even when the request fails or is answered
	// locally (Resp is dropped).
	NoReply bool
	// Local: the proxy answers the request itself; Resp already holds the reply.
	Local bool
	// Quit: close the client connection once the reply (if any) is written.
	Quit bool
	// MultiKey: the request may be split into one fragment per server (Protocol.Fragment).
	MultiKey bool
	// Auth: the request is a password handshake (redis AUTH); Keys[0] is the password. The pool
	// answers it itself, through the protocol's Authenticator.
	Auth bool
	// Select: the request selects a database (redis SELECT); Keys[0] is the database it names. The
	// pool answers it itself, through the protocol's Selector.
	Select bool
	// Scratch is free for the Protocol to use (for example, element spans while merging).
	Scratch []Span
	// KeyFrag, for a split request, gives for each key the index of the fragment that carries it.
	KeyFrag []int

	frags  []*Request
	err    error
	sent   time.Time
	server *server
	c      *client  // the client that sent it (for a fragment, its parent's client)
	parent *Request // for a fragment, the split request
	left   int      // for a split request, fragments not complete yet; under c.mu
	done   bool     // the reply (or error) is in; under c.mu
	// readyBytes counts the replies of r (or its fragments) in c.ready until r is drained; under c.mu
	readyBytes int
}

// Err is the error that replaced the server's reply (nil if the server answered): a *ServerError,
// whose text is nutcracker's, when the server failed, or ErrClosed when the proxy closed.
func (r *Request) Err() error { return r.err }

// Key returns the i-th key.
func (r *Request) Key(i int) []byte { return r.Buf[r.Keys[i].Start:r.Keys[i].End] }

func (r *Request) reset() {
	r.Buf, r.Keys, r.Resp, r.Scratch, r.KeyFrag = r.Buf[:0], r.Keys[:0], r.Resp[:0], r.Scratch[:0], r.KeyFrag[:0]
	r.Kind, r.NoReply, r.Local, r.Quit, r.MultiKey, r.Auth, r.Select = 0, false, false, false, false, false, false
	r.frags, r.err, r.server, r.c, r.parent, r.left, r.done, r.readyBytes = r.frags[:0], nil, nil, nil, nil, 0, false, 0
}

// Protocol is a wire protocol a pool speaks (memcache ASCII, redis RESP). The memcache and redis
// packages provide the implementations.
type Protocol interface {
	// Name is "memcache" or "redis".
	Name() string
	// ReadRequest reads one request from br into r. An unsupported but well-formed request sets
	// r.Local with an error reply in r.Resp and returns nil, so the connection stays usable. A
	// returned error closes the client connection; if it is a *ClientError its Reply is written first.
	ReadRequest(br *bufio.Reader, r *Request) error
	// ReadResponse reads the server's reply to r from br and appends it to r.Resp.
	ReadResponse(br *bufio.Reader, r *Request) error
	// Fragment makes frag the part of the multi-key request r that carries the keys with the given
	// indexes (in order).
	Fragment(r *Request, keys []int, frag *Request)
	// Merge writes into r.Resp the client's reply to the split request r, from its fragments'
	// replies (a fragment's Err() is non-nil when its server failed).
	Merge(r *Request, frags []*Request)
	// ErrorReply appends to dst the protocol's error reply carrying err's text.
	ErrorReply(dst []byte, err error) []byte
	// Handshake returns what to send on a new server connection (redis AUTH / SELECT), or nil, and
	// how many replies to read back; every reply must be a success.
	Handshake(p *PoolConfig) (send []byte, replies int)
	// Probe is the health-check request (memcache "version", redis "PING"); CheckProbe reads and
	// checks its reply.
	Probe() []byte
	CheckProbe(br *bufio.Reader) error
}

// AuthStatus is the outcome of a client's password handshake.
type AuthStatus int

// Outcomes of a password handshake.
const (
	AuthOK       AuthStatus = iota // the password matched
	AuthInvalid                    // the password did not match
	AuthNotSet                     // the client sent a password but the pool has none
	AuthRequired                   // a request came before a successful handshake
)

// Authenticator is implemented by protocols with a password handshake (redis AUTH, for pools
// with redis_auth): clients must authenticate to the proxy with the pool's password, as with
// nutcracker, before any other request than the handshake and quit is served.
type Authenticator interface {
	// AuthReply appends the reply for status.
	AuthReply(dst []byte, status AuthStatus) []byte
}

// Selector is implemented by protocols whose clients can select a database (redis SELECT). The
// pool's servers are on one database, redis_db, which the proxy selects on each server connection
// (Protocol.Handshake): a client may select that one, and no other.
type Selector interface {
	// SelectReply appends the reply to a client's selection of a database: a success when ok (the
	// client named db), else an error that names db, the one database the pool serves.
	SelectReply(dst []byte, db int, ok bool) []byte
}

// ClientError is a request a client got wrong badly enough that its connection is closed; Reply is
// written to the client first.
type ClientError struct {
	Reply []byte
	Err   error
}

func (e *ClientError) Error() string { return e.Err.Error() }
func (e *ClientError) Unwrap() error { return e.Err }

// ErrBadResponse is returned by ReadResponse for a reply the proxy cannot parse; the server
// connection is then closed.
var ErrBadResponse = errors.New("twemproxy: bad server response")
