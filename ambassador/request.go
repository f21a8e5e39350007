package ambassador

import (
	"bytes"
	"context"
	"net/http"
	"net/textproto"
	"net/url"

	"golang.org/x/net/http/httpguts"
)

// Parsing client request heads with http.ReadRequest costs a Request, a URL, a header map and a
// string per header per request. parseRequest parses the common shape in place instead: a complete
// head already buffered, HTTP/1.0 or 1.1, a known method other than CONNECT, an origin-form target
// made of characters net/url keeps as they are, no body (no Content-Length other than 0, no
// Transfer-Encoding), no folded lines, no Trailer or Pragma header. It fills the connection's
// reused Request, URL and header map with one string allocation (none when the head's bytes are
// the last head's on the connection, from the target on); anything else goes to
// http.ReadRequest, which has consumed nothing yet. TestParseRequestMatchesNetHTTP and
// FuzzParseRequest compare the two.

var crlfcrlf = []byte("\r\n\r\n")

// simpleHead reports whether head (lines ending in CRLF) has no bare CR or LF and no NUL: net/http
// has its own rules for those.
func simpleHead(head []byte) bool {
	for k, c := range head {
		if (c == '\n' && (k == 0 || head[k-1] != '\r')) || (c == '\r' && (k+1 == len(head) || head[k+1] != '\n')) || c == 0 {
			return false
		}
	}
	return true
}

// parseHeaderBlock parses header lines ("Name: value" CRLF ...) into hdr, which the caller
// cleared; values are substrings of block, their slices cut from vals (returned grown). ok is false
// for anything textproto would judge differently or reject: folded lines, bad names, bad value
// bytes.
func parseHeaderBlock(block string, hdr http.Header, vals []string) ([]string, bool) {
	off := 0
	for off < len(block) {
		j := indexCRLF(block[off:])
		if j < 0 {
			return vals, false
		}
		l := block[off : off+j]
		off += j + 2
		if l == "" || l[0] == ' ' || l[0] == '\t' {
			return vals, false // folded lines and the like: let net/http judge
		}
		colon := -1
		for k := 0; k < len(l); k++ {
			if l[k] == ':' {
				colon = k
				break
			}
			if !validHeaderByte(l[k]) {
				return vals, false
			}
		}
		if colon <= 0 {
			return vals, false
		}
		key, ok := commonHeaders[l[:colon]]
		if !ok {
			key = textproto.CanonicalMIMEHeaderKey(l[:colon])
		}
		v := l[colon+1:]
		for k := 0; k < len(v); k++ {
			if c := v[k]; (c < 0x20 && c != '\t') || c == 0x7f {
				return vals, false
			}
		}
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		vals = append(vals, v)
		n := len(vals)
		if old, ok := hdr[key]; ok {
			hdr[key] = append(old[:len(old):len(old)], v)
		} else {
			hdr[key] = vals[n-1 : n : n]
		}
	}
	return vals, true
}

// fastMethods are the methods the fast path takes (CONNECT and unknown ones go to net/http).
var fastMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
	http.MethodOptions, http.MethodPatch, http.MethodTrace}

// internMethod returns the method named by b without allocating, or "" if it is not in fastMethods.
func internMethod(b []byte) string {
	for _, m := range fastMethods {
		if string(b) == m {
			return m
		}
	}
	return ""
}

// plainPathByte reports whether url.ParseRequestURI keeps c in a path as it is (no unescaping, no
// RawPath): alphanumerics, unreserved marks and the reserved characters allowed in a path.
func plainPathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '~', '$', '&', '+', ',', '/', ':', ';', '=', '@':
		return true
	}
	return false
}

// containsToken reports whether a comma-separated header value list holds token (ASCII
// case-insensitive, optional whitespace trimmed), as httpguts.HeaderValuesContainsToken does.
func containsToken(vv []string, token string) bool {
	for _, v := range vv {
		for len(v) > 0 {
			var el string
			if c := indexByteString(v, ','); c >= 0 {
				el, v = v[:c], v[c+1:]
			} else {
				el, v = v, ""
			}
			for len(el) > 0 && (el[0] == ' ' || el[0] == '\t') {
				el = el[1:]
			}
			for len(el) > 0 && (el[len(el)-1] == ' ' || el[len(el)-1] == '\t') {
				el = el[:len(el)-1]
			}
			if eqFold(el, token) {
				return true
			}
		}
	}
	return false
}

// keepAlive10 reports whether req is an HTTP/1.0 request that asks to keep its connection open: a
// keep-alive token among Connection's (as net/http matches it). Its answer, if the connection does
// stay open, says so with Connection: keep-alive, or the client would wait for the close.
func keepAlive10(req *http.Request) bool {
	return req.ProtoMajor == 1 && req.ProtoMinor == 0 && containsToken(req.Header["Connection"], "keep-alive")
}

func indexByteString(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// reqState is a client connection's reusable request parsing state.
type reqState struct {
	req  http.Request // carries the connection's context; fields are reset per request
	url  url.URL
	hdr  http.Header
	vals []string
	// text is the string parseRequest made last of a head, from its target on. The next head of
	// the same bytes (a client repeating its request on a keep-alive connection) is parsed from it
	// again: the parse is the same, and no new string is made. Strings do not change, so the
	// requests parsed from it may share it.
	text string
}

// reset prepares st for a connection whose requests run under ctx.
func (st *reqState) reset(ctx context.Context) {
	if st.hdr == nil {
		st.hdr = make(http.Header, 8)
	}
	st.req = *(&http.Request{}).WithContext(ctx)
}

// release drops what st refers to, before it is pooled.
func (st *reqState) release() {
	st.req = http.Request{}
	st.url = url.URL{}
	st.text = ""
	clear(st.hdr)
	clear(st.vals[:cap(st.vals)])
	st.vals = st.vals[:0]
}

// parseRequest parses the request head at the start of buf if it has the simple shape, returning
// the request (st.req, valid until the next call) and the head's length, or nil.
func (st *reqState) parseRequest(buf []byte) (*http.Request, int) {
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		return nil, 0
	}
	head := buf[:end+2]
	if !simpleHead(head) {
		return nil, 0
	}
	i := bytes.IndexByte(head, '\r')
	line := head[:i]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return nil, 0
	}
	method := internMethod(line[:sp1])
	if method == "" {
		return nil, 0
	}
	sp2 := bytes.IndexByte(line[sp1+1:], ' ')
	if sp2 <= 0 {
		return nil, 0
	}
	sp2 += sp1 + 1
	target, proto := line[sp1+1:sp2], line[sp2+1:]
	var minor int
	switch string(proto) {
	case "HTTP/1.1":
		minor = 1
	case "HTTP/1.0":
		minor = 0
	default:
		return nil, 0
	}
	if target[0] != '/' {
		return nil, 0
	}
	q := -1
	for k, c := range target {
		if c == '?' {
			q = k
			break
		}
		if !plainPathByte(c) {
			return nil, 0
		}
	}
	if q >= 0 {
		for _, c := range target[q+1:] {
			if c <= ' ' || c >= 0x7f {
				return nil, 0
			}
		}
	}

	// One string holds the target and every header value: the last head's when the bytes are the
	// same (the comparison does not allocate).
	s := st.text
	if string(head[sp1+1:]) != s {
		s = string(head[sp1+1:])
		st.text = s
	}
	uri := s[:len(target)]
	clear(st.hdr)
	vals, ok := parseHeaderBlock(s[i-sp1+1:], st.hdr, st.vals[:0])
	st.vals = vals
	if !ok {
		return nil, 0
	}
	h := st.hdr
	hosts := h["Host"]
	if len(hosts) > 1 {
		return nil, 0
	}
	if _, ok := h["Transfer-Encoding"]; ok {
		return nil, 0
	}
	if _, ok := h["Trailer"]; ok {
		return nil, 0
	}
	if _, ok := h["Pragma"]; ok {
		return nil, 0
	}
	if cl := h["Content-Length"]; len(cl) > 1 || (len(cl) == 1 && cl[0] != "0") {
		return nil, 0
	}
	host := ""
	if len(hosts) == 1 {
		host = hosts[0]
		if !httpguts.ValidHostHeader(host) {
			return nil, 0 // net/http's parse is checked, and refused (checkHead)
		}
	}
	delete(h, "Host") // as http.ReadRequest does: it is in Request.Host
	conn := h["Connection"]
	closeConn := containsToken(conn, "close")
	if minor == 0 && !closeConn {
		closeConn = !containsToken(conn, "keep-alive")
	}

	st.url = url.URL{}
	if q < 0 {
		st.url.Path = uri
	} else {
		st.url.Path = uri[:q]
		if q == len(uri)-1 {
			st.url.ForceQuery = true
		} else {
			st.url.RawQuery = uri[q+1:]
		}
	}
	r := &st.req
	r.Method, r.URL, r.RequestURI = method, &st.url, uri
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, minor
	if minor == 1 {
		r.Proto = "HTTP/1.1"
	}
	r.Header, r.Host, r.Close = h, host, closeConn
	r.Body, r.GetBody, r.ContentLength, r.TransferEncoding, r.Trailer = http.NoBody, nil, 0, nil, nil
	r.Form, r.PostForm, r.MultipartForm, r.TLS, r.Response, r.RemoteAddr, r.Pattern = nil, nil, nil, nil, nil, "", ""
	return r, end + 4
}
