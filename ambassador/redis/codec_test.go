package redis_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

type parsed struct {
	Keys  []string
	Local string
	Multi bool
	Buf   string
}

var requestTests = []struct {
	name, in string
	want     []parsed
	wantErr  bool
}{
	{"get", encode("GET", "a"), []parsed{{Keys: []string{"a"}, Buf: encode("GET", "a")}}, false},
	{"lower case", encode("set", "k", "v"), []parsed{{Keys: []string{"k"}, Buf: encode("set", "k", "v")}}, false},
	{"mget", encode("MGET", "a", "b"), []parsed{{Keys: []string{"a", "b"}, Multi: true, Buf: encode("MGET", "a", "b")}}, false},
	{"mset", encode("MSET", "a", "1", "b", "2"), []parsed{{Keys: []string{"a", "b"}, Multi: true, Buf: encode("MSET", "a", "1", "b", "2")}}, false},
	{"mset odd", encode("MSET", "a", "1", "b"), []parsed{{Local: "-ERR wrong number of arguments for 'mset' command\r\n"}}, false},
	{"inline", "GET  a\r\n", []parsed{{Keys: []string{"a"}, Buf: encode("GET", "a")}}, false},
	{"empty lines skipped", "\r\n*0\r\n" + encode("PING"), []parsed{{Local: "+PONG\r\n"}}, false},
	{"binary key", encode("GET", "a\r\nb"), []parsed{{Keys: []string{"a\r\nb"}, Buf: encode("GET", "a\r\nb")}}, false},
	{"unsupported stays usable", encode("FLUSHALL") + encode("GET", "a"), []parsed{
		{Local: "-ERR unsupported command 'FLUSHALL' (not forwarded by the sharding proxy)\r\n"},
		{Keys: []string{"a"}, Buf: encode("GET", "a")}}, false},
	{"eval", encode("EVAL", "s", "2", "k1", "k2"), []parsed{{Keys: []string{"k1"}, Buf: encode("EVAL", "s", "2", "k1", "k2")}}, false},
	{"eval no keys", encode("EVAL", "s", "0", "arg"), []parsed{{Local: "-ERR EVAL needs at least one key to be routed by the sharding proxy\r\n"}}, false},
	{"bad length", "*2\r\n$x\r\n", nil, true},
	{"truncated", "*2\r\n$3\r\nGET\r\n$1\r\n", nil, true},
	{"too many args", "*99999999\r\n", nil, true},
	{"bare LF", "*1\n", nil, true},
	// A long unknown name is cut to 24 bytes and sanitized like any other: CRLF in it must not
	// end the error line and start a reply the client did not ask for.
	{"long name with CRLF", encode(strings.Repeat("A", 20) + "\r\n+OK" + strings.Repeat("B", 10)), []parsed{
		{Local: "-ERR unknown command 'AAAAAAAAAAAAAAAAAAAA??+O'\r\n"}}, false},
	// Lengths past what a 32-bit int holds are refused, not wrapped round (to 1 and 3 here).
	{"array length past 32 bits", "*4294967297\r\n$3\r\nGET\r\n", nil, true},
	{"bulk length past 32 bits", "*1\r\n$4294967299\r\nGET\r\n", nil, true},
}

func parseAll(p *redis.Protocol, in string) ([]parsed, error) {
	return parseFrom(p, bufio.NewReaderSize(strings.NewReader(in), 16<<10))
}

// parseFrom parses every request br holds.
func parseFrom(p *redis.Protocol, br *bufio.Reader) ([]parsed, error) {
	var out []parsed
	for {
		var r twemproxy.Request
		if err := p.ReadRequest(br, &r); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		pr := parsed{Multi: r.MultiKey}
		if r.Local {
			pr.Local = string(r.Resp)
		} else {
			pr.Buf = string(r.Buf)
		}
		for i := range r.Keys {
			pr.Keys = append(pr.Keys, string(r.Key(i)))
		}
		out = append(out, pr)
	}
}

func TestReadRequest(t *testing.T) {
	p := &redis.Protocol{MaxArgs: 1000}
	for _, tc := range requestTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAll(p, tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			checkPathsAgree(t, p, []byte(tc.in))
		})
	}
}

// checkPathsAgree parses in from a reader that has it whole (ReadRequest takes the buffered fast
// path) and from one that gives a byte per read (the piecewise path): the requests and the error
// must be the same.
func checkPathsAgree(t *testing.T, p *redis.Protocol, in []byte) {
	t.Helper()
	whole, werr := parseFrom(p, bufio.NewReaderSize(bytes.NewReader(in), 16<<10))
	piece, perr := parseFrom(p, bufio.NewReaderSize(iotest.OneByteReader(bytes.NewReader(in)), 16<<10))
	if fmt.Sprint(werr) != fmt.Sprint(perr) {
		t.Fatalf("%q: error %v read whole, %v read a byte at a time", in, werr, perr)
	}
	if diff := cmp.Diff(piece, whole); diff != "" {
		t.Fatalf("%q: read whole (-byte at a time +whole):\n%s", in, diff)
	}
}

var responseTests = []struct{ name, in, want string }{
	{"simple", "+OK\r\nrest", "+OK\r\n"},
	{"bulk with CRLF", "$4\r\na\r\nb\r\n", "$4\r\na\r\nb\r\n"},
	{"nil", "$-1\r\n", "$-1\r\n"},
	{"nested", "*2\r\n*1\r\n:1\r\n$-1\r\n", "*2\r\n*1\r\n:1\r\n$-1\r\n"},
	{"resp3 map", "%1\r\n+k\r\n,1.5\r\n", "%1\r\n+k\r\n,1.5\r\n"},
	{"resp3 set null bool", "~3\r\n_\r\n#t\r\n(123\r\n", "~3\r\n_\r\n#t\r\n(123\r\n"},
	{"resp3 verbatim", "=8\r\ntxt:abcd\r\n", "=8\r\ntxt:abcd\r\n"},
	{"resp3 attribute", "|1\r\n+a\r\n:1\r\n+OK\r\n", "|1\r\n+a\r\n:1\r\n+OK\r\n"},
}

func TestReadResponse(t *testing.T) {
	p := &redis.Protocol{}
	for _, tc := range responseTests {
		t.Run(tc.name, func(t *testing.T) {
			var r twemproxy.Request
			if err := p.ReadResponse(bufio.NewReader(strings.NewReader(tc.in)), &r); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(r.Resp)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFragmentMerge(t *testing.T) {
	p := &redis.Protocol{}
	var r twemproxy.Request
	if err := p.ReadRequest(bufio.NewReader(strings.NewReader(encode("MGET", "a", "b", "c"))), &r); err != nil {
		t.Fatal(err)
	}
	f0, f1 := &twemproxy.Request{}, &twemproxy.Request{}
	p.Fragment(&r, []int{0, 2}, f0)
	p.Fragment(&r, []int{1}, f1)
	if diff := cmp.Diff([]string{encode("MGET", "a", "c"), encode("MGET", "b")}, []string{string(f0.Buf), string(f1.Buf)}); diff != "" {
		t.Errorf("fragments (-want +got):\n%s", diff)
	}
	r.KeyFrag = []int{0, 1, 0}
	f0.Resp = []byte("*2\r\n$1\r\nA\r\n$-1\r\n")
	f1.Resp = []byte("*1\r\n$1\r\nB\r\n")
	p.Merge(&r, []*twemproxy.Request{f0, f1})
	if diff := cmp.Diff("*3\r\n$1\r\nA\r\n$1\r\nB\r\n$-1\r\n", string(r.Resp)); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
}

func FuzzReadRequest(f *testing.F) {
	for _, tc := range requestTests {
		f.Add([]byte(tc.in))
	}
	p := &redis.Protocol{MaxRequestSize: 4096, MaxArgs: 64}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16<<10)
		for range 100 {
			var r twemproxy.Request
			if err := p.ReadRequest(br, &r); err != nil {
				return
			}
			if r.Local {
				continue
			}
			if len(r.Keys) == 0 || r.Buf[0] != '*' {
				t.Fatalf("forwardable request %q without keys or not RESP", r.Buf)
			}
			// What is forwarded must parse again as the same command.
			var again twemproxy.Request
			if err := p.ReadRequest(bufio.NewReader(bytes.NewReader(r.Buf)), &again); err != nil || !bytes.Equal(again.Buf, r.Buf) {
				t.Fatalf("forwarded %q does not re-parse: %v", r.Buf, err)
			}
		}
	})
}

// The buffered fast path of ReadRequest reads what the piecewise path reads, errors included.
func FuzzReadRequestPaths(f *testing.F) {
	for _, tc := range requestTests {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$1\r\naXY"))
	f.Add([]byte("*1\r\n$-1\r\n"))
	p := &redis.Protocol{MaxRequestSize: 64, MaxArgs: 8}
	f.Fuzz(func(t *testing.T, data []byte) { checkPathsAgree(t, p, data) })
}

func FuzzReadResponse(f *testing.F) {
	for _, tc := range responseTests {
		f.Add([]byte(tc.in))
	}
	p := &redis.Protocol{}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r twemproxy.Request
		err := p.ReadResponse(bufio.NewReader(bytes.NewReader(data)), &r)
		if err == nil && !bytes.HasPrefix(data, r.Resp) {
			t.Fatalf("reply %q is not a prefix of the input", r.Resp)
		}
		// Read a byte at a time (no reply is buffered whole), the reply and the error are the same.
		var piece twemproxy.Request
		perr := p.ReadResponse(bufio.NewReader(iotest.OneByteReader(bytes.NewReader(data))), &piece)
		if fmt.Sprint(err) != fmt.Sprint(perr) || (err == nil && !bytes.Equal(r.Resp, piece.Resp)) {
			t.Fatalf("%q: %q, %v read whole; %q, %v a byte at a time", data, r.Resp, err, piece.Resp, perr)
		}
	})
}
