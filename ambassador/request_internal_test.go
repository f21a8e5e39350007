package ambassador

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
	"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
	"GET /a?b? HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /%41 HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /a!b HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET http://x/y HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET //a//b HTTP/1.1\r\nHost: h\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
	"CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
	"HEAD / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: Keep-Alive, foo\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo,  CLOSE \r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX-Multi: a\r\nx-multi: b\r\nCookie: c=1\r\nCookie: d=2\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nFolded: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nBad\x01: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nV: a\x01b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nV: a\x7fb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nV: caf\xc3\xa9\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nV:\t a b \t\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nV:\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\nX: bare-lf\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 00\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
	"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
	"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nTrailer: X\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
	"get / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
	"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / http/1.1\r\nHost: h\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"GET /q?a=%zz&b=\"c\" HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\n",
}

// parsedReq is what the proxy uses of a parsed request.
type parsedReq struct {
	Method, RequestURI, Proto string
	ProtoMajor, ProtoMinor    int
	URL                       url.URL
	Header                    http.Header
	Host                      string
	Close                     bool
	ContentLength             int64
	NoBody                    bool
	TransferEncoding          []string
	Trailer                   http.Header
	Consumed                  int
}

func toParsed(r *http.Request, consumed int) parsedReq {
	return parsedReq{Method: r.Method, RequestURI: r.RequestURI, Proto: r.Proto, ProtoMajor: r.ProtoMajor,
		ProtoMinor: r.ProtoMinor, URL: *r.URL, Header: r.Header.Clone(), Host: r.Host, Close: r.Close,
		ContentLength: r.ContentLength, NoBody: r.Body == http.NoBody, TransferEncoding: r.TransferEncoding,
		Trailer: r.Trailer, Consumed: consumed}
}

// compareRequest parses data with net/http and with parseRequest. When ours takes the request,
// net/http must accept it too and agree on everything; ours may leave any request to net/http.
func compareRequest(t *testing.T, data []byte) (taken bool) {
	t.Helper()
	var st reqState
	st.reset(context.Background())
	got, n := st.parseRequest(data)
	if got == nil {
		return false
	}
	if got.Context() != context.Background() {
		t.Errorf("%q: request lost its context", data)
	}
	br := bufio.NewReaderSize(bytes.NewReader(data), len(data)+16)
	br.Peek(len(data))
	want, err := http.ReadRequest(br)
	if err != nil {
		t.Errorf("%q: ours took a request net/http rejects: %v", data, err)
		return true
	}
	if diff := cmp.Diff(toParsed(want, len(data)-br.Buffered()), toParsed(got, n)); diff != "" {
		t.Errorf("%q (-net/http +ours):\n%s", data, diff)
	}
	return true
}

// TestParseRequestMatchesNetHTTP: the in-place request parser agrees with http.ReadRequest on every
// seed it takes, and takes the ordinary ones.
func TestParseRequestMatchesNetHTTP(t *testing.T) {
	taken := 0
	for _, s := range requestSeeds {
		if compareRequest(t, []byte(s)) {
			taken++
		}
	}
	for _, s := range requestSeeds[:4] {
		if !compareRequest(t, []byte(s)) {
			t.Errorf("%q: left to net/http, want it parsed in place", s)
		}
	}
	t.Logf("%d of %d seeds parsed in place", taken, len(requestSeeds))
}

// TestParseRequestReuse: a second request on the same state does not keep the first one's headers.
func TestParseRequestReuse(t *testing.T) {
	var st reqState
	st.reset(context.Background())
	if r, _ := st.parseRequest([]byte("GET /a HTTP/1.1\r\nHost: h\r\nX-One: 1\r\n\r\n")); r == nil {
		t.Fatal("first request not parsed in place")
	}
	r, _ := st.parseRequest([]byte("GET /b?q HTTP/1.1\r\nHost: h2\r\n\r\n"))
	if r == nil {
		t.Fatal("second request not parsed in place")
	}
	if _, ok := r.Header["X-One"]; ok || r.URL.Path != "/b" || r.URL.RawQuery != "q" || r.Host != "h2" {
		t.Errorf("second request = %s %+v host %q header %v", r.Method, *r.URL, r.Host, r.Header)
	}
}

// TestParseRequestSameBytes: a head of the same bytes as the last on the state (from its target
// on) is parsed from the last one's string, without allocating, and every request parsed on one
// state, in any order, is the one a fresh state parses: a method that differs (HEAD after GET of
// the same target and headers), a Connection: close, another target, an HTTP/1.0 line, and the
// first head again after others.
func TestParseRequestSameBytes(t *testing.T) {
	heads := []string{
		"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\n\r\n",
		"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\n\r\n",
		"HEAD /a?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\n\r\n",
		"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\nConnection: close\r\n\r\n",
		"GET /a?x=2 HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\n\r\n",
		"GET /a?x=2 HTTP/1.0\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\n\r\n",
		"GET /a?x=2 HTTP/1.0\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\nExpect: 100-continue\r\n\r\n",
		"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\nAccept: */*\r\n\r\n",
	}
	var st reqState
	st.reset(context.Background())
	for i, h := range heads {
		got, n := st.parseRequest([]byte(h))
		if got == nil {
			t.Fatalf("head %d %q not parsed in place", i, h)
		}
		var fresh reqState
		fresh.reset(context.Background())
		want, wn := fresh.parseRequest([]byte(h))
		if diff := cmp.Diff(toParsed(want, wn), toParsed(got, n)); diff != "" {
			t.Errorf("head %d %q on a used state (-fresh +used):\n%s", i, h, diff)
		}
		delete(got.Header, "Expect") // as the event loop does, between its parse and the next
	}
	same := []byte(heads[0])
	st.parseRequest(same)
	if n := testing.AllocsPerRun(100, func() { st.parseRequest(same) }); n != 0 {
		t.Errorf("the last head again: %v allocations, want 0", n)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		compareRequest(t, data)
	})
}

// TestWriteRequestBodyAllocs: writeRequest reads a body through its caller's bodyReader, so that
// a request with a body allocates no more than one without, but for io.CopyN's LimitedReader; and
// it keeps no request's body there.
func TestWriteRequestBodyAllocs(t *testing.T) {
	bw := bufio.NewWriter(io.Discard)
	var body bodyReader
	sr := strings.NewReader("hello")
	allocs := func(r *http.Request) float64 {
		return testing.AllocsPerRun(100, func() {
			sr.Reset("hello")
			if err := writeRequest(bw, &body, r); err != nil {
				t.Fatal(err)
			}
		})
	}
	get, _ := http.NewRequest("GET", "http://x/form", nil)
	post, _ := http.NewRequest("POST", "http://x/form", nil)
	post.Body, post.ContentLength = io.NopCloser(sr), 5
	if g, p := allocs(get), allocs(post); p > g+1 {
		t.Errorf("writeRequest: a POST with a body allocates %v, a GET %v; want at most one more", p, g)
	}
	if body.r != nil {
		t.Error("writeRequest left the request's body in its bodyReader")
	}
}
