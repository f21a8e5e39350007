package redis

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

// Defaults for Protocol's limits.
const (
	DefaultMaxRequestSize = 64 << 20 // bytes of one request
	DefaultMaxArgs        = 1 << 20  // arguments of one request
	maxDepth              = 64       // nesting of a reply
	// maxInlineLine bounds an inline command line, its CRLF included, as redis-server 7 bounds a
	// line sent in one write on a new connection. redis refuses a line only when, after a read, it
	// holds more than PROTO_INLINE_MAX_SIZE (64 KiB) of it without its LF; and it reads a new
	// connection 16 KiB first, then up to 80 KiB in all, less the 10 bytes of its buffer's header
	// (jemalloc's 80 KiB size class, for the 64 KiB its buffer asks for then). So it runs a line of
	// up to 81910 bytes that comes at once, and refuses a longer one.
	maxInlineLine = 80<<10 - 10
	// maxLenDigits is the most digits a "*N" / "$N" line may have: as many as an int always holds
	// (18 where int has 64 bits, 9 where it has 32), so that a longer number is refused instead
	// of wrapping round.
	maxLenDigits = 9 * (strconv.IntSize / 32)
)

var (
	// ErrProtocol is returned for a request that is not valid RESP.
	ErrProtocol = errors.New("redis: protocol error")
	// ErrTooLarge is returned for a request over the size limits.
	ErrTooLarge = errors.New("redis: request too large")
)

var (
	replyPong = []byte("+PONG\r\n")
	replyOK   = []byte("+OK\r\n")
	crlf      = []byte("\r\n")
)

// Protocol is redis' RESP2 protocol for twemproxy pools. Replies are passed through as the server
// sends them, RESP3 types included. The zero value is ready to use with the default limits.
type Protocol struct {
	// MaxRequestSize bounds one request's bytes (0: DefaultMaxRequestSize).
	MaxRequestSize int
	// MaxArgs bounds one request's argument count (0: DefaultMaxArgs).
	MaxArgs int
}

var (
	_ twemproxy.Protocol      = (*Protocol)(nil)
	_ twemproxy.Authenticator = (*Protocol)(nil)
)

// Name is "redis".
func (*Protocol) Name() string { return "redis" }

func (p *Protocol) limits() (size, args int) {
	size, args = p.MaxRequestSize, p.MaxArgs
	if size <= 0 {
		size = DefaultMaxRequestSize
	}
	if args <= 0 {
		args = DefaultMaxArgs
	}
	return size, args
}

func protoErr(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &twemproxy.ClientError{Reply: []byte("-ERR Protocol error: " + msg + "\r\n"), Err: fmt.Errorf("%w: %s", ErrProtocol, msg)}
}

func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, protoErr("line too long")
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, protoErr("line not terminated by CRLF")
	}
	return line, nil
}

// parseLen parses the decimal integer of a "*N" / "$N" line (without prefix and CRLF).
func parseLen(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > maxLenDigits {
		return 0, false
	}
	neg := false
	if b[0] == '-' {
		neg, b = true, b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// ReadRequest reads one command (a RESP array of bulk strings, or an inline command, which is
// forwarded as RESP).
func (p *Protocol) ReadRequest(br *bufio.Reader, r *twemproxy.Request) error {
	for {
		empty, err := p.readOne(br, r)
		if err != nil || !empty {
			return err
		}
	}
}

// readOne reads one request; empty reports an empty one (which redis ignores).
func (p *Protocol) readOne(br *bufio.Reader, r *twemproxy.Request) (empty bool, err error) {
	maxSize, maxArgs := p.limits()
	first, err := br.Peek(1)
	if err != nil {
		return false, err
	}
	r.Buf, r.Scratch = r.Buf[:0], r.Scratch[:0]
	if first[0] == '*' && readBuffered(br, r, maxSize, maxArgs) {
		return false, p.classify(r)
	}
	if first[0] != '*' {
		if empty, err := p.readInline(br, r); err != nil || empty {
			return empty, err
		}
	} else {
		line, err := readLine(br)
		if err != nil {
			return false, err
		}
		n, ok := parseLen(line[1 : len(line)-2])
		if !ok {
			return false, protoErr("invalid multibulk length")
		}
		if n > maxArgs {
			return false, &twemproxy.ClientError{Reply: []byte("-ERR Protocol error: too many arguments\r\n"), Err: ErrTooLarge}
		}
		r.Buf = append(r.Buf, line...)
		if n <= 0 {
			r.Buf = r.Buf[:0]
			return true, nil // redis ignores empty multibulks
		}
		for range n {
			line, err := readLine(br)
			if err != nil {
				return false, err
			}
			if line[0] != '$' {
				return false, protoErr("expected '$', got '%c'", line[0])
			}
			size, ok := parseLen(line[1 : len(line)-2])
			if !ok || size < 0 {
				return false, protoErr("invalid bulk length")
			}
			if len(r.Buf)+len(line)+size+2 > maxSize {
				return false, &twemproxy.ClientError{Reply: []byte("-ERR Protocol error: request too large\r\n"), Err: ErrTooLarge}
			}
			r.Buf = append(r.Buf, line...)
			start := len(r.Buf)
			r.Buf = grow(r.Buf, size+2)
			if _, err := io.ReadFull(br, r.Buf[start:]); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return false, err
			}
			if !bytes.Equal(r.Buf[len(r.Buf)-2:], crlf) {
				return false, protoErr("bulk string not terminated by CRLF")
			}
			r.Scratch = append(r.Scratch, twemproxy.Span{Start: start, End: start + size})
		}
	}
	return false, p.classify(r)
}

// readBuffered reads a multibulk request that br holds whole and that is valid and within the
// limits, in one pass over br's buffer and one copy; it reports false, having read nothing, for
// anything else, which readOne then reads piece by piece (and answers with the same errors).
func readBuffered(br *bufio.Reader, r *twemproxy.Request, maxSize, maxArgs int) bool {
	b, _ := br.Peek(br.Buffered())
	n, off, ok := bufferedLen(b, 0)
	if !ok || n <= 0 || n > maxArgs || n > len(b) {
		return false
	}
	spans := r.Scratch[:0]
	for range n {
		if off >= len(b) || b[off] != '$' {
			return false
		}
		size, end, ok := bufferedLen(b, off)
		if !ok || size < 0 || end+size+2 > len(b) || end+size+2 > maxSize {
			return false
		}
		if b[end+size] != '\r' || b[end+size+1] != '\n' {
			return false
		}
		spans = append(spans, twemproxy.Span{Start: end, End: end + size})
		off = end + size + 2
	}
	r.Scratch = spans
	r.Buf = append(r.Buf[:0], b[:off]...)
	_, _ = br.Discard(off)
	return true
}

// bufferedLen parses the "*N" or "$N" line at b[off:], which must end in CRLF within b: the
// number and the offset after the line. It takes only 1 to maxLenDigits digits (no sign): readBuffered's
// caller reads anything else piece by piece. The digits are scanned in place, without a search
// for the line's end first: a length line is a few bytes.
func bufferedLen(b []byte, off int) (n, end int, ok bool) {
	i := off + 1
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	if d := i - off - 1; d < 1 || d > maxLenDigits || i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
		return 0, 0, false
	}
	return n, i + 2, true
}

// readInline reads an inline command: a line split into arguments as redis' sdssplitargs splits
// it, and forwarded as RESP.
func (p *Protocol) readInline(br *bufio.Reader, r *twemproxy.Request) (empty bool, err error) {
	maxSize, maxArgs := p.limits()
	limit := min(maxInlineLine, maxSize+1)
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// Longer than br's buffer: gather it in r.Buf, which the arguments then follow.
		r.Buf = append(r.Buf, line...)
		for err == bufio.ErrBufferFull && len(r.Buf) <= limit {
			line, err = br.ReadSlice('\n')
			r.Buf = append(r.Buf, line...)
		}
		line = r.Buf
	}
	if len(line) > limit || err == bufio.ErrBufferFull {
		return false, protoErr("too big inline request")
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return false, err
	}
	// Like redis, take off the LF and one CR before it; any other CR separates arguments.
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if bytes.IndexByte(line, 0) >= 0 {
		// redis looks for the line's end with strchr, which stops at a NUL: it never runs such a
		// line, and waits for more until the request is too big.
		return false, protoErr("NUL byte in inline request")
	}
	// The arguments, decoded, go to r.Buf after the line if it is there, then the RESP command
	// after them, which is then moved to r.Buf's start.
	for rest := skipBlanks(line); len(rest) > 0; rest = skipBlanks(rest) {
		if len(r.Scratch) == maxArgs {
			return false, &twemproxy.ClientError{Reply: []byte("-ERR Protocol error: too many arguments\r\n"), Err: ErrTooLarge}
		}
		start := len(r.Buf)
		if r.Buf, rest, err = appendInlineArg(r.Buf, rest); err != nil {
			return false, err
		}
		r.Scratch = append(r.Scratch, twemproxy.Span{Start: start, End: len(r.Buf)})
	}
	if len(r.Scratch) == 0 {
		r.Buf = r.Buf[:0]
		return true, nil // a blank line: redis ignores it
	}
	cmd := len(r.Buf)
	r.Buf = append(r.Buf, '*')
	r.Buf = strconv.AppendInt(r.Buf, int64(len(r.Scratch)), 10)
	r.Buf = append(r.Buf, crlf...)
	for i, s := range r.Scratch {
		r.Buf = appendBulk(r.Buf, r.Buf[s.Start:s.End])
		r.Scratch[i] = twemproxy.Span{Start: len(r.Buf) - 2 - (s.End - s.Start) - cmd, End: len(r.Buf) - 2 - cmd}
	}
	if len(r.Buf)-cmd > maxSize {
		return false, &twemproxy.ClientError{Reply: []byte("-ERR Protocol error: request too large\r\n"), Err: ErrTooLarge}
	}
	r.Buf = r.Buf[:copy(r.Buf, r.Buf[cmd:])]
	return false, nil
}

// errUnbalanced is redis' reply to an inline command with a quote not closed, or closed and not
// followed by a blank.
var errUnbalanced = &twemproxy.ClientError{
	Reply: []byte("-ERR Protocol error: unbalanced quotes in request\r\n"),
	Err:   fmt.Errorf("%w: unbalanced quotes in inline request", ErrProtocol),
}

// isBlank is C's isspace: what sdssplitargs skips between arguments, and what may follow a
// closing quote (space, \t, \n, \v, \f, \r).
func isBlank(c byte) bool { return c == ' ' || c-'\t' <= '\r'-'\t' }

func skipBlanks(b []byte) []byte {
	for len(b) > 0 && isBlank(b[0]) {
		b = b[1:]
	}
	return b
}

// appendInlineArg appends to dst the argument that line starts with (line is not empty and does
// not start with a blank), decoded as sdssplitargs does, and returns the rest of the line after
// it. The argument ends at a space, \t, \r or \n outside quotes (\v and \f are part of it).
// Quotes may start anywhere in it: in double quotes, \xHH is a byte given in hex, \n \r \t \b
// \a the control characters, and a backslash before any other character that character; in
// single quotes, \' is a quote and nothing else is escaped. A closing quote must be followed by a
// blank or the line's end.
func appendInlineArg(dst, line []byte) ([]byte, []byte, error) {
	i := 0
	for i < len(line) {
		switch line[i] {
		case ' ', '\t', '\r', '\n':
			return dst, line[i+1:], nil
		case '"':
			return appendDoubleQuoted(dst, line, i+1)
		case '\'':
			return appendSingleQuoted(dst, line, i+1)
		}
		j := i + 1
		for j < len(line) && !special(line[j]) {
			j++
		}
		dst = append(dst, line[i:j]...)
		i = j
	}
	return dst, nil, nil
}

// special reports whether c ends an unquoted run of an inline argument.
func special(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '\''
}

// appendDoubleQuoted appends the double-quoted part of an argument from line[i] (after the quote).
func appendDoubleQuoted(dst, line []byte, i int) ([]byte, []byte, error) {
	for i < len(line) {
		c := line[i]
		switch {
		case c == '"':
			return closeQuote(dst, line, i)
		case c != '\\' || i+1 == len(line):
			dst = append(dst, c)
			i++
		case line[i+1] == 'x' && i+3 < len(line) && isHex(line[i+2]) && isHex(line[i+3]):
			dst = append(dst, unhex(line[i+2])<<4|unhex(line[i+3]))
			i += 4
		default:
			c = line[i+1]
			switch c {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'b':
				c = '\b'
			case 'a':
				c = '\a'
			}
			dst = append(dst, c)
			i += 2
		}
	}
	return dst, nil, errUnbalanced
}

// appendSingleQuoted appends the single-quoted part of an argument from line[i] (after the quote).
func appendSingleQuoted(dst, line []byte, i int) ([]byte, []byte, error) {
	for i < len(line) {
		switch c := line[i]; {
		case c == '\'':
			return closeQuote(dst, line, i)
		case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
			dst = append(dst, '\'')
			i += 2
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst, nil, errUnbalanced
}

// closeQuote ends the argument at the closing quote line[i], which must be followed by a blank or
// the line's end.
func closeQuote(dst, line []byte, i int) ([]byte, []byte, error) {
	if i+1 < len(line) && !isBlank(line[i+1]) {
		return dst, nil, errUnbalanced
	}
	return dst, line[i+1:], nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func appendBulk(b, a []byte) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(a)), 10)
	b = append(b, crlf...)
	b = append(b, a...)
	return append(b, crlf...)
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

func (r2 reqArgs) arg(i int) []byte { return r2.r.Buf[r2.r.Scratch[i].Start:r2.r.Scratch[i].End] }

type reqArgs struct{ r *twemproxy.Request }

func localErr(r *twemproxy.Request, format string, args ...any) error {
	r.Local = true
	r.Resp = append(r.Resp[:0], "-ERR "...)
	r.Resp = fmt.Appendf(r.Resp, format, args...)
	r.Resp = append(r.Resp, crlf...)
	return nil
}

// classify looks the command up, finds its keys, or answers it locally.
func (p *Protocol) classify(r *twemproxy.Request) error {
	a := reqArgs{r}
	name := a.arg(0)
	var up [24]byte
	if len(name) > len(up) {
		return localErr(r, "unknown command '%s'", sanitize(name[:len(up)]))
	}
	for i, c := range name {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	cmd := up[:len(name)]
	var info *cmdInfo
	if len(cmd) > 0 {
		info = lookup(cmd)
	}
	if info == nil {
		return localErr(r, "unsupported command '%s' (not forwarded by the sharding proxy)", sanitize(name))
	}
	nargs := len(r.Scratch)
	if nargs < int(info.arity) {
		return localErr(r, "wrong number of arguments for '%s' command", bytes.ToLower(cmd))
	}
	r.Keys = r.Keys[:0]
	r.Kind = uint8(info.shape)
	switch info.shape {
	case shapeLocal:
		return p.local(r, string(cmd))
	case shapeAuth:
		if nargs > 3 {
			return localErr(r, "wrong number of arguments for 'auth' command")
		}
		r.Local, r.Auth = true, true
		r.Keys = append(r.Keys, r.Scratch[nargs-1]) // AUTH [username] password: the proxy checks the password
		r.Resp = append(r.Resp[:0], "-ERR AUTH is handled by the pool\r\n"...)
	case shapeKey:
		r.Keys = append(r.Keys, r.Scratch[1])
	case shapeMGet, shapeSum:
		r.Keys = append(r.Keys, r.Scratch[1:]...)
		r.MultiKey = len(r.Keys) > 1
	case shapeMSet:
		if nargs%2 != 1 {
			return localErr(r, "wrong number of arguments for 'mset' command")
		}
		for i := 1; i < nargs; i += 2 {
			r.Keys = append(r.Keys, r.Scratch[i])
		}
		r.MultiKey = len(r.Keys) > 1
	case shapeNoKey:
		// No key: the pool sends it where an empty key goes (the hash 0).
	case shapeKeys, shapeEval:
		if !countedKeys(r, info) {
			if info.shape == shapeEval {
				return evalKeyCountErr(r, string(cmd), a.arg(int(info.numkeys)))
			}
			// A bad key count: sent, as nutcracker does, by the first argument, for the server
			// to answer with its error.
			r.Keys = append(r.Keys[:0], r.Scratch[1])
		}
		r.MultiKey = len(r.Keys) > 1
	case shapeStore:
		r.Keys = append(r.Keys, r.Scratch[1])
		storeKeys(r, int(info.opts))
		r.MultiKey = len(r.Keys) > 1
	}
	return nil
}

// countedKeys appends the keys of a shapeKeys or shapeEval command to r.Keys: the arguments
// info.first..info.last, then as many as the argument info.numkeys says. It reports false if that
// count is not a number from 1 to the arguments left.
func countedKeys(r *twemproxy.Request, info *cmdInfo) bool {
	nargs := len(r.Scratch)
	if info.first > 0 {
		last := min(int(info.last), nargs-1)
		r.Keys = append(r.Keys, r.Scratch[info.first:last+1]...)
	}
	if info.numkeys == 0 {
		return true
	}
	at := int(info.numkeys)
	nk, ok := parseLen(reqArgs{r}.arg(at))
	if !ok || nk < 1 || nk > nargs-at-1 {
		return false
	}
	r.Keys = append(r.Keys, r.Scratch[at+1:at+1+nk]...)
	return true
}

// evalKeyCountErr answers the command cmd (EVAL, EVALSHA, EVAL_RO, EVALSHA_RO) whose key count
// nk the proxy cannot route by: where redis refuses the count, with redis' error; where redis
// would run the script without keys (0), with an error that says the proxy cannot.
func evalKeyCountErr(r *twemproxy.Request, cmd string, nk []byte) error {
	if len(cmd) >= 7 && equalFold([]byte(cmd[:7]), "EVALSHA") && len(reqArgs{r}.arg(1)) != 40 {
		// redis looks a script up before it reads the key count, and no sha of another length
		// names one.
		r.Local = true
		r.Resp = append(r.Resp[:0], "-NOSCRIPT No matching script. Please use EVAL.\r\n"...)
		return nil
	}
	switch n, ok := redisInt(nk); {
	case !ok:
		return localErr(r, "value is not an integer or out of range")
	case n < 0:
		return localErr(r, "Number of keys can't be negative")
	case n == 0:
		return localErr(r, "%s needs at least one key to be routed by the sharding proxy", cmd)
	}
	return localErr(r, "Number of keys can't be greater than number of args")
}

// redisInt parses b as redis' string2ll does: a 64-bit decimal integer with an optional minus
// sign and no leading zero ("0" itself, but not "-0", "00" or "+1").
func redisInt(b []byte) (int64, bool) {
	digits := bytes.TrimPrefix(b, []byte("-"))
	if len(b) > 20 || len(digits) == 0 || digits[0] < '0' || digits[0] > '9' || (digits[0] == '0' && len(b) > 1) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// storeKeys appends to r.Keys the keys of SORT's STORE option and GEORADIUS' STORE and STOREDIST,
// looking at the options from the argument opts on. It skips the values of the options that take
// some (BY, GET, LIMIT, COUNT), as redis does, so that a pattern named "store" is not taken for
// the option.
func storeKeys(r *twemproxy.Request, opts int) {
	a := reqArgs{r}
	for i := opts; i < len(r.Scratch); i++ {
		switch opt := a.arg(i); {
		case equalFold(opt, "STORE") || equalFold(opt, "STOREDIST"):
			if i+1 < len(r.Scratch) {
				i++
				r.Keys = append(r.Keys, r.Scratch[i])
			}
		case equalFold(opt, "BY") || equalFold(opt, "GET") || equalFold(opt, "COUNT"):
			i++
		case equalFold(opt, "LIMIT"):
			i += 2
		}
	}
}

// equalFold reports whether b is the upper-case ASCII word up in any case.
func equalFold(b []byte, up string) bool {
	if len(b) != len(up) {
		return false
	}
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != up[i] {
			return false
		}
	}
	return true
}

func sanitize(b []byte) []byte {
	if len(b) > 64 {
		b = b[:64]
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < ' ' || c > '~' {
			c = '?'
		}
		out = append(out, c)
	}
	return out
}

func (p *Protocol) local(r *twemproxy.Request, cmd string) error {
	a := reqArgs{r}
	r.Local = true
	r.Resp = r.Resp[:0]
	switch cmd {
	case "PING":
		if len(r.Scratch) > 1 {
			r.Resp = appendBulk(r.Resp, a.arg(1))
		} else {
			r.Resp = append(r.Resp, replyPong...)
		}
	case "ECHO":
		if len(r.Scratch) != 2 {
			return localErr(r, "wrong number of arguments for 'echo' command")
		}
		r.Resp = appendBulk(r.Resp, a.arg(1))
	case "QUIT":
		r.Quit = true
		r.Resp = append(r.Resp, replyOK...)
	case "SELECT":
		if len(r.Scratch) != 2 {
			return localErr(r, "wrong number of arguments for 'select' command")
		}
		// The pool answers it (SelectReply): it knows the database its servers are on.
		r.Select = true
		r.Keys = append(r.Keys[:0], r.Scratch[1])
		r.Resp = append(r.Resp, "-ERR SELECT is handled by the pool\r\n"...)
	}
	return nil
}

// ReadResponse reads one complete reply of any RESP2 or RESP3 type.
func (p *Protocol) ReadResponse(br *bufio.Reader, r *twemproxy.Request) error {
	if b, _ := br.Peek(br.Buffered()); len(b) > 0 {
		if n := bufferedReply(b); n > 0 {
			r.Resp = append(r.Resp, b[:n]...)
			_, _ = br.Discard(n)
			return nil
		}
	}
	var err error
	r.Resp, err = readValue(br, r.Resp, 0)
	return err
}

// bufferedReply returns the length of the simple or bulk reply at the start of b if b holds it
// whole and readValue would take it as it is, or 0 (then readValue reads it).
func bufferedReply(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 2 || b[i-1] != '\r' {
		return 0
	}
	switch b[0] {
	case '+', '-', ':', ',', '_', '#', '(':
		return i + 1
	case '$', '!', '=':
		n, ok := parseLen(b[1 : i-1])
		switch {
		case !ok:
			return 0
		case n < 0:
			return i + 1
		case i+1+n+2 <= len(b):
			return i + 1 + n + 2
		}
	}
	return 0
}

func readValue(br *bufio.Reader, dst []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return dst, fmt.Errorf("%w: nested too deep", twemproxy.ErrBadResponse)
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == bufio.ErrBufferFull {
			err = fmt.Errorf("%w: line too long", twemproxy.ErrBadResponse)
		}
		return dst, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return dst, fmt.Errorf("%w: %q", twemproxy.ErrBadResponse, line)
	}
	dst = append(dst, line...)
	// line is in br's buffer, which the reads of nested values can move: keep its type.
	kind := line[0]
	switch kind {
	case '+', '-', ':', ',', '_', '#', '(':
		return dst, nil
	case '$', '!', '=':
		n, ok := parseLen(line[1 : len(line)-2])
		if !ok {
			return dst, fmt.Errorf("%w: %q", twemproxy.ErrBadResponse, line)
		}
		if n < 0 {
			return dst, nil
		}
		start := len(dst)
		dst = grow(dst, n+2)
		if _, err := io.ReadFull(br, dst[start:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
		return dst, nil
	case '*', '~', '>', '%', '|':
		n, ok := parseLen(line[1 : len(line)-2])
		if !ok {
			return dst, fmt.Errorf("%w: %q", twemproxy.ErrBadResponse, line)
		}
		if kind == '%' || kind == '|' {
			n *= 2
		}
		for range n {
			if dst, err = readValue(br, dst, depth+1); err != nil {
				return dst, err
			}
		}
		if kind == '|' { // attributes precede the reply they describe
			return readValue(br, dst, depth+1)
		}
		return dst, nil
	}
	return dst, fmt.Errorf("%w: %q", twemproxy.ErrBadResponse, line)
}

// Fragment builds the command for the keys with the given indexes (MGET, DEL, UNLINK, EXISTS,
// TOUCH: those keys; MSET: their key value pairs). A command whose keys must share a server is
// not split: the pool asks for fragments when its keys are on different servers, and Merge then
// refuses it; its fragments are "PING key", which change nothing on the servers.
func (p *Protocol) Fragment(r *twemproxy.Request, keys []int, frag *twemproxy.Request) {
	a := reqArgs{r}
	shape := cmdShape(r.Kind)
	frag.Kind = r.Kind
	if shape.together() {
		key := r.Key(keys[0])
		frag.Buf = append(frag.Buf[:0], "*2\r\n$4\r\nPING\r\n"...)
		frag.Buf = appendBulk(frag.Buf, key)
		frag.Keys = append(frag.Keys[:0], twemproxy.Span{Start: len(frag.Buf) - 2 - len(key), End: len(frag.Buf) - 2})
		return
	}
	n := 1 + len(keys)
	if shape == shapeMSet {
		n = 1 + 2*len(keys)
	}
	frag.Buf = append(frag.Buf[:0], '*')
	frag.Buf = strconv.AppendInt(frag.Buf, int64(n), 10)
	frag.Buf = append(frag.Buf, crlf...)
	frag.Buf = appendBulk(frag.Buf, a.arg(0))
	frag.Keys = frag.Keys[:0]
	for _, k := range keys {
		key := r.Key(k)
		frag.Buf = appendBulk(frag.Buf, key)
		frag.Keys = append(frag.Keys, twemproxy.Span{Start: len(frag.Buf) - 2 - len(key), End: len(frag.Buf) - 2})
		if shape == shapeMSet {
			frag.Buf = appendBulk(frag.Buf, a.arg(2+2*k))
		}
	}
}

// Merge combines the fragments' replies: MGET's arrays back into key order, the integers of
// DEL/UNLINK/EXISTS/TOUCH added up, MSET's "+OK". The first failed fragment's error wins. A
// command whose keys must share a server gets an error that says they do not.
func (p *Protocol) Merge(r *twemproxy.Request, frags []*twemproxy.Request) {
	if cmdShape(r.Kind).together() {
		r.Resp = appendSpreadErr(r.Resp[:0], reqArgs{r}.arg(0))
		return
	}
	for _, f := range frags {
		if err := f.Err(); err != nil {
			r.Resp = p.ErrorReply(r.Resp[:0], err)
			return
		}
		if len(f.Resp) > 0 && f.Resp[0] == '-' {
			r.Resp = append(r.Resp[:0], f.Resp...)
			return
		}
	}
	switch cmdShape(r.Kind) {
	case shapeSum:
		var sum int64
		for _, f := range frags {
			if len(f.Resp) < 3 || f.Resp[0] != ':' {
				r.Resp = append(r.Resp[:0], "-ERR unexpected reply from a shard\r\n"...)
				return
			}
			n, ok := parseLen(f.Resp[1 : len(f.Resp)-2])
			if !ok {
				r.Resp = append(r.Resp[:0], "-ERR unexpected reply from a shard\r\n"...)
				return
			}
			sum += int64(n)
		}
		r.Resp = append(r.Resp[:0], ':')
		r.Resp = strconv.AppendInt(r.Resp, sum, 10)
		r.Resp = append(r.Resp, crlf...)
	case shapeMSet:
		r.Resp = append(r.Resp[:0], replyOK...)
	case shapeMGet:
		for _, f := range frags {
			if !splitArray(f) {
				r.Resp = append(r.Resp[:0], "-ERR unexpected reply from a shard\r\n"...)
				return
			}
		}
		r.Resp = append(r.Resp[:0], '*')
		r.Resp = strconv.AppendInt(r.Resp, int64(len(r.Keys)), 10)
		r.Resp = append(r.Resp, crlf...)
		next := r.Scratch[:0] // the args are no longer needed: reuse as per-fragment cursors
		for range frags {
			next = append(next, twemproxy.Span{})
		}
		for _, fi := range r.KeyFrag {
			f := frags[fi]
			e := f.Scratch[next[fi].Start]
			next[fi].Start++
			r.Resp = append(r.Resp, f.Resp[e.Start:e.End]...)
		}
		r.Scratch = next
	}
}

// appendSpreadErr appends the error reply to a command (named name) whose keys are on different
// servers.
func appendSpreadErr(dst, name []byte) []byte {
	dst = append(dst, "-ERR keys of '"...)
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return append(dst, "' are on different servers; use hash_tag to keep them on one\r\n"...)
}

// splitArray records in f.Scratch the span of each element of the array reply in f.Resp.
func splitArray(f *twemproxy.Request) bool {
	b := f.Resp
	i := bytes.IndexByte(b, '\n')
	if i < 3 || b[0] != '*' {
		return false
	}
	n, ok := parseLen(b[1 : i-1])
	if !ok || n != len(f.Keys) {
		return false
	}
	f.Scratch = f.Scratch[:0]
	pos := i + 1
	for range n {
		end, ok := skipValue(b, pos, 0)
		if !ok {
			return false
		}
		f.Scratch = append(f.Scratch, twemproxy.Span{Start: pos, End: end})
		pos = end
	}
	return true
}

// skipValue returns the end of the RESP value starting at b[pos:].
func skipValue(b []byte, pos, depth int) (int, bool) {
	if depth > maxDepth || pos >= len(b) {
		return 0, false
	}
	i := bytes.IndexByte(b[pos:], '\n')
	if i < 2 {
		return 0, false
	}
	lineEnd := pos + i + 1
	switch b[pos] {
	case '$', '!', '=':
		n, ok := parseLen(b[pos+1 : lineEnd-2])
		if !ok {
			return 0, false
		}
		if n < 0 {
			return lineEnd, true
		}
		if lineEnd+n+2 > len(b) {
			return 0, false
		}
		return lineEnd + n + 2, true
	case '*', '~', '>', '%':
		n, ok := parseLen(b[pos+1 : lineEnd-2])
		if !ok {
			return 0, false
		}
		if b[pos] == '%' {
			n *= 2
		}
		p := lineEnd
		for range n {
			if p, ok = skipValue(b, p, depth+1); !ok {
				return 0, false
			}
		}
		return p, true
	}
	return lineEnd, true
}

// ErrorReply is "-ERR <err>".
func (p *Protocol) ErrorReply(dst []byte, err error) []byte {
	dst = append(dst, "-ERR "...)
	for _, c := range []byte(err.Error()) {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return append(dst, crlf...)
}

// AuthReply answers AUTH as redis does.
func (p *Protocol) AuthReply(dst []byte, status twemproxy.AuthStatus) []byte {
	switch status {
	case twemproxy.AuthOK:
		return append(dst, replyOK...)
	case twemproxy.AuthInvalid:
		return append(dst, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"...)
	case twemproxy.AuthNotSet:
		return append(dst, "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"...)
	default:
		return append(dst, "-NOAUTH Authentication required.\r\n"...)
	}
}

// SelectReply answers a client's SELECT: +OK for db, the pool's redis_db, an error otherwise.
func (p *Protocol) SelectReply(dst []byte, db int, ok bool) []byte {
	if ok {
		return append(dst, replyOK...)
	}
	return fmt.Appendf(dst, "-ERR SELECT is not allowed: the sharding proxy serves DB %d only\r\n", db)
}

// Handshake sends AUTH (redis_auth) and SELECT (redis_db) on new server connections; a server
// that refuses either (SELECT of a database it does not have) fails the connection.
func (p *Protocol) Handshake(pc *twemproxy.PoolConfig) ([]byte, int) {
	var b []byte
	n := 0
	if pc.RedisAuth != "" {
		b = append(b, "*2\r\n"...)
		b = appendBulk(b, []byte("AUTH"))
		b = appendBulk(b, []byte(pc.RedisAuth))
		n++
	}
	if pc.RedisDB != 0 {
		b = append(b, "*2\r\n"...)
		b = appendBulk(b, []byte("SELECT"))
		b = appendBulk(b, strconv.AppendInt(nil, int64(pc.RedisDB), 10))
		n++
	}
	return b, n
}

// Probe is PING.
func (p *Protocol) Probe() []byte { return []byte("*1\r\n$4\r\nPING\r\n") }

// CheckProbe expects "+PONG".
func (p *Protocol) CheckProbe(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.Equal(line, replyPong) {
		return fmt.Errorf("redis: health check reply %q", line)
	}
	return nil
}
