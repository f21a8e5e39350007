package memcache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

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
	// maxGetLine bounds a get or gets command line, with its line end: memcached reads one of any
	// length, a multi-get of many keys.
	maxGetLine = 1 << 20
	// maxCommandLine bounds a command line other than get and gets, with its line end: memcached
	// closes a connection whose unfinished line passes 2048 bytes, unless it is a get or gets.
	maxCommandLine = 2048
)

var (
	// ErrLineTooLong: a command line is longer than the proxy reads.
	ErrLineTooLong = errors.New("memcache: line too long")
	// ErrBadDataChunk: a storage command's data block does not end with \r\n.
	ErrBadDataChunk = errors.New("memcache: bad data chunk")
	// ErrNULByte: a command line other than get and gets holds a NUL byte.
	ErrNULByte = errors.New("memcache: NUL byte in a command line")
	// ErrLengthRange: a storage command's length fits 64 bits but not 32, and its low 32 bits are
	// a length, so that a 64-bit memcached would read a data block of that length and a 32-bit one
	// none: the proxy cannot tell where the client's next command starts.
	ErrLengthRange = errors.New("memcache: data length past 32 bits")
	// ErrVersionArgs: "version" has something after it but spaces, which nutcracker refuses by
	// closing the connection without a reply.
	ErrVersionArgs = errors.New("memcache: version with arguments")
)

var (
	replyError     = []byte("ERROR\r\n")
	replyBadFormat = []byte("CLIENT_ERROR bad command line format\r\n")
	replyTooLarge  = []byte("SERVER_ERROR object too large for cache\r\n")
	replyBadChunk  = []byte("CLIENT_ERROR bad data chunk\r\n")
	replyLineLong  = []byte("CLIENT_ERROR line too long\r\n")
	replyBadDelta  = []byte("CLIENT_ERROR invalid numeric delta argument\r\n")
	replyBadExpiry = []byte("CLIENT_ERROR invalid exptime argument\r\n")
	replyGetLarge  = []byte("SERVER_ERROR out of memory writing get response\r\n")
	// replyDeleteUsage is memcached's reply, two spaces included.
	replyDeleteUsage = []byte("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
	endLine          = []byte("END\r\n")
)

// Protocol is memcache's ASCII protocol for twemproxy pools. The zero value is ready to use with
// DefaultMaxValueSize.
type Protocol struct {
	// MaxValueSize bounds a stored value and a value read from a server (0: DefaultMaxValueSize).
	MaxValueSize int
	// MaxReplySize bounds the reply to one get, gets, gat or gats, every server's part together
	// (0: 64 times MaxValueSize). A larger one is read and dropped, and the client gets memcached's
	// "SERVER_ERROR out of memory writing get response" instead.
	MaxReplySize int
	// Version, when set, is what the proxy answers "version" with itself ("VERSION " and it),
	// without a server. Clients read it: libmemcached (memcping, memcached_version) fails unless it
	// starts with a numeric major.minor.micro. Empty (the default): "version" goes to a server, as
	// nutcracker 0.5.0 sends it, and the client gets that server's reply (its memcached version),
	// or the pool's error when the server failed ("SERVER_ERROR Connection refused"). The server
	// is the one an empty key goes to (hash 0 on the pool's distribution; under random, any), as
	// nutcracker places a request without a key; nutcracker 0.5.0 itself takes the key of
	// "version" from a key position it never set, so which of several servers it asks is not
	// defined there.
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

func (p *Protocol) maxReply() int {
	if p.MaxReplySize > 0 {
		return p.MaxReplySize
	}
	return 64 * p.maxValue()
}

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, ErrLineTooLong
	}
	return line, err
}

// readCommand appends the next command line, with its line end, to dst[:0]. A line longer than
// br's buffer is read on only for get and gets (after at most 100 leading spaces), as memcached
// does, up to maxGetLine.
func readCommand(br *bufio.Reader, dst []byte) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	dst = append(dst[:0], line...)
	for err == bufio.ErrBufferFull {
		if len(dst) > maxGetLine || !longGet(dst) {
			return dst, ErrLineTooLong
		}
		line, err = br.ReadSlice('\n')
		dst = append(dst, line...)
	}
	if len(dst) > maxGetLine {
		return dst, ErrLineTooLong
	}
	return dst, err
}

// longGet reports whether memcached reads on an unfinished line that starts with b: a get or gets.
func longGet(b []byte) bool {
	cmd := bytes.TrimLeft(b, " ")
	return len(b)-len(cmd) <= 100 && (bytes.HasPrefix(cmd, []byte("get ")) || bytes.HasPrefix(cmd, []byte("gets ")))
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
//
// A command the proxy forwards is one memcached reads exactly as the proxy did, so that the
// server sends exactly the replies the proxy waits for on a connection other clients share: a
// command memcached would reject or read otherwise is answered here (with memcached's reply, its
// data block consumed), never forwarded.
func (p *Protocol) ReadRequest(br *bufio.Reader, r *twemproxy.Request) error {
	var err error
	r.Buf, err = readCommand(br, r.Buf)
	line := r.Buf
	if err != nil {
		if err == ErrLineTooLong {
			return &twemproxy.ClientError{Reply: replyLineLong, Err: err}
		}
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	// memcached skips spaces before the command, as between its tokens; the proxy drops them, so
	// that what it forwards never starts with one: memcached closes a connection whose unfinished
	// line passes 2048 bytes with more than 100 spaces first, even a get.
	if len(line) > 0 && line[0] == ' ' {
		n := 1
		for n < len(line) && line[n] == ' ' {
			n++
		}
		line = line[:copy(line, line[n:])]
		r.Buf = line
	}
	body := trimEOL(line)
	cmdEnd := bytes.IndexByte(body, ' ')
	if cmdEnd < 0 {
		cmdEnd = len(body)
	}
	cmd := body[:cmdEnd]
	switch string(cmd) {
	case "get", "gets":
		return p.retrieval(r, body, cmdEnd, false)
	case "gat", "gats":
		if err := checkLine(line); err != nil {
			return err
		}
		return p.retrieval(r, body, cmdEnd, true)
	case "set", "add", "replace", "append", "prepend", "cas":
		if err := checkLine(line); err != nil {
			return err
		}
		return p.storage(br, r, body, string(cmd) == "cas")
	case "delete", "incr", "decr", "touch":
		if err := checkLine(line); err != nil {
			return err
		}
		return lineCommand(r, body, string(cmd))
	case "version":
		if len(bytes.TrimLeft(body[cmdEnd:], " ")) > 0 {
			// nutcracker 0.5.0 closes the connection, with no reply, of a "version" with anything
			// but spaces after it ("version noreply", which memcached answers).
			return &twemproxy.ClientError{Err: ErrVersionArgs}
		}
		if p.Version != "" {
			r.Local = true
			r.Resp = append(append(append(r.Resp[:0], "VERSION "...), p.Version...), "\r\n"...)
			return nil
		}
		if err := checkLine(line); err != nil {
			return err
		}
		// No key: the pool sends it where nutcracker does.
		r.Kind = kindLine
		r.Keys = r.Keys[:0]
		return nil
	case "quit":
		r.Local, r.Quit = true, true
		r.Resp = r.Resp[:0]
		return nil
	}
	return local(r, replyError)
}

// checkLine refuses, closing the connection, a command line that memcached would not read as
// the proxy does: one with a NUL byte (memcached's command ends there, so a trailing noreply the
// proxy does not see could silence the server's reply), or one longer than maxCommandLine
// (memcached closes a connection whose unfinished line passes 2048 bytes, unless it is a get or
// gets, failing every request of other clients queued on it).
func checkLine(line []byte) error {
	if len(line) > maxCommandLine {
		return &twemproxy.ClientError{Reply: replyLineLong, Err: ErrLineTooLong}
	}
	if bytes.IndexByte(line, 0) >= 0 {
		return &twemproxy.ClientError{Reply: replyBadFormat, Err: ErrNULByte}
	}
	return nil
}

// lineCommand parses delete <key> [0] [noreply], incr|decr <key> <delta> [x], touch <key>
// <exptime> [x] with memcached's token counts and replies; an unknown last token is ignored, as
// memcached ignores it, and "noreply" there silences the reply.
func lineCommand(r *twemproxy.Request, body []byte, cmd string) error {
	var tok [maxTokens]twemproxy.Span
	n := fields(body, 0, tok[:])
	least := 3
	if cmd == "delete" {
		least = 2
	}
	if n < least || n > 4 {
		return local(r, replyError)
	}
	r.NoReply = noReply(body, tok[:n])
	key := span(body, tok[1])
	switch cmd {
	case "delete":
		if n > 2 {
			zero := string(span(body, tok[2])) == "0"
			if !(n == 3 && (zero || r.NoReply) || n == 4 && zero && r.NoReply) {
				return local(r, replyDeleteUsage)
			}
		}
		if !validKey(key) {
			return local(r, replyBadFormat)
		}
	case "incr", "decr":
		if !validKey(key) {
			return local(r, replyBadFormat)
		}
		if !cUint64(span(body, tok[2])) {
			return local(r, replyBadDelta)
		}
	default: // touch
		if !validKey(key) {
			return local(r, replyBadFormat)
		}
		if !validExptime(span(body, tok[2])) {
			return local(r, replyBadExpiry)
		}
	}
	r.Kind = kindLine
	r.Keys = append(r.Keys[:0], tok[1])
	return nil
}

func span(body []byte, s twemproxy.Span) []byte { return body[s.Start:s.End] }

// retrieval parses get/gets and, with touch, gat/gats (the exptime before the keys); the command
// ends at cmdEnd.
func (p *Protocol) retrieval(r *twemproxy.Request, body []byte, cmdEnd int, touch bool) error {
	r.Kind = kindGet
	r.Keys = r.Keys[:0]
	i := cmdEnd
	idx := 0
	prefixEnd := cmdEnd
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
		if touch && idx == 0 {
			if !validExptime(body[i:j]) {
				return local(r, replyBadExpiry)
			}
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
		if touch && idx == 1 {
			return local(r, endLine) // memcached touches no key and answers END
		}
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
	return string(span(body, tok[len(tok)-1])) == "noreply"
}

// clientError is the error that closes the connection after reply, or silently for a noreply
// request.
func clientError(r *twemproxy.Request, reply []byte, err error) error {
	if r.NoReply {
		reply = nil
	}
	return &twemproxy.ClientError{Reply: reply, Err: err}
}

// storage parses set/add/replace/append/prepend <key> <flags> <exptime> <bytes> [x] and cas <key>
// <flags> <exptime> <bytes> <cas unique> [x], each number as memcached parses it. A command the
// proxy answers itself has its data block consumed whenever its length can be read, so that the
// client gets exactly one reply.
func (p *Protocol) storage(br *bufio.Reader, r *twemproxy.Request, body []byte, cas bool) error {
	var tok [maxTokens]twemproxy.Span
	n := fields(body, 0, tok[:])
	want := 5
	if cas {
		want = 6
	}
	if n < 5 {
		return local(r, replyError) // no length: nothing to consume
	}
	size, sizeOK := dataLength(span(body, tok[4]))
	if n < want || n > want+1 {
		// memcached answers ERROR and then reads the data block as a command ("cas a 0 0 1\r\n"
		// then "get a\r\n": ERROR, then END), as it does after a bad key or number below. The
		// proxy, here as there, consumes a block whose length it can read and answers ERROR alone:
		// one reply to one command. Without a length there is no block: the next line is a command.
		if sizeOK {
			return p.swallow(br, r, size, replyError)
		}
		return local(r, replyError)
	}
	// Every error from here on is silent for a noreply command, as with memcached.
	r.NoReply = noReply(body, tok[:n])
	if !sizeOK {
		if readsBlock64(body, tok[:n], cas) {
			return clientError(r, replyBadFormat, ErrLengthRange)
		}
		return local(r, replyBadFormat)
	}
	if !validKey(span(body, tok[1])) || !cUint32(span(body, tok[2])) || !validExptime(span(body, tok[3])) ||
		cas && !cUint64(span(body, tok[5])) {
		return p.swallow(br, r, size, replyBadFormat)
	}
	if size > p.maxValue() {
		return p.swallow(br, r, size, replyTooLarge)
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

// swallow consumes a refused storage command's data block of size bytes and answers reply, as
// memcached does for a value too large, so that the connection stays in step; far larger than
// the value limit, it closes the connection instead.
func (p *Protocol) swallow(br *bufio.Reader, r *twemproxy.Request, size int, reply []byte) error {
	if size > 64*p.maxValue() {
		return clientError(r, reply, fmt.Errorf("memcache: value of %d bytes", size))
	}
	if _, err := br.Discard(size + 2); err != nil {
		return err
	}
	return local(r, reply)
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

// The numbers below are parsed as memcached 1.6 parses them, with its safe_strtol, safe_strtoul and
// safe_strtoull: C's strtol/strtoul/strtoull in base 10, which skip leading white space, take a
// sign, and stop at the first non-digit, which must be the token's end or white space (memcached
// ignores what follows it). A flags, exptime or length value past 32 bits is refused here: a 64-bit
// memcached cuts it to 32 bits, but a 32-bit one refuses it (strtol's ERANGE) without consuming
// the data block, which it would then run as a command on a connection other clients share. No
// client sends such values.

// cSpace reports whether C's isspace holds for c (in the C locale).
func cSpace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }

// cNumber parses b as strtoull does: mag is the magnitude, neg whether a '-' came before it; ok is
// false for no digits, another character after them, or a magnitude past 2^64-1 (ERANGE).
func cNumber(b []byte) (mag uint64, neg, ok bool) {
	i := 0
	for i < len(b) && cSpace(b[i]) {
		i++
	}
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	start := i
	for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if mag > math.MaxUint64/10 || mag == math.MaxUint64/10 && d > math.MaxUint64%10 {
			return 0, false, false
		}
		mag = mag*10 + d
	}
	if i == start || i < len(b) && !cSpace(b[i]) {
		return 0, false, false
	}
	return mag, neg, true
}

// cUint64 reports whether memcached's safe_strtoull (cas unique, incr/decr delta) accepts b:
// strtoull's value, refused when it is 2^63 or more and b holds a '-' (safe_strtoull looks only
// before the number's end: a '-' after it is refused here and accepted there, which only makes the
// proxy stricter).
func cUint64(b []byte) bool {
	mag, neg, ok := cNumber(b)
	if !ok {
		return false
	}
	if neg {
		mag = -mag
	}
	return int64(mag) >= 0 || bytes.IndexByte(b, '-') < 0
}

// cUint32 is memcached's safe_strtoul (flags) within 32 bits: 0 to 2^32-1, or "-0".
func cUint32(b []byte) bool {
	mag, neg, ok := cNumber(b)
	return ok && mag <= math.MaxUint32 && (!neg || mag == 0)
}

// cLong is C's strtol into a 64-bit long (ERANGE past it), as a 64-bit memcached's safe_strtol
// reads before it cuts the value to 32 bits.
func cLong(b []byte) (int64, bool) {
	mag, neg, ok := cNumber(b)
	if !ok || !neg && mag > math.MaxInt64 || neg && mag > 1<<63 {
		return 0, false
	}
	v := int64(mag)
	if neg {
		v = -v
	}
	return v, true
}

// cInt32 is memcached's safe_strtol (exptime, length) within 32 bits.
func cInt32(b []byte) (int32, bool) {
	v, ok := cLong(b)
	if !ok || v != int64(int32(v)) {
		return 0, false
	}
	return int32(v), true
}

// validExptime reports whether both memcached builds read b as the same exptime (safe_strtol within
// 32 bits).
func validExptime(b []byte) bool {
	_, ok := cInt32(b)
	return ok
}

// readsBlock64 reports whether a 64-bit memcached reads the data block of a storage command with
// the right number of tokens, tok, whose length the proxy refuses: it checks the key's length, then
// reads flags, exptime and length into 64 bits (safe_strtoul, safe_strtol) and the cas unique
// (safe_strtoull), and cuts the length to 32 bits, which must then be 0 to INT_MAX-2. A 32-bit
// memcached refuses a length past 32 bits without reading a block.
func readsBlock64(body []byte, tok []twemproxy.Span, cas bool) bool {
	if len(span(body, tok[1])) > MaxKeyLength || !cUint64(span(body, tok[2])) || cas && !cUint64(span(body, tok[5])) {
		return false
	}
	if _, ok := cLong(span(body, tok[3])); !ok {
		return false
	}
	v, ok := cLong(span(body, tok[4]))
	cut := int32(v)
	return ok && int64(cut) != v && cut >= 0 && cut <= math.MaxInt32-2
}

// dataLength is a storage command's <bytes> as memcached reads it: safe_strtol (within 32 bits),
// then at least 0 and at most INT_MAX-2.
func dataLength(b []byte) (int, bool) {
	v, ok := cInt32(b)
	if !ok || v < 0 || v > math.MaxInt32-2 {
		return 0, false
	}
	return int(v), true
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

// ReadResponse reads the server's reply to r. For a fragment (marked by Fragment), it records
// where each VALUE block's key starts and where the block ends, so that Merge need not parse the
// reply again.
func (p *Protocol) ReadResponse(br *bufio.Reader, r *twemproxy.Request) error {
	if r.Kind != kindGet {
		line, err := readLine(br)
		if err != nil {
			return errUnexpected(err)
		}
		r.Resp = append(r.Resp, line...)
		return nil
	}
	// Past maxReply, the rest of the reply is read and dropped, and the reply is replyGetLarge.
	from, over := len(r.Resp), false
	record := len(r.Scratch) > 0 && r.Scratch[0].Start == blocksMark
	if record {
		r.Scratch = r.Scratch[:1]
		r.Scratch[0].End = -1 // not recorded, until the reply is in whole
	}
	for {
		line, err := readLine(br)
		if err != nil {
			return errUnexpected(err)
		}
		if !bytes.HasPrefix(line, []byte("VALUE ")) {
			if over {
				r.Resp = append(r.Resp[:from], replyGetLarge...)
				return nil
			}
			r.Resp = append(r.Resp, line...)
			// The blocks are recorded for a reply that is blocks from Resp's start under END, as
			// Merge reads it: an error line, or blocks after something else, are read there as
			// they are.
			if record && from == 0 && bytes.Equal(line, endLine) {
				r.Scratch[0].End = len(r.Resp)
			}
			return nil // END, or an error line
		}
		body := trimEOL(line)
		var tok [6]twemproxy.Span
		n := fields(body, 0, tok[:])
		if n < 4 || n > 5 {
			return fmt.Errorf("%w: %q", twemproxy.ErrBadResponse, line)
		}
		size, ok := decimal(span(body, tok[3]))
		if !ok || size > 64*p.maxValue() {
			return fmt.Errorf("%w: %q", twemproxy.ErrBadResponse, line)
		}
		if over = over || len(r.Resp)-from+len(line)+size+2+len(endLine) > p.maxReply(); over {
			if _, err := br.Discard(size + 2); err != nil {
				return errUnexpected(err)
			}
			continue
		}
		key := len(r.Resp) + tok[1].Start
		r.Resp = append(r.Resp, line...)
		start := len(r.Resp)
		r.Resp = grow(r.Resp, size+2)
		if _, err := io.ReadFull(br, r.Resp[start:]); err != nil {
			return errUnexpected(err)
		}
		if record {
			r.Scratch = append(r.Scratch, twemproxy.Span{Start: key, End: len(r.Resp)})
		}
	}
}

// blocksMark, as Scratch[0].Start of a retrieval's fragment, asks ReadResponse to record the VALUE
// blocks of the reply in Scratch: Scratch[0].End is then the length of the reply they were
// recorded in (-1 if none were), and each Scratch[1+j] is block j's key start and block end.
// The span of a command's prefix, Scratch[0] of a request ReadRequest read, never starts below 0.
const blocksMark = -1

// recorded reports whether ReadResponse recorded the VALUE blocks of f's reply: not if f is no
// fragment, its reply is not blocks under END, or the reply changed since.
func recorded(f *twemproxy.Request) bool {
	return len(f.Scratch) > 0 && f.Scratch[0].Start == blocksMark && f.Scratch[0].End == len(f.Resp)
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
	frag.Scratch = append(frag.Scratch[:0], twemproxy.Span{Start: blocksMark, End: -1})
	for _, k := range keys {
		frag.Buf = append(frag.Buf, ' ')
		s := len(frag.Buf)
		frag.Buf = append(frag.Buf, r.Key(k)...)
		frag.Keys = append(frag.Keys, twemproxy.Span{Start: s, End: len(frag.Buf)})
	}
	frag.Buf = append(frag.Buf, "\r\n"...)
}

// decimal parses b, a VALUE line's <bytes>: decimal digits, as memcached writes them.
func decimal(b []byte) (int, bool) {
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' || v > (math.MaxInt-9)/10 {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, len(b) > 0
}

// blockFor returns the length of the VALUE block at the start of b ("VALUE <key> <flags> <bytes>
// [<cas unique>]\r\n<data>\r\n", as ReadResponse reads it) if that block is whole and its key is
// key, else 0.
func blockFor(b, key []byte) int {
	const value = "VALUE "
	if !bytes.HasPrefix(b, []byte(value)) {
		return 0
	}
	k := len(value)
	for k < len(b) && b[k] == ' ' {
		k++
	}
	// A key has no spaces or control characters: b holds it as its second token only if a space
	// follows it on the line.
	end := k + len(key)
	if end >= len(b) || !bytes.Equal(b[k:end], key) || b[end] != ' ' {
		return 0
	}
	nl := bytes.IndexByte(b[end:], '\n')
	if nl < 0 {
		return 0
	}
	nl += end
	var tok [4]twemproxy.Span
	rest := trimEOL(b[end : nl+1])
	if n := fields(rest, 0, tok[:]); n < 2 || n > 3 { // <flags> <bytes> [<cas unique>]
		return 0
	}
	size, ok := decimal(span(rest, tok[1]))
	if !ok || size > len(b)-nl-1-2 {
		return 0
	}
	return nl + 1 + size + 2
}

// Merge joins the fragments' VALUE blocks under one END in the order of the request's keys, as
// memcached answers the whole request: it sends each hit's block in the order the keys were asked,
// a repeated key's once per time it was asked, and nothing for a miss. So the block for key i is
// the next one of its fragment (r.KeyFrag[i]) if that block's key is key i, and key i is a miss
// otherwise. A block no key took (from a server that answered in another order) is not lost: it
// follows the others, in fragment order. If a fragment failed, the reply is that fragment's error;
// if a fragment's reply does not end with END (a server's error line), that reply; and if the
// blocks together pass MaxReplySize, replyGetLarge.
func (p *Protocol) Merge(r *twemproxy.Request, frags []*twemproxy.Request) {
	size := len(endLine)
	for _, f := range frags {
		if err := f.Err(); err != nil {
			r.Resp = p.ErrorReply(r.Resp[:0], err)
			return
		}
		if !bytes.HasSuffix(f.Resp, endLine) {
			r.Resp = append(r.Resp[:0], f.Resp...)
			return
		}
		size += len(f.Resp) - len(endLine)
	}
	if size > p.maxReply() {
		r.Resp = append(r.Resp[:0], replyGetLarge...)
		return
	}
	r.Resp = slices.Grow(r.Resp[:0], size)
	// For fragment f, next[2f] is the part of its reply not merged yet and next[2f+1] its blocks
	// that ReadResponse recorded and Merge has not taken yet: Start indexes them in the fragment's
	// Scratch, up to End, which is -1 when none were recorded and the reply is parsed instead. They
	// live in r.Scratch past the command's prefix (Fragment is done with it), which keeps its
	// capacity from one request to the next.
	base := len(r.Scratch)
	r.Scratch = slices.Grow(r.Scratch, 2*len(frags))[:base+2*len(frags)]
	next := r.Scratch[base:]
	for f, fr := range frags {
		next[2*f] = twemproxy.Span{End: len(fr.Resp) - len(endLine)}
		next[2*f+1] = twemproxy.Span{Start: 1, End: -1}
		if recorded(fr) {
			next[2*f+1].End = len(fr.Scratch)
		}
	}
	if len(r.KeyFrag) == len(r.Keys) {
		for i, f := range r.KeyFrag {
			if f < 0 || f >= len(frags) {
				continue
			}
			resp, at, blocks := frags[f].Resp, &next[2*f], &next[2*f+1]
			end := 0
			if blocks.End < 0 {
				if n := blockFor(resp[at.Start:at.End], r.Key(i)); n > 0 {
					end = at.Start + n
				}
			} else if blocks.Start < blocks.End {
				end = recordedFor(resp, *at, frags[f].Scratch[blocks.Start], r.Key(i))
			}
			if end > 0 {
				r.Resp = append(r.Resp, resp[at.Start:end]...)
				at.Start = end
				blocks.Start++
			}
		}
	}
	for f := range frags {
		at := next[2*f]
		r.Resp = append(r.Resp, frags[f].Resp[at.Start:at.End]...)
	}
	r.Resp = append(r.Resp, endLine...)
	r.Scratch = r.Scratch[:base]
}

// recordedFor is blockFor for the recorded block b, the next one in resp's part at: the end of
// that block in resp if its key is key, else 0.
func recordedFor(resp []byte, at, b twemproxy.Span, key []byte) int {
	k := b.Start + len(key)
	if b.Start < at.Start || k >= b.End || b.End > at.End || !bytes.Equal(resp[b.Start:k], key) || resp[k] != ' ' {
		return 0
	}
	return b.End
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
