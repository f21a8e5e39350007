package memcache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// Command kinds (twemproxy.Request.Kind).
const (
	kindGet     uint8 = iota + 1 // get, gets, gat, gats: VALUE ... END
	kindStorage                  // set, add, replace, append, prepend, cas
	kindLine                     // delete, incr, decr, touch: one line
)

// Defaults for Protocol's limits.
const (
	DefaultMaxValueSize = 1 << 20 // memcached's default item size limit
	MaxKeyLength        = 250     // memcached's key length limit
	maxTokens           = 8       // tokens of a non-retrieval command line
	maxLine             = 16 << 10
)

var (
	// ErrLineTooLong: a command line is longer than the proxy reads.
	ErrLineTooLong = errors.New("memcache: line too long")
	// ErrBadDataChunk: a storage command's data block does not end with \r\n.
	ErrBadDataChunk = errors.New("memcache: bad data chunk")
)

var (
	replyError     = []byte("ERROR\r\n")
	replyBadFormat = []byte("CLIENT_ERROR bad command line format\r\n")
	replyTooLarge  = []byte("SERVER_ERROR object too large for cache\r\n")
	replyBadChunk  = []byte("CLIENT_ERROR bad data chunk\r\n")
	replyLineLong  = []byte("CLIENT_ERROR line too long\r\n")
	endLine        = []byte("END\r\n")
)

// Protocol is memcache's ASCII protocol for twemproxy pools. The zero value is ready to use with
// DefaultMaxValueSize.
type Protocol struct {
	// MaxValueSize bounds a stored value and a value read from a server (0: DefaultMaxValueSize).
	MaxValueSize int
	// Version is what "version" answers (default "podblocks").
	Version string
}

var _ twemproxy.Protocol = (*Protocol)(nil)

// Name is "memcache".
func (*Protocol) Name() string { return "memcache" }

func (p *Protocol) maxValue() int {
	if p.MaxValueSize > 0 {
		return p.MaxValueSize
	}
	return DefaultMaxValueSize
}

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, ErrLineTooLong
	}
	return line, err
}

// fields splits line (without its line ending) on spaces into at most len(out) spans; n is how
// many there are (n > len(out) means too many).
func fields(line []byte, off int, out []twemproxy.Span) int {
	n := 0
	i := 0
	for i < len(line) {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i == len(line) {
			break
		}
		j := i
		for j < len(line) && line[j] != ' ' {
			j++
		}
		if n < len(out) {
			out[n] = twemproxy.Span{Start: off + i, End: off + j}
		}
		n++
		i = j
	}
	return n
}

func trimEOL(line []byte) []byte {
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line
}

func local(r *twemproxy.Request, reply []byte) error {
	r.Local = true
	r.Resp = append(r.Resp[:0], reply...)
	return nil
}

// ReadRequest reads one command.
func (p *Protocol) ReadRequest(br *bufio.Reader, r *twemproxy.Request) error {
	line, err := readLine(br)
	if err != nil {
		if err == ErrLineTooLong {
			return &twemproxy.ClientError{Reply: replyLineLong, Err: err}
		}
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	r.Buf = append(r.Buf[:0], line...)
	body := trimEOL(r.Buf)
	sp := bytes.IndexByte(body, ' ')
	cmd := body
	if sp >= 0 {
		cmd = body[:sp]
	}
	switch string(cmd) {
	case "get", "gets":
		return p.retrieval(r, body, len(cmd), 0)
	case "gat", "gats":
		return p.retrieval(r, body, len(cmd), 1)
	case "set", "add", "replace", "append", "prepend", "cas":
		return p.storage(br, r, body, string(cmd) == "cas")
	case "delete", "incr", "decr", "touch":
		// delete <key> [0] [noreply]; incr|decr <key> <value> [noreply]; touch <key> <exptime> [noreply]
		var tok [maxTokens]twemproxy.Span
		n := fields(body, 0, tok[:])
		if n < 2 || n > 4 {
			return local(r, replyBadFormat)
		}
		r.NoReply = noReply(body, tok[:n])
		args := n
		if r.NoReply {
			args--
		}
		ok := args == 3
		if string(cmd) == "delete" {
			// The server answers a third token other than 0 itself (an error) when it can.
			ok = args == 2 || args == 3 && (!r.NoReply || string(body[tok[2].Start:tok[2].End]) == "0")
		}
		if !ok || !validKey(body[tok[1].Start:tok[1].End]) {
			return local(r, replyBadFormat)
		}
		r.Kind = kindLine
		r.Keys = append(r.Keys[:0], tok[1])
		return nil
	case "version":
		v := p.Version
		if v == "" {
			v = "podblocks"
		}
		r.Local = true
		r.Resp = append(append(append(r.Resp[:0], "VERSION "...), v...), "\r\n"...)
		return nil
	case "quit":
		r.Local, r.Quit = true, true
		r.Resp = r.Resp[:0]
		return nil
	}
	return local(r, replyError)
}

// retrieval parses get/gets (skip 0) and gat/gats (skip 1: the exptime before the keys).
func (p *Protocol) retrieval(r *twemproxy.Request, body []byte, cmdLen, skip int) error {
	r.Kind = kindGet
	r.Keys = r.Keys[:0]
	i := cmdLen
	idx := 0
	prefixEnd := cmdLen
	for i < len(body) {
		for i < len(body) && body[i] == ' ' {
			i++
		}
		if i == len(body) {
			break
		}
		j := i
		for j < len(body) && body[j] != ' ' {
			j++
		}
		if idx < skip {
			prefixEnd = j
		} else {
			if !validKey(body[i:j]) {
				return local(r, replyBadFormat)
			}
			r.Keys = append(r.Keys, twemproxy.Span{Start: i, End: j})
		}
		idx++
		i = j
	}
	if len(r.Keys) == 0 {
		return local(r, replyError)
	}
	r.MultiKey = len(r.Keys) > 1
	r.Scratch = append(r.Scratch[:0], twemproxy.Span{Start: 0, End: prefixEnd})
	return nil
}

// noReply reports whether a command's last token (of tok, at least three) is "noreply": memcached
// then sends no reply to the command at all, its errors included.
func noReply(body []byte, tok []twemproxy.Span) bool {
	if len(tok) < 3 {
		return false
	}
	last := tok[len(tok)-1]
	return string(body[last.Start:last.End]) == "noreply"
}

// clientError is the error that closes the connection after reply, or silently for a noreply
// request.
func clientError(r *twemproxy.Request, reply []byte, err error) error {
	if r.NoReply {
		reply = nil
	}
	return &twemproxy.ClientError{Reply: reply, Err: err}
}

func (p *Protocol) storage(br *bufio.Reader, r *twemproxy.Request, body []byte, cas bool) error {
	var tok [maxTokens]twemproxy.Span
	n := fields(body, 0, tok[:])
	want := 5
	if cas {
		want = 6
	}
	if n < want || n > want+1 {
		return local(r, replyBadFormat)
	}
	// Every error from here on is silent for a noreply command, as with memcached.
	r.NoReply = noReply(body, tok[:n])
	if n == want+1 && !r.NoReply {
		return local(r, replyBadFormat)
	}
	size, err := strconv.Atoi(string(body[tok[4].Start:tok[4].End]))
	if err != nil || size < 0 || !isNum(body[tok[2].Start:tok[2].End], false) || !isNum(body[tok[3].Start:tok[3].End], true) ||
		(cas && !isNum(body[tok[5].Start:tok[5].End], false)) {
		return local(r, replyBadFormat)
	}
	if !validKey(body[tok[1].Start:tok[1].End]) {
		// Swallow the data block, as memcached does, so the connection stays in step.
		if size > 64*p.maxValue() {
			return clientError(r, replyBadFormat, fmt.Errorf("memcache: value of %d bytes", size))
		}
		if _, err := br.Discard(size + 2); err != nil {
			return err
		}
		return local(r, replyBadFormat)
	}
	if size > p.maxValue() {
		// Swallow the data block so the connection stays usable, as memcached does; far larger
		// than the limit, close instead.
		if size > 64*p.maxValue() {
			return clientError(r, replyTooLarge, fmt.Errorf("memcache: value of %d bytes", size))
		}
		if _, err := br.Discard(size + 2); err != nil {
			return err
		}
		return local(r, replyTooLarge)
	}
	start := len(r.Buf)
	r.Buf = grow(r.Buf, size+2)
	if _, err := io.ReadFull(br, r.Buf[start:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if r.Buf[len(r.Buf)-2] != '\r' || r.Buf[len(r.Buf)-1] != '\n' {
		return clientError(r, replyBadChunk, ErrBadDataChunk)
	}
	r.Kind = kindStorage
	r.Keys = append(r.Keys[:0], tok[1])
	return nil
}

// validKey: at most MaxKeyLength bytes, no control characters (the protocol's rule for keys).
func validKey(k []byte) bool {
	if len(k) == 0 || len(k) > MaxKeyLength {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// isNum reports whether b is a decimal number (with an optional leading '-' if signed).
func isNum(b []byte, signed bool) bool {
	if signed && len(b) > 1 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 20 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// grow extends b by n bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// ReadResponse reads the server's reply to r.
func (p *Protocol) ReadResponse(br *bufio.Reader, r *twemproxy.Request) error {
	if r.Kind != kindGet {
		line, err := readLine(br)
		if err != nil {
			return errUnexpected(err)
		}
		r.Resp = append(r.Resp, line...)
		return nil
	}
	for {
		line, err := readLine(br)
		if err != nil {
			return errUnexpected(err)
		}
		r.Resp = append(r.Resp, line...)
		if !bytes.HasPrefix(line, []byte("VALUE ")) {
			return nil // END, or an error line
		}
		body := trimEOL(line)
		var tok [6]twemproxy.Span
		n := fields(body, 0, tok[:])
		if n < 4 || n > 5 {
			return fmt.Errorf("%w: %q", twemproxy.ErrBadResponse, line)
		}
		size, err := strconv.Atoi(string(body[tok[3].Start:tok[3].End]))
		if err != nil || size < 0 || size > 64*p.maxValue() {
			return fmt.Errorf("%w: %q", twemproxy.ErrBadResponse, line)
		}
		start := len(r.Resp)
		r.Resp = grow(r.Resp, size+2)
		if _, err := io.ReadFull(br, r.Resp[start:]); err != nil {
			return errUnexpected(err)
		}
	}
}

func errUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Fragment builds the retrieval command for the keys with the given indexes.
func (p *Protocol) Fragment(r *twemproxy.Request, keys []int, frag *twemproxy.Request) {
	prefix := r.Scratch[0]
	frag.Kind = r.Kind
	frag.Buf = append(frag.Buf[:0], r.Buf[prefix.Start:prefix.End]...)
	frag.Keys = frag.Keys[:0]
	for _, k := range keys {
		frag.Buf = append(frag.Buf, ' ')
		s := len(frag.Buf)
		frag.Buf = append(frag.Buf, r.Key(k)...)
		frag.Keys = append(frag.Keys, twemproxy.Span{Start: s, End: len(frag.Buf)})
	}
	frag.Buf = append(frag.Buf, "\r\n"...)
}

// Merge joins the fragments' VALUE blocks under one END. If a fragment failed, the reply is that
// fragment's error.
func (p *Protocol) Merge(r *twemproxy.Request, frags []*twemproxy.Request) {
	for _, f := range frags {
		if err := f.Err(); err != nil {
			r.Resp = p.ErrorReply(r.Resp[:0], err)
			return
		}
		if !bytes.HasSuffix(f.Resp, endLine) {
			r.Resp = append(r.Resp[:0], f.Resp...)
			return
		}
	}
	for _, f := range frags {
		r.Resp = append(r.Resp, f.Resp[:len(f.Resp)-len(endLine)]...)
	}
	r.Resp = append(r.Resp, endLine...)
}

// ErrorReply is "SERVER_ERROR <err>".
func (p *Protocol) ErrorReply(dst []byte, err error) []byte {
	dst = append(dst, "SERVER_ERROR "...)
	for _, c := range []byte(err.Error()) {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, "\r\n"...)
}

// Handshake: memcache needs none.
func (p *Protocol) Handshake(*twemproxy.PoolConfig) ([]byte, int) { return nil, 0 }

// Probe is "version".
func (p *Protocol) Probe() []byte { return []byte("version\r\n") }

// CheckProbe expects "VERSION ...".
func (p *Protocol) CheckProbe(br *bufio.Reader) error {
	line, err := readLine(br)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("VERSION ")) {
		return fmt.Errorf("memcache: health check reply %q", line)
	}
	return nil
}
