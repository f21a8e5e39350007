package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestJSONTrailingData(t *testing.T) {
	for _, line := range []string{`{"a":1}}`, `{"a":1} }`, `{"a":1}]`, `{"a":1} x`, `{"a":1} {"b":2}`} {
		if _, err := (JSON{}).Parse([]byte(line)); !errors.Is(err, ErrNotObject) {
			t.Errorf("Parse(%q) error = %v, want ErrNotObject", line, err)
		}
	}
}

// TestJSONDuplicateKeys: a JSON line with a key twice keeps both fields, as a logfmt line does:
// the first of a reserved key is used, the next is written as orig_<key>; of another key the
// last is written.
func TestJSONDuplicateKeys(t *testing.T) {
	got, err := (JSON{}).Parse([]byte(`{"msg":"x","b":1,"msg":"y","a":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Field{{"a", true}, {"b", json.Number("1")}, {"msg", "x"}, {"msg", "y"}}, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	record := func(f Format, line string) map[string]any {
		var buf bytes.Buffer
		n, err := New(f, &buf, WithClock(func() time.Time { return fixed }))
		if err != nil {
			t.Fatal(err)
		}
		n.Line([]byte(line))
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("output %q: %v", buf.Bytes(), err)
		}
		return m
	}
	j := record(JSON{}, `{"msg":"x","msg":"y","k":"1","k":"2"}`)
	l := record(Logfmt{}, `msg=x msg=y k=1 k=2`)
	if diff := cmp.Diff(l, j); diff != "" {
		t.Errorf("JSON line's record differs from the logfmt line's (-logfmt +json):\n%s", diff)
	}
	if j["msg"] != "x" || j["orig_msg"] != "y" {
		t.Errorf("record %v, want msg x and orig_msg y", j)
	}
}

// FuzzJSONParse: JSON.Parse accepts a line exactly when it is one valid JSON object, and gives
// one field per member, the line's keys in sorted order.
func FuzzJSONParse(f *testing.F) {
	for _, s := range []string{`{"msg":"hi","n":1.5}`, `{"a":1}}`, `{"a":1,}`, `{"a":1,"a":2}`, `[1]`, `{} x`, `{"a":{"b":[1]}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		fields, err := (JSON{}).Parse([]byte(line))
		trimmed := bytes.TrimSpace([]byte(line))
		valid := json.Valid(trimmed) && len(trimmed) > 0 && trimmed[0] == '{'
		if (err == nil) != valid {
			t.Fatalf("Parse(%q) error %v, json.Valid object %v", line, err, valid)
		}
		if err != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		var keys []string
		dec.Token()
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			var skip json.RawMessage
			dec.Decode(&skip)
		}
		slices.Sort(keys)
		var got []string
		for _, fl := range fields {
			got = append(got, fl.Key)
		}
		if diff := cmp.Diff(keys, got); diff != "" {
			t.Errorf("Parse(%q) keys (-want +got):\n%s", line, diff)
		}
	})
}

// TestJSONParseRepeatedKeys: a key repeated at the top level, however it is written, gives one
// field per member; colons, quotes and braces inside strings and nested values do not count.
func TestJSONParseRepeatedKeys(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []Field
	}{
		{`{"\u006dsg":"esc","msg":"plain"}`, []Field{{"msg", "esc"}, {"msg", "plain"}}},
		{`{"k\"ey":"v","k\"ey":"w"}`, []Field{{`k"ey`, "v"}, {`k"ey`, "w"}}},
		{`{"a":"x:y\"}:{","b":{"c":1,"d":[{"e":":"}]},"a":2}`, []Field{{"a", `x:y"}:{`}, {"a", json.Number("2")},
			{"b", map[string]any{"c": json.Number("1"), "d": []any{map[string]any{"e": ":"}}}}}},
		{`{"a":{"x":1,"x":2},"b":"\\","c":"\\\""}`, []Field{{"a", map[string]any{"x": json.Number("2")}}, {"b", `\`}, {"c", `\"`}}},
		{`{"n":12345678901234567890123,"n":1.000000000000000000001}`, []Field{{"n", json.Number("12345678901234567890123")}, {"n", json.Number("1.000000000000000000001")}}},
		{` {} `, []Field{}},
	} {
		got, err := (JSON{}).Parse([]byte(tc.line))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.line, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tc.line, diff)
		}
	}
}

// TestJSONParseErrors: a broken line's error says what encoding/json says of it ("unexpected
// EOF" for a truncated line).
func TestJSONParseErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{`{"a":1`, "unexpected EOF"},
		{`{"msg":"cut`, "unexpected EOF"},
		{`{"a" 1}`, "invalid character '1' after object key"},
		{`{1:2}`, "invalid character '1' looking for beginning of object key string"},
		{`{"a":1,}`, "invalid character '}' looking for beginning of object key string"},
	} {
		_, err := (JSON{}).Parse([]byte(tc.line))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error %v, want one saying %q", tc.line, err, tc.want)
		}
	}
}
