package ambassador

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Parsing upstream response heads is a large share of a proxied request's CPU. readResponse
// parses the common shape (a complete head already buffered, HTTP/1.x, status >= 200 other than
// 101, Content-Length framing, no folded lines) in place with one string allocation, reusing the
// connection's header map and value slices; anything else (chunked bodies, 1xx, malformed heads)
// goes to http.ReadResponse, which consumed nothing yet.

// commonHeaders interns canonical names of frequent response and request headers (m[string(b)]
// lookups do not allocate).
var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept-Ranges", "Age", "Cache-Control", "Connection", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Type", "Date", "Etag", "Expires", "Keep-Alive",
		"Last-Modified", "Location", "Server", "Set-Cookie", "Vary", "Via", "X-Backend", "X-Content-Type-Options",
		// requests
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cookie", "Expect", "Host",
		"If-Modified-Since", "If-None-Match", "Origin", "Pragma", "Referer", "Te", "Trailer", "Transfer-Encoding",
		"Upgrade", "User-Agent", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id"} {
		m[k] = k
		m[string(bytes.ToLower([]byte(k)))] = k
	}
	return m
}()

// respState is an upstream connection's reusable response parsing state.
type respState struct {
	resp http.Response
	hdr  http.Header
	vals []string
	body clBody
}

// clBody reads exactly n bytes of a Content-Length body; an early EOF is io.ErrUnexpectedEOF.
type clBody struct {
	r *bufio.Reader
	n int64
}

func (b *clBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF && b.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if b.n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

func (b *clBody) Close() error { return nil }

var errNotSimple = errors.New("not a simple response head")

// readResponse reads the response to req from uc.
func (uc *upConn) readResponse(req *http.Request) (*http.Response, error) {
	if _, err := uc.br.Peek(1); err != nil {
		return nil, err
	}
	buf, _ := uc.br.Peek(uc.br.Buffered())
	if end := bytes.Index(buf, []byte("\r\n\r\n")); end >= 0 {
		if resp, err := uc.parseSimple(buf[:end+2], req); err == nil {
			uc.br.Discard(end + 4)
			return resp, nil
		}
	}
	resp, err := http.ReadResponse(uc.br, req)
	if err != nil {
		return nil, err
	}
	if err := fixFieldNames(resp.Header); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

var errFramingName = errors.New("Content-Length or Transfer-Encoding with whitespace before its colon")

// fixFieldNames removes whitespace between a field name and its colon, which textproto keeps in
// the name ("Name : value"): RFC 9112, 5.1, a proxy must remove it before it forwards a response.
// Such a Content-Length or Transfer-Encoding was not used to frame the body, so relaying it
// would misframe the answer: that fails the response instead. Names that are no tokens even so
// are dropped.
func fixFieldNames(h http.Header) error {
	for k, vv := range h {
		if httpguts.ValidHeaderFieldName(k) {
			continue
		}
		delete(h, k)
		name := strings.TrimRight(k, " \t")
		if !httpguts.ValidHeaderFieldName(name) {
			continue
		}
		name = http.CanonicalHeaderKey(name)
		if name == "Content-Length" || name == "Transfer-Encoding" {
			return errFramingName
		}
		h[name] = append(h[name], vv...)
	}
	return nil
}

// parseSimple parses head (status line and header lines, each ending in CRLF) if it has the
// simple shape, else returns errNotSimple.
func (uc *upConn) parseSimple(head []byte, req *http.Request) (*http.Response, error) {
	st := &uc.rs
	resp, err := st.parse(head, req)
	if err != nil {
		return nil, err
	}
	st.body = clBody{r: uc.br, n: bodyLength(resp, req)}
	resp.Body = &st.body
	return resp, nil
}

// bodyLength is the length of the body that follows a simple response head.
func bodyLength(resp *http.Response, req *http.Request) int64 {
	if req.Method == http.MethodHead || noBodyStatus(resp.StatusCode) {
		return 0
	}
	return resp.ContentLength
}

// noBodyStatus reports whether an answer of status code (>= 200) has no body whatever its
// Content-Length says: 204 and 304 (RFC 9110, 6.4.1). A 204 must not have the header, and a
// 304's, if any, is the length of the representation the client holds (RFC 9110, 8.6): a proxy
// relays the endpoint's, never one of its own.
func noBodyStatus(code int) bool {
	return code == http.StatusNoContent || code == http.StatusNotModified
}

// statusOf parses a status line "HTTP/1.x SSS reason".
func statusOf(line []byte) (code, minor int, ok bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return 0, 0, false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, int(line[7] - '0'), true
}

// parse parses a simple response head into st.resp (without a Body), else returns errNotSimple.
func (st *respState) parse(head []byte, req *http.Request) (*http.Response, error) {
	if !simpleHead(head) {
		return nil, errNotSimple
	}
	i := bytes.Index(head, []byte("\r\n"))
	code, minor, ok := statusOf(head[:i])
	if !ok || code < 200 || code > 999 {
		return nil, errNotSimple
	}
	// One string holds every header value; values are substrings of it.
	if st.hdr == nil {
		st.hdr = make(http.Header, 8)
	}
	clear(st.hdr)
	vals, ok := parseHeaderBlock(string(head[i+2:]), st.hdr, st.vals[:0])
	st.vals = vals
	if !ok {
		return nil, errNotSimple
	}
	h := st.hdr
	if _, ok := h["Transfer-Encoding"]; ok {
		return nil, errNotSimple
	}
	if _, ok := h["Trailer"]; ok {
		return nil, errNotSimple
	}
	cl := int64(-1)
	switch v := h["Content-Length"]; len(v) {
	case 0:
	case 1:
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || n < 0 {
			return nil, errNotSimple
		}
		cl = n
	default:
		return nil, errNotSimple
	}
	// Connection is a comma-separated token list ("close, foo" closes too).
	closeConn := minor == 0
	if conn := h["Connection"]; containsToken(conn, "close") {
		closeConn = true
	} else if minor == 0 && containsToken(conn, "keep-alive") {
		closeConn = false
	}
	noBody := req.Method == http.MethodHead || noBodyStatus(code)
	if cl < 0 && !noBody {
		return nil, errNotSimple // close-delimited body
	}
	st.resp = http.Response{
		StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: minor,
		Header: st.hdr, ContentLength: cl, Close: closeConn, Request: req,
	}
	if noBody && cl < 0 && req.Method != http.MethodHead {
		st.resp.ContentLength = 0
	}
	return &st.resp, nil
}

func indexCRLF(s string) int {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '\r' && s[i+1] == '\n' {
			return i
		}
	}
	return -1
}

// validHeaderByte reports whether c may appear in a header field name (RFC 9110 token).
func validHeaderByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func eqFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
