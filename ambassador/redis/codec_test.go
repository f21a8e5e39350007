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

// sha40 is a script sha of the length redis looks up (redis answers NOSCRIPT to another length
// before it reads the key count).
var sha40 = strings.Repeat("0", 40)

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
	{"inline quotes", "SET k \"a b\\x41\" 'c\\'d' \"\"\r\n", []parsed{{Keys: []string{"k"}, Buf: encode("SET", "k", "a bA", "c'd", "")}}, false},
	{"inline unbalanced", "GET \"a\r\n", nil, true},
	{"inline quote not followed by blank", "GET 'a'b\r\n", nil, true},
	{"inline NUL", "GET a\x00\r\n", nil, true},
	{"inline too many args", "DEL" + strings.Repeat(" k", 1000) + "\r\n", nil, true},
	{"empty lines skipped", "\r\n*0\r\n" + encode("PING"), []parsed{{Local: "+PONG\r\n"}}, false},
	{"binary key", encode("GET", "a\r\nb"), []parsed{{Keys: []string{"a\r\nb"}, Buf: encode("GET", "a\r\nb")}}, false},
	{"unsupported stays usable", encode("FLUSHALL") + encode("GET", "a"), []parsed{
		{Local: "-ERR unsupported command 'FLUSHALL' (not forwarded by the sharding proxy)\r\n"},
		{Keys: []string{"a"}, Buf: encode("GET", "a")}}, false},
	{"eval no keys", encode("EVAL", "s", "0", "arg"), []parsed{{Local: "-ERR EVAL needs at least one key to be routed by the sharding proxy\r\n"}}, false},
	{"evalsha no keys", encode("evalsha", sha40, "0", "arg"), []parsed{{Local: "-ERR EVALSHA needs at least one key to be routed by the sharding proxy\r\n"}}, false},
	{"eval_ro no keys", encode("EVAL_RO", "s", "0"), []parsed{{Local: "-ERR EVAL_RO needs at least one key to be routed by the sharding proxy\r\n"}}, false},
	{"evalsha_ro", encode("EVALSHA_RO", sha40, "1", "k"), []parsed{{Keys: []string{"k"}, Buf: encode("EVALSHA_RO", sha40, "1", "k")}}, false},
	{"evalsha short sha", encode("EVALSHA", "s", "3", "k1"), []parsed{{Local: "-NOSCRIPT No matching script. Please use EVAL.\r\n"}}, false},
	{"eval negative key count", encode("EVAL", "s", "-1", "k"), []parsed{{Local: "-ERR Number of keys can't be negative\r\n"}}, false},
	{"eval key count not a number", encode("EVAL", "s", "-0", "k"), []parsed{{Local: "-ERR value is not an integer or out of range\r\n"}}, false},
	{"pfadd key only", encode("PFADD", "h"), []parsed{{Keys: []string{"h"}, Buf: encode("PFADD", "h")}}, false},
	{"sort key only", encode("sort", "l"), []parsed{{Keys: []string{"l"}, Buf: encode("sort", "l")}}, false},
	{"command", encode("COMMAND") + encode("command", "info", "get") + encode("LOLWUT", "VERSION", "5"), []parsed{
		{Buf: encode("COMMAND")}, {Buf: encode("command", "info", "get")}, {Buf: encode("LOLWUT", "VERSION", "5")}}, false},
	{"eval no key count", encode("EVAL", "s", "0"), []parsed{{Local: "-ERR EVAL needs at least one key to be routed by the sharding proxy\r\n"}}, false},
	{"eval too few keys", encode("EVALSHA", sha40, "3", "k1", "k2"), []parsed{{Local: "-ERR Number of keys can't be greater than number of args\r\n"}}, false},
	{"zdiff bad key count", encode("ZDIFF", "x", "a"), []parsed{{Keys: []string{"x"}, Buf: encode("ZDIFF", "x", "a")}}, false},
	{"zunionstore too few keys", encode("ZUNIONSTORE", "d", "3", "a", "b"), []parsed{{Keys: []string{"d"}, Buf: encode("ZUNIONSTORE", "d", "3", "a", "b")}}, false},
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

// keyTests are commands whose keys must share a server: where each takes its keys from.
var keyTests = []struct {
	args []string
	keys []string
}{
	{[]string{"EVAL", "s", "2", "k1", "k2", "argv"}, []string{"k1", "k2"}},
	{[]string{"evalsha", "sha", "1", "k1", "argv"}, []string{"k1"}},
	{[]string{"RPOPLPUSH", "src", "dst"}, []string{"src", "dst"}},
	{[]string{"SMOVE", "src", "dst", "m"}, []string{"src", "dst"}},
	{[]string{"LMOVE", "src", "dst", "LEFT", "RIGHT"}, []string{"src", "dst"}},
	{[]string{"COPY", "src", "dst", "DB", "0", "REPLACE"}, []string{"src", "dst"}},
	{[]string{"ZRANGESTORE", "dst", "src", "0", "-1"}, []string{"dst", "src"}},
	{[]string{"GEOSEARCHSTORE", "dst", "src", "FROMMEMBER", "m", "BYRADIUS", "1", "km", "STOREDIST"}, []string{"dst", "src"}},
	{[]string{"PFMERGE", "dst"}, []string{"dst"}},
	{[]string{"PFMERGE", "dst", "h1", "h2"}, []string{"dst", "h1", "h2"}},
	{[]string{"PFCOUNT", "h1", "h2"}, []string{"h1", "h2"}},
	{[]string{"SDIFF", "s1"}, []string{"s1"}},
	{[]string{"SDIFF", "s1", "s2", "s3"}, []string{"s1", "s2", "s3"}},
	{[]string{"SINTER", "s1", "s2"}, []string{"s1", "s2"}},
	{[]string{"SUNION", "s1", "s2"}, []string{"s1", "s2"}},
	{[]string{"SDIFFSTORE", "d", "s1"}, []string{"d", "s1"}},
	{[]string{"SINTERSTORE", "d", "s1", "s2"}, []string{"d", "s1", "s2"}},
	{[]string{"sunionstore", "d", "s1", "s2"}, []string{"d", "s1", "s2"}},
	{[]string{"ZDIFF", "2", "z1", "z2", "WITHSCORES"}, []string{"z1", "z2"}},
	{[]string{"ZINTER", "1", "z1", "WEIGHTS", "2"}, []string{"z1"}},
	{[]string{"ZUNION", "2", "z1", "z2", "AGGREGATE", "MAX"}, []string{"z1", "z2"}},
	{[]string{"ZDIFFSTORE", "d", "2", "z1", "z2"}, []string{"d", "z1", "z2"}},
	{[]string{"ZINTERSTORE", "d", "1", "z1", "WEIGHTS", "2"}, []string{"d", "z1"}},
	{[]string{"ZUNIONSTORE", "d", "2", "z1", "z2", "WEIGHTS", "1", "2"}, []string{"d", "z1", "z2"}},
	// SORT's BY and GET patterns are not keys the proxy can see; "store" after GET is a pattern.
	{[]string{"SORT", "l", "BY", "w_*", "LIMIT", "0", "10", "GET", "store", "ALPHA", "store", "dst"}, []string{"l", "dst"}},
	{[]string{"SORT", "l", "LIMIT", "store", "store", "DESC"}, []string{"l"}},
	{[]string{"GEORADIUS", "g", "0", "0", "1", "km", "COUNT", "5", "ANY", "STORE", "d1", "STOREDIST", "d2"}, []string{"g", "d1", "d2"}},
	{[]string{"GEORADIUSBYMEMBER", "g", "m", "1", "km", "STOREDIST", "d"}, []string{"g", "d"}},
	{[]string{"GEORADIUS", "g", "0", "0", "1", "km", "STORE"}, []string{"g"}},
	{[]string{"BITFIELD", "b", "GET", "u8", "0"}, []string{"b"}},
}

// TestKeyPositions: a command whose keys must share a server lists every key, in order, and is
// forwarded whole (split only to be refused, when its keys are on different servers).
func TestKeyPositions(t *testing.T) {
	p := &redis.Protocol{}
	for _, tc := range keyTests {
		in := encode(tc.args...)
		got, err := parseAll(p, in)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		want := []parsed{{Keys: tc.keys, Multi: len(tc.keys) > 1, Buf: in}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tc.args, diff)
		}
	}
}

// TestSpreadKeysRefused: when the pool finds the keys of such a command on different servers,
// the fragments it sends are harmless PINGs and the client gets an error that says why.
func TestSpreadKeysRefused(t *testing.T) {
	p := &redis.Protocol{}
	r, frags := split(t, p, []string{"smove", "{a}s", "{b}s", "m"}, []int{0}, []int{1})
	if diff := cmp.Diff([]string{encode("PING", "{a}s"), encode("PING", "{b}s")}, bufs(frags)); diff != "" {
		t.Errorf("fragments (-want +got):\n%s", diff)
	}
	if got := string(frags[1].Key(0)); got != "{b}s" {
		t.Errorf("fragment key %q, want {b}s", got)
	}
	frags[0].Resp = []byte("$4\r\n{a}s\r\n")
	frags[1].Resp = []byte("-ERR some failure\r\n")
	p.Merge(r, frags)
	want := "-ERR keys of 'smove' are on different servers; use hash_tag to keep them on one\r\n"
	if diff := cmp.Diff(want, string(r.Resp)); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
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
	r, frags := split(t, p, []string{"MGET", "a", "b", "c"}, []int{0, 2}, []int{1})
	if diff := cmp.Diff([]string{encode("MGET", "a", "c"), encode("MGET", "b")}, bufs(frags)); diff != "" {
		t.Errorf("fragments (-want +got):\n%s", diff)
	}
	r.KeyFrag = []int{0, 1, 0}
	frags[0].Resp = []byte("*2\r\n$1\r\nA\r\n$-1\r\n")
	frags[1].Resp = []byte("*1\r\n$1\r\nB\r\n")
	p.Merge(r, frags)
	if diff := cmp.Diff("*3\r\n$1\r\nA\r\n$1\r\nB\r\n$-1\r\n", string(r.Resp)); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
}

// split parses the command args and makes a fragment of it for each group of key indexes.
func split(t *testing.T, p *redis.Protocol, args []string, groups ...[]int) (*twemproxy.Request, []*twemproxy.Request) {
	t.Helper()
	var r twemproxy.Request
	if err := p.ReadRequest(bufio.NewReader(strings.NewReader(encode(args...))), &r); err != nil {
		t.Fatal(err)
	}
	if r.Local {
		t.Fatalf("%q answered by the proxy: %q", args, r.Resp)
	}
	var frags []*twemproxy.Request
	for _, keys := range groups {
		f := &twemproxy.Request{}
		p.Fragment(&r, keys, f)
		frags = append(frags, f)
	}
	return &r, frags
}

func bufs(rs []*twemproxy.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Buf))
	}
	return out
}

var crlf = []byte("\r\n")

func FuzzReadRequest(f *testing.F) {
	for _, tc := range requestTests {
		f.Add([]byte(tc.in))
	}
	for _, tc := range keyTests {
		f.Add([]byte(encode(tc.args...)))
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
			if (len(r.Keys) == 0 && !keyless(r.Buf)) || r.Buf[0] != '*' {
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

// keyless reports whether the RESP command buf ("*N\r\n$L\r\nNAME\r\n...") is one that has no
// key (COMMAND, LOLWUT).
func keyless(buf []byte) bool {
	parts := bytes.SplitN(buf, crlf, 4)
	if len(parts) < 4 {
		return false
	}
	name := strings.ToUpper(string(parts[2]))
	return name == "COMMAND" || name == "LOLWUT"
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
