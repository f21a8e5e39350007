package redis_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/ambassador/redis"
	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/ambassador/twemproxy/twemproxytest"
)

// inlineLines are inline commands (each followed by CRLF when sent) whose arguments redis'
// sdssplitargs decodes: quotes, escapes, blanks, unbalanced quotes, long lines.
var inlineLines = []string{
	`RPUSH l "hello world"`,
	`RPUSH l "a\x41" "\x4" "\xZZ" "\x" "\xfF\x00"`,
	`RPUSH l "\n\r\t\b\a\\\"\q\'" 'it\'s' 'a\nb\\ c' '"' "'"`,
	`RPUSH l 'a\\' b'`,
	`RPUSH l "" '' x""`,
	"RPUSH\tl  a \t b\x0bc \x0cd",
	"\x0bRPUSH l \"x\"\x0b\x0c",
	`RPUSH l a"b c" d'e f'`,
	`RPUSH l "a"b`,
	`RPUSH l 'a'b`,
	`RPUSH l "a`,
	`RPUSH l 'a`,
	`RPUSH l "a\"`,
	`RPUSH l "a\`,
	"RPUSH l \"a\rb\" c\rd\r",
	"RPUSH l \xff\x80 \"\xfe\"",
	"",
	"   \t ",
	"\r",
	`""`,
	`RPUSH l ` + strings.Repeat(`"x y" `, 3000),
	`RPUSH l ` + strings.Repeat("v", 20000),
	`RPUSH l ` + strings.Repeat("v", 65000),
	// Over redis' 64 KiB (PROTO_INLINE_MAX_SIZE), which redis checks only when a read leaves it
	// without the line's end: sent at once on a new connection, it runs lines of up to 81910
	// bytes, CRLF included, and refuses longer ones.
	inlineOfSize(64<<10 + 2),
	inlineOfSize(70000),
	inlineOfSize(81910),
	inlineOfSize(81911),
	`RPUSH l ` + strings.Repeat("v", 100000),
}

// inlineOfSize is an inline RPUSH of n bytes with its CRLF.
func inlineOfSize(n int) string { return "RPUSH l " + strings.Repeat("v", n-len("RPUSH l \r\n")) }

// TestInlineLikeRedis sends each inline line to redis-server directly, and as the RESP command
// that the codec makes of it (or, where the codec refuses it, its error reply): the replies,
// which show what redis stored (LRANGE), must be the same.
func TestInlineLikeRedis(t *testing.T) {
	needRedis(t)
	addr := startRedis(t, 1)[0].Addr
	p := &redis.Protocol{}
	for _, line := range inlineLines {
		in := line + "\r\nLRANGE l 0 -1\r\nQUIT\r\n"
		exchange(t, addr, []byte(encode("DEL", "l")+encode("QUIT")))
		direct := exchange(t, addr, []byte(in))
		// The codec's commands, each sent as RESP; a refused request ends the stream with the
		// codec's error reply in place of the server's replies.
		var cmds []byte
		var refusal []byte
		br := bufio.NewReaderSize(strings.NewReader(in), 16<<10)
		for {
			var r twemproxy.Request
			err := p.ReadRequest(br, &r)
			if errors.Is(err, io.EOF) {
				break
			}
			if ce := (*twemproxy.ClientError)(nil); errors.As(err, &ce) {
				refusal = ce.Reply
				cmds = append(cmds, encode("QUIT")...)
				break
			}
			if err != nil {
				t.Fatalf("%.40q: %v", line, err)
			}
			cmds = append(cmds, r.Buf...)
		}
		exchange(t, addr, []byte(encode("DEL", "l")+encode("QUIT")))
		got := exchange(t, addr, cmds)
		if refusal != nil {
			got = append(bytes.TrimSuffix(got, []byte("+OK\r\n")), refusal...)
		}
		if diff := cmp.Diff(string(direct), string(got)); diff != "" {
			t.Errorf("%.60q: replies (-redis +through the codec):\n%.2000s", line, diff)
		}
	}
}

// exchange sends in on a new connection to addr, writing while it reads (the server may close
// the connection before it has read everything: a refused request), and returns all it reads
// until the server closes the connection.
func exchange(t *testing.T, addr string, in []byte) []byte {
	t.Helper()
	out, _, err := twemproxytest.SendAndRead(t, addr, in)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("%.40q: %v", in, err)
	}
	return out
}

// TestInlineThroughProxy is the audit's case: inline commands with quotes and escapes, sent
// through the proxy, store what redis would store (the old code split at every blank and kept
// quotes and escapes as they were).
func TestInlineThroughProxy(t *testing.T) {
	needRedis(t)
	backends := startRedis(t, 2)
	addr, _, _ := startProxy(t, "", backends, &redis.Protocol{})
	c := dial(t, addr)
	if _, err := io.WriteString(c.c, "RPUSH l \"hello world\"\r\nLRANGE l 0 -1\r\nSET k \"a\\x41\"\r\nGET k\r\n"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 4 {
		r, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if diff := cmp.Diff([]string{":1", "[$hello world]", "+OK", "$aA"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Unbalanced quotes: redis' error, and the connection is closed.
	if _, err := io.WriteString(c.c, "GET \"k\r\n"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.read(); r != "-ERR Protocol error: unbalanced quotes in request" || err != nil {
		t.Errorf("unbalanced quotes: %q, %v", r, err)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.read(); err == nil {
		t.Error("connection still open after unbalanced quotes")
	}
}

// TestLongInlineThroughProxy sends inline commands longer than redis' 64 KiB at once, each on a
// new connection, to redis-server and to the proxy in front of another one: the replies must be
// the same (redis runs them up to 81910 bytes and refuses longer ones; the proxy refused every one
// over 64 KiB).
func TestLongInlineThroughProxy(t *testing.T) {
	needRedis(t)
	direct := startRedis(t, 1)[0].Addr
	proxy, _, _ := startProxy(t, "", startRedis(t, 1), &redis.Protocol{})
	for _, n := range []int{64<<10 + 1, 64<<10 + 2, 70000, 81910, 81911, 100000} {
		in := []byte("SET k " + strings.Repeat("v", n-len("SET k \r\n")) + "\r\nSTRLEN k\r\nQUIT\r\n")
		want, got := exchange(t, direct, in), exchange(t, proxy, in)
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("line of %d bytes: replies (-redis +proxy):\n%s", n, diff)
		}
	}
}

// splitArgs splits an inline line as redis' sdssplitargs (sds.c) does, step by step as its C
// code walks a NUL-terminated string; ok is false for unbalanced quotes.
func splitArgs(line []byte) (args []string, ok bool) {
	s := append(append([]byte(nil), line...), 0, 0, 0, 0)
	isspace := func(c byte) bool { return strings.IndexByte(" \t\n\v\f\r", c) >= 0 }
	ishex := func(c byte) bool { return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0 }
	hexval := func(c byte) byte { return byte(strings.IndexByte("0123456789abcdef", c|0x20)) }
	p := 0
	for {
		for s[p] != 0 && isspace(s[p]) {
			p++
		}
		if s[p] == 0 {
			return args, true
		}
		var cur []byte
		inq, insq, done := false, false, false
		for !done {
			switch {
			case inq || insq:
				quote := byte('"')
				if insq {
					quote = '\''
				}
				switch {
				case inq && s[p] == '\\' && s[p+1] == 'x' && ishex(s[p+2]) && ishex(s[p+3]):
					cur = append(cur, hexval(s[p+2])*16+hexval(s[p+3]))
					p += 3
				case inq && s[p] == '\\' && s[p+1] != 0:
					p++
					c := map[byte]byte{'n': '\n', 'r': '\r', 't': '\t', 'b': '\b', 'a': '\a'}[s[p]]
					if c == 0 {
						c = s[p]
					}
					cur = append(cur, c)
				case insq && s[p] == '\\' && s[p+1] == '\'':
					p++
					cur = append(cur, '\'')
				case s[p] == quote:
					if s[p+1] != 0 && !isspace(s[p+1]) {
						return nil, false
					}
					done = true
				case s[p] == 0:
					return nil, false
				default:
					cur = append(cur, s[p])
				}
			default:
				switch s[p] {
				case ' ', '\n', '\r', '\t', 0:
					done = true
				case '"':
					inq = true
				case '\'':
					insq = true
				default:
					cur = append(cur, s[p])
				}
			}
			if s[p] != 0 {
				p++
			}
		}
		args = append(args, string(cur))
	}
}

// FuzzInline: the codec splits any inline line as sdssplitargs does, refuses unbalanced quotes
// with redis' error and a line with a NUL (which redis never runs), and never panics.
func FuzzInline(f *testing.F) {
	for _, line := range inlineLines {
		f.Add([]byte(line))
	}
	p := &redis.Protocol{}
	f.Fuzz(func(t *testing.T, line []byte) {
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		if len(line) > 0 && line[0] == '*' {
			return // a multibulk request
		}
		var r twemproxy.Request
		in := append(append([]byte(nil), line...), "\r\n"...)
		err := p.ReadRequest(bufio.NewReaderSize(bytes.NewReader(in), 16<<10), &r)
		line = bytes.TrimSuffix(line, []byte("\r")) // redis takes off one CR before the LF
		args, ok := splitArgs(line)
		var ce *twemproxy.ClientError
		errors.As(err, &ce)
		switch {
		case len(in) > 81910:
			if ce == nil || string(ce.Reply) != "-ERR Protocol error: too big inline request\r\n" {
				t.Fatalf("%.40q, %d bytes: %v, want too big", line, len(line), err)
			}
		case bytes.IndexByte(line, 0) >= 0:
			if ce == nil || !errors.Is(err, redis.ErrProtocol) {
				t.Fatalf("%q with NUL: %v, want a protocol error", line, err)
			}
		case !ok:
			if ce == nil || string(ce.Reply) != "-ERR Protocol error: unbalanced quotes in request\r\n" {
				t.Fatalf("%q: %v, want unbalanced quotes", line, err)
			}
		case len(args) == 0:
			if err != io.EOF {
				t.Fatalf("%q: %v, want it skipped (EOF)", line, err)
			}
		default:
			if err != nil {
				t.Fatalf("%q: %v, want %q", line, err, args)
			}
			if diff := cmp.Diff(encode(args...), string(r.Buf)); diff != "" {
				t.Fatalf("%q (-want +got):\n%s", line, diff)
			}
			var got []string
			for _, s := range r.Scratch {
				got = append(got, string(r.Buf[s.Start:s.End]))
			}
			if diff := cmp.Diff(args, got); diff != "" {
				t.Fatalf("%q: argument spans (-want +got):\n%s", line, diff)
			}
		}
	})
}
