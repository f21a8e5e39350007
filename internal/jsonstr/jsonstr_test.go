package jsonstr_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/jsonstr"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var tests = []struct{ in, want string }{
	{"", `""`},
	{"plain text of more than eight bytes", `"plain text of more than eight bytes"`},
	{`say "hi" \ bye`, `"say \"hi\" \\ bye"`},
	{"a\tb\rc\nd\x01e\x1f\x7f", `"a\tb\rc\nd\u0001e\u001f` + "\x7f" + `"`},
	{"\b\f", `"\u0008\u000c"`},
	{"<a href='x'>&amp;</a>", `"<a href='x'>&amp;</a>"`},
	{"grüße 日本語 \U000e0001", `"grüße 日本語 ` + "\U000e0001" + `"`},
	{"line\u2028para\u2029", `"line\u2028para\u2029"`},
	{"bad \xff\xfe byte \xe2\x82", `"bad \ufffd\ufffd byte \ufffd\ufffd"`},
	{`0123456"89abcdef\ghijklmn`, `"0123456\"89abcdef\\ghijklmn"`},
}

func TestAppend(t *testing.T) {
	for _, tc := range tests {
		if got := string(jsonstr.Append([]byte("x"), []byte(tc.in))); got != "x"+tc.want {
			t.Errorf("Append(%q) = %s, want %s", tc.in, got[1:], tc.want)
		}
		if got := string(jsonstr.AppendString(nil, tc.in)); got != tc.want {
			t.Errorf("AppendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// Every string comes out as JSON that decodes to what encoding/json's encoding of it decodes to:
// the string itself when it is valid UTF-8, else with U+FFFD for each invalid byte.
func FuzzAppend(f *testing.F) {
	for _, tc := range tests {
		f.Add(tc.in)
	}
	f.Add(strings.Repeat("\u2028abcdefg\x00", 5))
	f.Fuzz(func(t *testing.T, s string) {
		out := jsonstr.Append(nil, []byte(s))
		var got, want string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("Append(%q) = %s: not JSON: %v", s, out, err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if got != want || utf8.ValidString(s) && got != s {
			t.Errorf("Append(%q) decodes to %q, want %q", s, got, want)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	line := []byte(`127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "-" "Mozilla/4.08"`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		buf = jsonstr.Append(buf[:0], line)
	}
}
