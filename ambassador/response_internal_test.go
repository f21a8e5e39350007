package ambassador

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
	"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: Keep-Alive\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close, foo\r\n\r\nabc",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: foo, keep-alive\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nX-Multi: a\r\nx-multi: b\r\nSet-Cookie: c=1\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nFolded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Spaced : yes\r\nx-spaced: too\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
	"HTTP/1.1 2x0 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}

type parsed struct {
	Status int
	Header http.Header
	CL     int64
	Close  bool
	Body   string
	Err    bool
}

func parseWith(data []byte, method string, own bool) parsed {
	req, _ := http.NewRequest(method, "http://x/", nil)
	br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	var resp *http.Response
	var err error
	if own {
		uc := &upConn{br: br}
		resp, err = uc.readResponse(req)
	} else {
		// net/http's parse, field names cleaned as RFC 9112, 5.1 asks a proxy to (fixFieldNames).
		if resp, err = http.ReadResponse(br, req); err == nil {
			err = fixFieldNames(resp.Header)
		}
	}
	if err != nil {
		return parsed{Err: true}
	}
	body, berr := io.ReadAll(resp.Body)
	h := resp.Header.Clone()
	delete(h, "Connection") // hop-by-hop: net/http drops "close"; the proxy never forwards it
	return parsed{Status: resp.StatusCode, Header: h, CL: resp.ContentLength, Close: resp.Close, Body: string(body), Err: berr != nil}
}

// TestReadResponseMatchesNetHTTP: the in-place parser agrees with http.ReadResponse (on what the
// proxy uses, field names cleaned by fixFieldNames) for every seed, for GET and HEAD.
func TestReadResponseMatchesNetHTTP(t *testing.T) {
	for _, s := range responseSeeds {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			want, got := parseWith([]byte(s), m, false), parseWith([]byte(s), m, true)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s %q (-net/http +ours):\n%s", m, s, diff)
			}
		}
	}
}

func FuzzReadResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		m := http.MethodGet
		if head {
			m = http.MethodHead
		}
		want, got := parseWith(data, m, false), parseWith(data, m, true)
		if want.Err {
			return // net/http rejects it; ours may only have rejected it too or fallen back
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s %q (-net/http +ours):\n%s", m, data, diff)
		}
	})
}
